"""Simulation engine of bench.rollout: Poisson streams and the four rules on them.

Kept apart from the report (bench/rollout.py) to keep each module short. Every rule
sees the same streams: a window of traffic is simulated once per batch of rollouts
and the project rule, the Flagger-style rule and both oracles all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from router.rollout.decision import (
    Action,
    Analysis,
    RolloutSpec,
    RolloutState,
    StepCounts,
    decide,
)
from router.rollout.evidence import step_log_evidence

RATES = (1, 10, 100, 1000)
MULTIPLIERS = (2, 5, 20)
BASE_RATIO = 0.01
WEIGHT = 20
HORIZON = 3600
TICK = 5  # seconds between the driver's ticks
ALPHA = 0.01
ORACLE_BETA = 0.01
FLAGGER_INTERVAL = 60
FLAGGER_THRESHOLD = 5
FLAGGER_MIN_SUCCESS = 0.98  # success floor: twice the baseline failure ratio
RULES = ("project", "flagger", "oracle", "sides")
SEED = 20261201
MAX_POINTS = 2_000_000  # points (failures + ticks) per simulated batch: bounds memory

SPEC = RolloutSpec(
    target_version="2",
    step_weights=(WEIGHT,),
    # hold the step past the horizon: within it only a rollback can change anything
    min_step_seconds=2 * HORIZON,
    max_step_seconds=2 * HORIZON,
    analysis=Analysis(alpha=ALPHA),
)
STATE = RolloutState(step_started_at=0.0)


class KStar:
    """k*(m): fewest canary failures among m with evidence vs the weight >= 1/alpha."""

    def __init__(self, p0: float, alpha: float) -> None:
        self.p0 = p0
        # A hair below the threshold: the filter must keep every check decide could fire on.
        self.log_threshold = math.log(1.0 / alpha) - 1e-9
        self.table = np.array([1], dtype=np.int64)  # m = 0: impossible (k* = m + 1)

    def upto(self, m_max: int) -> np.ndarray:
        have = len(self.table)
        if m_max >= have:
            values = list(self.table)
            k = int(values[-1])
            for m in range(have, m_max + 1):
                # Monotone: k*(m-1) <= k*(m) <= k*(m-1) + 1 (a baseline failure lowers
                # the evidence, a canary failure raises it); the loop runs once or twice.
                while k <= m and step_log_evidence(k, m, self.p0) < self.log_threshold:
                    k += 1
                values.append(k)
            self.table = np.array(values, dtype=np.int64)
        return self.table


@dataclass
class Outcome:
    """Per rollout: when each rule rolled back (inf: never within the horizon)."""

    n: int
    seconds: dict[str, np.ndarray] = field(default_factory=dict)
    executions: dict[str, np.ndarray] = field(default_factory=dict)
    flagger_nodata: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    oracle_accepted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @classmethod
    def empty(cls, n: int) -> Outcome:
        out = cls(n)
        for rule in RULES:
            out.seconds[rule] = np.full(n, np.inf)
            out.executions[rule] = np.full(n, np.inf)
        out.flagger_nodata = np.zeros(n, dtype=bool)
        out.oracle_accepted = np.zeros(n, dtype=bool)
        return out


@dataclass
class Window:
    """Checks of one time window, sorted by rollout then time; counts are cumulative."""

    rid: np.ndarray
    time: np.ndarray
    kind: np.ndarray  # 0 canary failure, 1 baseline failure, 2 tick
    nc: np.ndarray
    fc: np.ndarray
    nb: np.ndarray
    fb: np.ndarray


def simulate_window(
    rng: np.random.Generator,
    rate: float,
    ratio: float,
    t0: int,
    width: int,
    carried: np.ndarray,
) -> Window:
    """Poisson traffic in (t0, t0 + width] for len(carried) rollouts; carried: (R, 4) counts.

    Failures of each side are Poisson events at exact times; successes between two
    consecutive checks are Poisson increments, so every check sees exact counts.
    """
    r = len(carried)
    w = WEIGHT / 100.0
    fc_n = rng.poisson(rate * w * ratio * width, r)
    fb_n = rng.poisson(rate * (1 - w) * BASE_RATIO * width, r)
    ticks = width // TICK
    sizes = fc_n + fb_n + ticks
    rid = np.repeat(np.arange(r), sizes)
    starts = np.cumsum(sizes) - sizes
    idx = np.arange(len(rid)) - starts[rid]
    n_fail_c, n_fail = fc_n[rid], (fc_n + fb_n)[rid]
    kind = np.where(idx < n_fail_c, 0, np.where(idx < n_fail, 1, 2)).astype(np.int8)
    offset = np.where(
        kind < 2, rng.uniform(0.0, width, len(rid)), TICK * (idx - n_fail + 1).astype(float)
    )
    order = np.argsort(rid * (width + 1.0) + offset, kind="stable")
    rid, kind, offset = rid[order], kind[order], offset[order]
    gap = np.diff(offset, prepend=0.0)
    gap[starts] = offset[starts]
    succ_c = rng.poisson(rate * w * (1 - ratio) * gap)
    succ_b = rng.poisson(rate * (1 - w) * (1 - BASE_RATIO) * gap)
    is_c, is_b = (kind == 0).astype(np.int64), (kind == 1).astype(np.int64)

    def cumulative(increment: np.ndarray, column: int) -> np.ndarray:
        total = np.cumsum(increment)
        before = total[starts] - increment[starts]
        out: np.ndarray = total - before[rid] + carried[rid, column]
        return out

    return Window(
        rid=rid,
        time=t0 + offset,
        kind=kind,
        nc=cumulative(succ_c + is_c, 0),
        fc=cumulative(is_c, 1),
        nb=cumulative(succ_b + is_b, 2),
        fb=cumulative(is_b, 3),
    )


def first_per_rollout(mask: np.ndarray, rid: np.ndarray) -> dict[int, int]:
    hits = np.flatnonzero(mask)
    if not len(hits):
        return {}
    rollouts, first = np.unique(rid[hits], return_index=True)
    return dict(zip(rollouts.tolist(), hits[first].tolist(), strict=True))


def wald(
    win: Window,
    ids: np.ndarray,
    still_open: np.ndarray,
    out: Outcome,
    rule: str,
    above: np.ndarray,
    below: np.ndarray,
) -> np.ndarray:
    """One window of a Wald SPRT per rollout: a rollback at the first canary failure
    whose log-likelihood ratio is ``above`` the upper bound, unless it went ``below``
    the lower one first (accepted: it stops). Updates ``still_open`` and ``out``;
    returns the ids of the rollouts accepted in this window."""
    if not still_open.any():
        return np.zeros(0, dtype=np.int64)
    up_first = first_per_rollout((win.kind == 0) & above, win.rid)
    low_first = first_per_rollout(below, win.rid)
    accepted = []
    for j in np.flatnonzero(still_open):
        u, lo = up_first.get(int(j)), low_first.get(int(j))
        if u is not None and (lo is None or u < lo):
            out.seconds[rule][ids[j]] = win.time[u]
            out.executions[rule][ids[j]] = win.nc[u]
            still_open[j] = False
        elif lo is not None:
            accepted.append(ids[j])
            still_open[j] = False
    return np.array(accepted, dtype=np.int64)


def project_rollback(win: Window, i: int) -> bool:
    counts = StepCounts(int(win.nc[i]), int(win.fc[i]), int(win.nb[i]), int(win.fb[i]))
    verdict = decide(SPEC, STATE, counts, float(win.time[i]))
    if verdict.action not in (Action.HOLD, Action.ROLLBACK):
        raise AssertionError(f"unexpected verdict within the horizon: {verdict}")
    return verdict.action is Action.ROLLBACK


def run_cell(
    rng: np.random.Generator, rate: float, ratio: float, n: int, kstar: KStar, brute: bool = False
) -> Outcome:
    """``n`` rollouts at ``rate`` executions/s with canary failure ratio ``ratio``."""
    out = Outcome.empty(n)
    healthy = ratio <= BASE_RATIO
    fail_rate = rate * (WEIGHT / 100 * ratio + (1 - WEIGHT / 100) * BASE_RATIO)
    width = FLAGGER_INTERVAL * max(1, min(10, int(3000 / max(fail_rate, 1e-9) / 60)))
    per_rollout = fail_rate * width + width / TICK
    batch = max(1, min(n, int(MAX_POINTS / per_rollout)))
    llr_fail = math.log(ratio / BASE_RATIO) if not healthy else 0.0
    llr_ok = math.log((1 - ratio) / (1 - BASE_RATIO)) if not healthy else 0.0
    upper = math.log((1 - ORACLE_BETA) / ALPHA)
    lower = math.log(ORACLE_BETA / (1 - ALPHA))
    # the comparative oracle: Wald's SPRT on which side each failure came from,
    # knowing the canary's ratio to the baseline's (not the baseline's own ratio)
    w, rho = WEIGHT / 100, ratio / BASE_RATIO
    p1 = w * rho / (w * rho + 1 - w)
    side_fail = math.log(p1 / w) if not healthy else 0.0
    side_base = math.log((1 - p1) / (1 - w)) if not healthy else 0.0
    for b0 in range(0, n, batch):
        ids = np.arange(b0, min(n, b0 + batch))
        carried = np.zeros((len(ids), 4), dtype=np.int64)
        failed_checks = np.zeros(len(ids), dtype=np.int64)
        nodata_seen = np.zeros(len(ids), dtype=bool)
        oracle_open = np.full(len(ids), not healthy)
        sides_open = np.full(len(ids), not healthy)
        for t0 in range(0, HORIZON, width):
            open_p = ~np.isfinite(out.seconds["project"][ids])
            open_f = ~np.isfinite(out.seconds["flagger"][ids])
            if not (open_p.any() or open_f.any() or oracle_open.any() or sides_open.any()):
                break
            win = simulate_window(rng, rate, ratio, t0, min(width, HORIZON - t0), carried)
            # project: decide at candidate checks (every check when brute)
            m = win.fc + win.fb
            table = kstar.upto(int(m.max()) if len(m) else 0)
            cand = open_p[win.rid] & (brute | (win.fc >= table[m]))
            for i in np.flatnonzero(cand):
                g = ids[win.rid[i]]
                if np.isfinite(out.seconds["project"][g]):
                    continue
                if project_rollback(win, int(i)):
                    out.seconds["project"][g] = win.time[i]
                    out.executions["project"][g] = win.nc[i]
            # oracle: Wald's SPRT on the canary's executions
            llr = win.fc * llr_fail + (win.nc - win.fc) * llr_ok
            low = np.where(win.kind == 0, llr - llr_fail, llr)
            accepted = wald(win, ids, oracle_open, out, "oracle", llr >= upper, low <= lower)
            out.oracle_accepted[accepted] = True
            # comparative oracle: the same on which side each failure came from
            llr = win.fc * side_fail + win.fb * side_base
            wald(win, ids, sides_open, out, "sides", llr >= upper, (win.kind == 1) & (llr <= lower))
            # flagger: one check per minute on the canary's success rate
            tick = win.kind == 2
            minute = tick.copy()
            minute[tick] = (np.round(win.time[tick]).astype(np.int64) % FLAGGER_INTERVAL) == 0
            per = int(minute.sum()) // len(ids)
            if per:
                nc = win.nc[minute].reshape(len(ids), per)
                fc = win.fc[minute].reshape(len(ids), per)
                prev_nc = np.concatenate([carried[:, :1], nc[:, :-1]], axis=1)
                prev_fc = np.concatenate([carried[:, 1:2], fc[:, :-1]], axis=1)
                dn, df = nc - prev_nc, fc - prev_fc
                empty = dn == 0
                # success rate < 98%  <=>  failures > 2% of executions (integers: 50 f > n)
                bad = empty | (round(1 / (1 - FLAGGER_MIN_SUCCESS)) * df > dn)
                total = failed_checks[:, None] + np.cumsum(bad, axis=1)
                nodata = nodata_seen[:, None] | np.cumsum(empty, axis=1).astype(bool)
                for j in np.flatnonzero(open_f):
                    hit = np.flatnonzero(total[j] >= FLAGGER_THRESHOLD)
                    if len(hit):
                        c = int(hit[0])
                        out.seconds["flagger"][ids[j]] = t0 + FLAGGER_INTERVAL * (c + 1)
                        out.executions["flagger"][ids[j]] = nc[j, c]
                        out.flagger_nodata[ids[j]] = bool(nodata[j, c])
                failed_checks = total[:, -1]
                nodata_seen = nodata[:, -1]
            last = np.cumsum(np.bincount(win.rid, minlength=len(ids))) - 1
            carried = np.stack([win.nc[last], win.fc[last], win.nb[last], win.fb[last]], axis=1)
    return out
