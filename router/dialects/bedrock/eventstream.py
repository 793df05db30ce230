"""AWS event-stream message encoding (docs/wire.md §4): pure functions, no I/O.

One message::

    total length (4) | headers length (4) | prelude CRC (4) | headers | payload | message CRC (4)

all big-endian; both CRCs are CRC32 (zlib/IEEE), the second over every byte
before it. Headers are ``name length (1) | name | type 7 (1) | value length (2) | value``.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from typing import Any

import orjson

STRING = 7  # the only header value type this gateway sends
MAX_HEADERS = 128 * 1024
MAX_PAYLOAD = 24 * 1024 * 1024
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")


def _crc(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
    out = bytearray()
    seen: set[str] = set()
    for name, value in headers:
        if name in seen:
            raise ValueError(f"duplicate event-stream header {name!r}")
        seen.add(name)
        raw_name = name.encode()
        raw_value = value.encode()
        if not 0 < len(raw_name) < 256 or len(raw_value) > 0xFFFF:
            raise ValueError(f"event-stream header {name!r} is too long")
        out += bytes((len(raw_name),)) + raw_name + bytes((STRING,))
        out += struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Sequence[tuple[str, str]], payload: bytes) -> bytes:
    """One complete message, headers in the order given."""
    raw_headers = encode_headers(headers)
    if len(raw_headers) > MAX_HEADERS:
        raise ValueError("event-stream headers exceed 128 KiB")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("event-stream payload exceeds 24 MiB")
    total = _PRELUDE.size + _CRC.size + len(raw_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _CRC.pack(_crc(prelude)) + raw_headers + payload
    return head + _CRC.pack(_crc(head))


def event(event_type: str, body: Any) -> bytes:
    """A member of the stream union, e.g. ``flowOutputEvent``, with a JSON payload."""
    return encode_message(
        [
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        orjson.dumps(body),
    )


def exception(exception_type: str, message: str) -> bytes:
    """A modeled exception (``:exception-type`` in lower camel case, e.g.
    ``dependencyFailedException``): botocore raises ``EventStreamError`` with it."""
    return encode_message(
        [
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        orjson.dumps({"message": message}),
    )
