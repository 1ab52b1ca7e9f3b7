"""A scripted Python `websockets` client for interop_test.go
(TestInteropPythonClient), the counterpart of ws_client.mjs.

    python3 websockets_client.py URL SCENARIO

It prints what it sees as JSON lines, one object per line, each with an
"event" field, with the scenarios and events of ws_client.mjs, except that
the library does not report the server's pings (it answers them itself).
Written for websockets 10 (Debian's python3-websockets) and later.
"""

import asyncio
import hashlib
import json
import sys

import websockets


def emit(**obj):
    print(json.dumps(obj), flush=True)


def big_payload(n):
    return bytes(i % 251 for i in range(n))


def close_event(ws):
    emit(event="close", code=ws.close_code, reason=ws.close_reason or "")


async def exchange(ws):
    cases = [
        ("text", "hello"),
        ("utf8", "héllo wörld ✓ 🌍"),
        ("empty-text", ""),
        ("binary", bytes(range(256))),
        ("empty-binary", b""),
        ("big-binary", big_payload(1 << 20)),
        ("big-text", "a" * (1 << 20)),
    ]
    for name, payload in cases:
        await ws.send(payload)
        got = await ws.recv()
        binary = isinstance(got, bytes)
        raw = got if binary else got.encode()
        want = payload if isinstance(payload, bytes) else payload.encode()
        emit(
            event="echo",
            name=name,
            ok=binary == isinstance(payload, bytes) and raw == want,
            binary=binary,
            len=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    # websockets matches the pong to the ping by its payload.
    pong = await ws.ping(b"py-ping")
    await pong
    emit(event="pong", data="py-ping")
    await ws.close(code=4000, reason="client bye")
    close_event(ws)


async def await_close(ws):
    await ws.send("ready")
    try:
        async for msg in ws:
            binary = isinstance(msg, bytes)
            emit(event="message", binary=binary, data=msg.decode() if binary else msg)
    except websockets.ConnectionClosed:
        pass
    close_event(ws)


async def too_big(ws):
    try:
        await ws.send(big_payload((1 << 20) + 1))
        await ws.recv()
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    close_event(ws)


SCENARIOS = {"exchange": exchange, "await-close": await_close, "too-big": too_big}


async def main(url, scenario):
    protocols = ["v1", "v2"] if scenario == "exchange" else None
    async with websockets.connect(
        url, subprotocols=protocols, max_size=1 << 20, ping_interval=None
    ) as ws:
        emit(event="open", protocol=ws.subprotocol or "")
        await SCENARIOS[scenario](ws)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 20))
    except Exception as err:  # reported to the Go test, which fails on it
        emit(event="error", message=repr(err))
        sys.exit(1)
