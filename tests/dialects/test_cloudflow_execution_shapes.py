"""The pure parts of CloudFlow's lifecycle wire values: times and history pages.

Property tests (hypothesis): every time the gateway writes reads back to the
same millisecond, offsets and finer fractions included, and paging a history
in any page size gives back the whole history once, in order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import errors
from router.dialects.cloudflow.execution_shapes import history_body, parse_time
from router.dialects.common import iso8601
from router.lifecycle.executions import HistoryEvent

MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


@given(st.integers(min_value=0, max_value=MAX_MS))
def test_every_time_the_gateway_writes_reads_back(ms: int) -> None:
    assert parse_time(iso8601(ms), "StartedTimeBegin") == ms


@given(
    st.integers(min_value=86_400_000, max_value=MAX_MS - 86_400_000),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
    st.integers(min_value=0, max_value=999),
)
def test_an_offset_names_the_same_instant(ms: int, offset_min: int, extra_us: int) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    local = local.replace(microsecond=(ms % 1000) * 1000 + extra_us)
    sign, minutes = ("-" if offset_min < 0 else "+"), abs(offset_min)
    zone_text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}789{zone_text}"  # 9 digits
    assert parse_time(text, "StartedTimeEnd") == ms


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2020-12-02",
        "2020-12-02T02:39Z",
        "2020-12-02T02:39:20",
        "2020-12-02 02:39:20Z",
        "20201202T023920Z",
        "2020-12-02T02:39:20.Z",
        "2020-12-02T02:39:20.1234567890Z",
        "2020-13-02T02:39:20Z",
        "2020-12-32T02:39:20Z",
        "2020-12-02T24:00:00Z",
        "2021-02-29T00:00:00Z",
        "2020-12-02T02:39:20+2400",
        "\uff12\uff10\uff12\uff10-12-02T02:39:20Z",  # full-width digits
        "1606876760402",
    ],
)
def test_what_is_not_an_rfc_3339_time(value: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        parse_time(value, "StartedTimeBegin")
    assert info.value.field == "StartedTimeBegin"


def _events(n: int) -> list[HistoryEvent]:
    return [HistoryEvent(i, f"T{i}", 1000 * i, {"i": i}) for i in range(1, n + 1)]


@given(st.integers(min_value=0, max_value=6), st.integers(min_value=1, max_value=7))
def test_paging_a_history_gives_it_all_once(n: int, size: int) -> None:
    events = _events(n)
    whole, token = history_body(events, 0, 1000)
    assert token is None and [e["EventId"] for e in whole] == list(range(1, n + 1))
    assert [e["ScheduleEventId"] for e in whole] == list(range(n))
    paged: list[dict[str, object]] = []
    start = 0
    for _ in range(n + 1):
        page, next_token = history_body(events, start, size)
        assert len(page) <= size
        paged.extend(page)
        if next_token is None:
            break
        start = int(next_token)
    assert paged == whole
