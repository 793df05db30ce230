"""The CLI's text: the live view of a status, and the start body built from flags.

Both are pure (router/rollout/view.py, router/rollout/cli.start_body), so they are
checked here without a gateway; test_cli.py runs the command for real.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.cli import _parser
from router.rollout import view
from router.rollout.cli import UsageError, start_body

STATUS: dict[str, Any] = {
    "flow": "orders",
    "alias": "live",
    "targetVersion": "3",
    "baseline": [{"version": "1", "weight": 70}, {"version": "2", "weight": 30}],
    "phase": "Progressing",
    "step": 1,
    "canaryWeight": 25,
    "counts": {
        "3": {"executions": 120, "failed": 2, "slow": 0},
        "1": {"executions": 250, "failed": 3, "slow": 0},
        "2": {"executions": 110, "failed": 1, "slow": 0},
    },
    "evidence": 1.8372,
    "message": "analysing step 2/3 (25%): 120 of 200 canary executions",
    "startedAt": "2026-12-01T09:00:00.000Z",
    "updatedAt": "2026-12-01T09:05:00.000Z",
    "history": [
        {"at": "2026-12-01T09:00:00.000Z", "phase": "Progressing", "step": 0,
         "canaryWeight": 5, "message": "started"},
        {"at": "2026-12-01T09:02:00.000Z", "phase": "Progressing", "step": 1,
         "canaryWeight": 25, "message": "step 1 of 3 (5%) passed"},
    ],
}  # fmt: skip


def test_the_view_shows_steps_weight_counts_evidence_and_message() -> None:
    text = view.render(STATUS)
    assert "orders/live → version 3" in text
    assert "Progressing" in text
    # the steps seen so far, one more the message says is to come, then the promotion
    assert "[5% ✓][25% ▶][?% ][100%  ]" in text
    assert "█" * 8 + "░" * 22 in text  # 25% of a 30-wide bar, rounded
    assert "3: 25%, 1: 52.5%, 2: 22.5%" in text  # the baseline shares the rest 70:30
    assert "3 (canary)" in text and "120" in text
    assert "evidence  1.84" in text
    assert STATUS["message"] in text
    assert text.count("\n  2026-12-01T") == 2  # the history


def test_the_steps_come_from_the_status_when_it_has_them() -> None:
    assert view.steps_bar({**STATUS, "stepWeights": [5, 25, 50]}) == (
        "[5% ✓][25% ▶][50%  ][100%  ]"
    )


@pytest.mark.parametrize(
    ("phase", "weight", "bar"),
    [
        ("Succeeded", 100, "[5% ✓][25% ✓][?% ][100% ✓]"),
        ("RolledBack", 0, "[5% ✓][25% ✗][?% ][100%  ]"),
        ("Aborted", 0, "[5% ✓][25% ✗][?% ][100%  ]"),
    ],
)
def test_a_finished_rollout_shows_where_it_ended(phase: str, weight: int, bar: str) -> None:
    status = {**STATUS, "phase": phase, "canaryWeight": weight}
    assert view.steps_bar(status) == bar
    assert view.finished(status)


def test_without_a_hint_only_the_steps_seen_are_drawn() -> None:
    status = {**STATUS, "message": "held", "history": STATUS["history"][:1], "canaryWeight": 5}
    assert view.steps_bar({**status, "history": [{**status["history"][0], "message": ""}]}) == (
        "[5% ▶][100%  ]"
    )


def test_routes_after_a_rollback_are_the_baseline() -> None:
    status = {**STATUS, "phase": "RolledBack", "canaryWeight": 0}
    assert view.routes(status) == [("1", 70.0), ("2", 30.0)]


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"phase": 3, "counts": [], "history": {}, "baseline": "x", "canaryWeight": "5"},
        {"counts": {"3": None}, "history": [None, 1], "baseline": [None], "evidence": None},
        {"evidence": float("inf"), "stepWeights": ["a"], "canaryWeight": True},
    ],
)
def test_the_view_never_fails_on_an_odd_status(status: dict[str, Any]) -> None:
    assert isinstance(view.render(status), str)
    assert not view.finished(status)


def args(*argv: str) -> Any:
    return _parser().parse_args(["rollout", "start", "orders", "live", *argv])


def test_start_flags_become_the_body() -> None:
    body = start_body(
        args(
            "--target-version", "3", "--steps", "10,50", "--min-step-seconds", "90",
            "--min-samples", "500", "--max-step-seconds", "1800.5", "--on-inconclusive",
            "rollback", "--require-approval", "--alpha", "0.05", "--max-failure-ratio", "0.2",
            "--slow-seconds", "2.5", "--webhook", "event=http://127.0.0.1:9/e",
            "--webhook", "confirm-promotion=https://ci.example/ok",
        )
    )  # fmt: skip
    assert body == {
        "targetVersion": "3",
        "stepWeights": [10, 50],
        "minStepSeconds": 90,
        "minSamples": 500,
        "maxStepSeconds": 1800.5,
        "onInconclusive": "rollback",
        "requireApproval": True,
        "analysis": {"alpha": 0.05, "maxFailureRatio": 0.2, "slowSeconds": 2.5},
        "webhooks": [
            {"type": "event", "url": "http://127.0.0.1:9/e"},
            {"type": "confirm-promotion", "url": "https://ci.example/ok"},
        ],
    }


def test_only_given_flags_are_sent_and_they_override_the_body(tmp_path: Any) -> None:
    assert start_body(args("--target-version", "3")) == {"targetVersion": "3"}
    base = '{"targetVersion": "2", "analysis": {"alpha": 0.01, "slowSeconds": 4}, "x": 1}'
    body = start_body(args("--body", base, "--target-version", "3", "--alpha", "0.1"))
    assert body == {"targetVersion": "3", "analysis": {"alpha": 0.1, "slowSeconds": 4}, "x": 1}
    file = tmp_path / "body.json"
    file.write_text('{"targetVersion": "4", "requireApproval": true}')
    assert start_body(args("--body", f"@{file}", "--no-require-approval")) == {
        "targetVersion": "4",
        "requireApproval": False,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--target-version is required"),
        (("--body", "{"), "not valid JSON"),
        (("--body", "[1]"), "must be a JSON object"),
        (("--body", "@/nonexistent/body.json"), "cannot read"),
    ],
)
def test_start_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        start_body(args(*argv))


@pytest.mark.parametrize(
    "argv",
    [("--steps", "5;25"), ("--webhook", "event"), ("--webhook", "other=http://h"),
     ("--on-inconclusive", "maybe"), ("--min-samples", "1.5")],
)  # fmt: skip
def test_malformed_flags_are_refused_by_the_parser(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exited:
        args("--target-version", "3", *argv)
    assert exited.value.code == 2
