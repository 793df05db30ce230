"""Progressive rollouts on aliases. ``decision`` is the pure rule (counts and times in,
verdict out); ``evidence`` is its statistics. The driver (lease, store, timers) lives
elsewhere and only applies verdicts."""
