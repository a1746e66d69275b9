"""Shared pieces of the gateway tests: an event loop in a thread, a keyword engine, an SMPP socket."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from skyshield.events import Action, Category, Message, Signal, Verdict


class LoopThread:
    """An asyncio loop on a background thread, so blocking peers (smpplib, sipp) can run in the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def make_verdict(action: Action, category: Category = Category.PERSONAL, matched: str = "") -> Verdict:
    signals = [Signal("TEST_PHRASE", 1.0, {"matched": [matched]}, 20.0)] if matched else []
    return Verdict(action, category, None, 1.0 if matched else 0.0, 20.0 if matched else 0.0, signals, "test")


class KeywordEngine:
    """Stands in for the engine where a test needs a known verdict: texts with a listed phrase get ``action``."""

    def __init__(self, phrases: dict[str, Action] | None = None, fail: bool = False):
        self.phrases = phrases or {"安全账户": Action.BLOCK, "verify your account": Action.BLOCK}
        self.fail = fail
        self.seen: list[Message] = []
        self.calls = 0

    def check(self, messages: list[Message]) -> list[Verdict]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("engine down")
        self.seen.extend(messages)
        out = []
        for m in messages:
            hit = next((p for p in self.phrases if p in m.text), "")
            action = self.phrases[hit] if hit else Action.DELIVER
            out.append(make_verdict(action, Category.FRAUD if hit else Category.PERSONAL, hit))
        return out


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class RawSmpp:
    """A bare SMPP socket for what a library will not send: malformed PDUs, odd framing."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[int, int, int, bytes]:
        while len(self.buf) < 4 or len(self.buf) < struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        length = struct.unpack(">I", self.buf[:4])[0]
        pdu, self.buf = self.buf[:length], self.buf[length:]
        _, cmd, status, seq = struct.unpack(">IIII", pdu[:16])
        return cmd, status, seq, pdu[16:]

    def closed(self) -> bool:
        try:
            self.sock.settimeout(2)
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()
