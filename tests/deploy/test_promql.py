"""The small PromQL lexer the metric-name checks rely on."""

from __future__ import annotations

import pytest

from tests.deploy.promql import Matcher, Selector, parse_label_values, uses


def test_selectors_functions_and_grouping() -> None:
    used = uses(
        'sum by (version, le) (rate(flow_router_execution_duration_seconds_bucket{flow="$flow"}'
        "[$__rate_interval])) and on (version) flow_router_alias_weight"
    )
    assert used.selectors == [
        Selector("flow_router_execution_duration_seconds_bucket", (Matcher("flow", "=", "$flow"),)),
        Selector("flow_router_alias_weight", ()),
    ]
    assert used.grouping_labels == {"version", "le"}


def test_keywords_numbers_durations_and_offsets_are_not_metrics() -> None:
    used = uses(
        "histogram_quantile(0.99, sum without (outcome) (rate(a_bucket[5m] offset 1h)))"
        " > 2 * 1e3 and b:rec:rate5m > bool 0.5 or vector(0)"
        " unless count by (x) (c) / ignoring (y) group_left () d"
    )
    assert used.metrics == {"a_bucket", "b:rec:rate5m", "c", "d"}
    assert used.grouping_labels == {"outcome", "x", "y"}


def test_strings_may_hold_braces_and_quotes() -> None:
    (selector,) = uses(r'm{a="x}y", b=~"5..", c!="q\"r", d!~`z`}').selectors
    assert selector.matchers == (
        Matcher("a", "=", "x}y"),
        Matcher("b", "=~", "5.."),
        Matcher("c", "!=", 'q"r'),
        Matcher("d", "!~", "z"),
    )


def test_aggregation_without_parenthesised_argument_first() -> None:
    assert uses("sum(rate(m[1m])) by (flow)").grouping_labels == {"flow"}
    assert uses("max by (flow) (m)").metrics == {"m"}


def test_label_values() -> None:
    assert parse_label_values('label_values(m{flow="$flow"}, alias)') == (
        'm{flow="$flow"}',
        "alias",
    )
    assert parse_label_values("label_values(flow)") == (None, "flow")
    with pytest.raises(ValueError):
        parse_label_values("query_result(m)")


def test_unreadable_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        uses("m{a=b}")
    with pytest.raises(ValueError):
        uses("m ; n")
