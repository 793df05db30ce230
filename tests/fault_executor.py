"""An executor process that misbehaves on demand, for tests that kill it.

    python -m tests.fault_executor --port P --log LOG --behaviours FILE

It serves the executor protocol (``POST /flows/{flow}/versions/{version}/executions``)
on raw asyncio streams, so it can answer with exact bytes. Before answering, it
appends one line per request it received to LOG (``<flow>/<version> <execution>
<in flight for that version, this one included>``), written straight to the
file so the lines survive a SIGKILL. FILE is a JSON object mapping
``"<flow>/<version>"`` (or ``"<flow>/*"``) to a behaviour; it is read again on
every request, so a test can change behaviours while the process runs:

* ``ok`` (the default): 200 with ``{"status": "Succeeded", "output": …}``;
* ``slow S``: the same after S seconds;
* ``status N``: HTTP N with a JSON body;
* ``garbage``: bytes that are not HTTP, then the connection stays open;
* ``not-json``: 200 whose body is not JSON;
* ``close``: close the connection without answering (FIN);
* ``reset``: reset the connection without answering (RST);
* ``hang``: never answer; the request ends when the gateway closes the connection.

Standard library only, so it starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
from collections import Counter


class Executor:
    def __init__(self, log_path: str, behaviours_path: str) -> None:
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.behaviours_path = behaviours_path
        self.inflight: Counter[str] = Counter()

    def behaviour(self, key: str) -> str:
        try:
            with open(self.behaviours_path) as f:
                table = json.load(f)
        except (OSError, ValueError):
            table = {}
        flow = key.split("/", 1)[0]
        return str(table.get(key, table.get(f"{flow}/*", "ok")))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if not await self.answer(path, body, reader, writer):
                    return
        finally:
            writer.close()

    async def answer(
        self, path: str, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        parts = path.split("/")  # "", "flows", flow, "versions", version, "executions"
        key = f"{parts[2]}/{parts[4]}" if len(parts) > 4 else "?/?"
        payload = json.loads(body) if body else {}
        name = str(payload.get("execution", "-"))
        self.inflight[key] += 1
        try:
            os.write(self.log_fd, f"{key} {name} {self.inflight[key]}\n".encode())
            mode, _, argument = self.behaviour(key).partition(" ")
            if mode == "slow":
                await asyncio.sleep(float(argument))
                mode = "ok"
            if mode == "ok":
                out = {
                    "status": "Succeeded",
                    "output": {"ranOn": key, "input": payload.get("input")},
                }
                self.write(writer, 200, json.dumps(out).encode())
            elif mode == "status":
                self.write(writer, int(argument), b'{"message":"failing on purpose"}')
            elif mode == "not-json":
                self.write(writer, 200, b"this is not json")
            elif mode == "garbage":
                writer.write(b"SURPRISE! NOT HTTP\r\n\r\n")
                await reader.read()  # until the gateway gives up on us
                return False
            elif mode == "close":
                return False
            elif mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return False
            elif mode == "hang":
                await reader.read()  # returns at EOF: the gateway closed the connection
                return False
            else:
                self.write(writer, 500, b'{"message":"unknown behaviour"}')
            await writer.drain()
            return True
        finally:
            self.inflight[key] -= 1

    @staticmethod
    def write(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--behaviours", required=True)
    args = parser.parse_args()
    executor = Executor(args.log, args.behaviours)
    server = await asyncio.start_server(executor.serve, "127.0.0.1", args.port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
