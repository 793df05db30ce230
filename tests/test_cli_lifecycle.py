"""The serve options of the execution lifecycle (router/cli_lifecycle.py): defaults,
environment variables, and refusals, as ``flow-router serve`` parses them."""

from __future__ import annotations

import pytest

from router import cli


def _config(*argv: str) -> cli.Config:
    return cli.config_from_args(cli._parser().parse_args(["serve", *argv]))


def test_defaults() -> None:
    config = _config()
    assert config.settings.execution_retention_s == 86_400
    assert config.settings.invoke_timeout_s == 60
    assert (config.callback_url, config.callback_secret) == (None, None)


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(
        "--execution-retention", "600", "--invoke-timeout", "2.5",
        "--callback-url", "http://gw:8080", "--callback-secret", "s" * 16,
    )  # fmt: skip
    assert config.settings.execution_retention_s == 600
    assert config.settings.invoke_timeout_s == 2.5
    assert (config.callback_url, config.callback_secret) == ("http://gw:8080", "s" * 16)
    monkeypatch.setenv("FLOW_ROUTER_CALLBACK_URL", "https://gw.example")
    monkeypatch.setenv("FLOW_ROUTER_EXECUTION_RETENTION", "60")
    config = _config()
    assert (config.callback_url, config.settings.execution_retention_s) == (
        "https://gw.example",
        60,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--execution-retention", "0"], "--execution-retention"),
        (["--invoke-timeout", "0"], "--invoke-timeout"),
        (["--callback-url", "gw:8080"], "--callback-url"),
        (["--callback-url", "http://gw/?a=1"], "--callback-url"),
        (["--callback-secret", "s" * 16], "needs --callback-url"),
        (["--callback-url", "http://gw", "--callback-secret", "short"], "16 characters"),
    ],
)
def test_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(*argv)
