"""The AWS event-stream encoder (router/dialects/bedrock/eventstream.py), decoded by botocore."""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer, EventStreamMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from router.dialects.bedrock import eventstream

# docs/wire.md §4: the flowCompletionEvent message exactly as botocore decodes it.
EXAMPLE_DUMP = """
0000  00 00 00 88 00 00 00 59 f6 03 cd 6a 0b 3a 65 76
0010  65 6e 74 2d 74 79 70 65 07 00 13 66 6c 6f 77 43
0020  6f 6d 70 6c 65 74 69 6f 6e 45 76 65 6e 74 0d 3a
0030  63 6f 6e 74 65 6e 74 2d 74 79 70 65 07 00 10 61
0040  70 70 6c 69 63 61 74 69 6f 6e 2f 6a 73 6f 6e 0d
0050  3a 6d 65 73 73 61 67 65 2d 74 79 70 65 07 00 05
0060  65 76 65 6e 74 7b 22 63 6f 6d 70 6c 65 74 69 6f
0070  6e 52 65 61 73 6f 6e 22 3a 20 22 53 55 43 43 45
0080  53 53 22 7d c1 b1 2b 98
"""
EXAMPLE = bytes.fromhex("".join(line[6:] for line in EXAMPLE_DUMP.strip().splitlines()))


def decode(data: bytes) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_the_example_from_wire_md_byte_for_byte() -> None:
    assert len(EXAMPLE) == 136
    encoded = eventstream.encode_message(
        [
            (":event-type", "flowCompletionEvent"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        b'{"completionReason": "SUCCESS"}',
    )
    assert encoded == EXAMPLE
    (message,) = decode(encoded)
    assert message.headers == {
        ":event-type": "flowCompletionEvent",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert message.payload == b'{"completionReason": "SUCCESS"}'


def test_framing_lengths_and_crcs() -> None:
    encoded = eventstream.event("flowOutputEvent", {"content": {"document": "hi"}})
    total, headers_length, prelude_crc = struct.unpack(">III", encoded[:12])
    assert total == len(encoded)
    assert prelude_crc == binascii.crc32(encoded[:8]) & 0xFFFFFFFF
    (message_crc,) = struct.unpack(">I", encoded[-4:])
    assert message_crc == binascii.crc32(encoded[:-4]) & 0xFFFFFFFF
    assert headers_length == len(eventstream.encode_headers(
        [(":event-type", "flowOutputEvent"), (":content-type", "application/json"),
         (":message-type", "event")]
    ))  # fmt: skip


def test_event_message() -> None:
    (message,) = decode(eventstream.event("flowOutputEvent", {"content": {"document": [1, 2]}}))
    assert message.headers[":message-type"] == "event"
    assert message.headers[":event-type"] == "flowOutputEvent"
    assert message.headers[":content-type"] == "application/json"
    assert message.payload == b'{"content":{"document":[1,2]}}'


def test_exception_message() -> None:
    (message,) = decode(eventstream.exception("dependencyFailedException", "executor failed"))
    assert message.headers == {
        ":exception-type": "dependencyFailedException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert message.payload == b'{"message":"executor failed"}'


def test_messages_concatenate_into_a_stream() -> None:
    stream = eventstream.event("flowOutputEvent", {"a": 1}) + eventstream.event(
        "flowCompletionEvent", {"completionReason": "SUCCESS"}
    )
    assert [m.headers[":event-type"] for m in decode(stream)] == [
        "flowOutputEvent",
        "flowCompletionEvent",
    ]


def test_a_corrupted_byte_fails_the_checksum() -> None:
    encoded = bytearray(eventstream.event("flowOutputEvent", {"a": 1}))
    encoded[-6] ^= 0xFF  # inside the payload
    with pytest.raises(ChecksumMismatch):
        decode(bytes(encoded))


def test_duplicate_header_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        eventstream.encode_message([("a", "1"), ("a", "2")], b"")


def test_limits() -> None:
    with pytest.raises(ValueError, match="24 MiB"):
        eventstream.encode_message([], b"x" * (eventstream.MAX_PAYLOAD + 1))
    with pytest.raises(ValueError, match="too long"):
        eventstream.encode_message([("a", "x" * 70_000)], b"")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(
        st.text(min_size=1, max_size=30).filter(lambda s: len(s.encode()) < 256),
        st.text(max_size=200),
        max_size=6,
    ),
    payload=st.binary(max_size=2000),
)
@pytest.mark.slow
def test_botocore_decodes_what_is_encoded(headers: dict[str, str], payload: bytes) -> None:
    (message,) = decode(eventstream.encode_message(list(headers.items()), payload))
    assert message.headers == headers
    assert message.payload == payload


@settings(max_examples=100, deadline=None)
@given(body=_json)
def test_event_payload_is_the_json_body(body: Any) -> None:
    (message,) = decode(eventstream.event("flowOutputEvent", body))
    assert json.loads(message.payload) == body
