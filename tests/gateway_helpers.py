"""Shared pieces of the gateway tests: an event loop in a thread, a keyword engine, an SMPP socket, and an SMPP
firewall between real smpplib senders and the SMSC simulator."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import smpplib.client
import smpplib.gsm

from skyshield.events import Action, Category, Message, Signal, Verdict
from skyshield.gateway.smpp import Firewall
from skyshield.gateway.smsc_sim import SmscSimulator
from skyshield.policy import Policy

TENANTS = """
[tenants.acme]
system_id = "acme"
password = "secret"
"""


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


class Gateway:
    """The SMPP firewall on loopback between smpplib senders (``client()``) and an SMSC simulator (``smsc``).
    ``held`` is the firewall's hold queue store (``HeldMessages``); ``restart()`` replaces the firewall by a new
    one on the same SMSC and store, as a process restart would (the senders must bind again)."""

    def __init__(self, loop: LoopThread, policy_text: str = "", engine: Any = None, scoring: bool = True,
                 held: Any = None):
        self.loop = loop
        self.engine = engine if engine is not None else KeywordEngine()
        self.replies: list[Message] = []
        self.policy = Policy.from_text(TENANTS + policy_text)
        self.scoring = scoring
        self.held = held
        self.smsc = SmscSimulator()
        self.smsc_addr = loop.run(self.smsc.start())
        self.clients: list[smpplib.client.Client] = []
        self.firewall, self.port = self.start_firewall()

    def start_firewall(self) -> tuple[Firewall, int]:
        firewall = Firewall(self.policy, self.engine, self.smsc_addr, scoring=self.scoring,
                            on_reply=self.replies.append, held=self.held)
        return firewall, self.loop.run(firewall.start("127.0.0.1", 0))[1]

    def restart(self) -> None:
        self.disconnect_clients()
        self.loop.run(self.firewall.close())
        self.firewall, self.port = self.start_firewall()

    def client(self, bind: str = "transceiver", system_id: str = "acme", password: str = "secret",
               client_class: type = smpplib.client.Client) -> smpplib.client.Client:
        client = client_class("127.0.0.1", self.port, timeout=5, allow_unknown_opt_params=True)
        client.answers = []
        client.delivered = []
        client.set_message_sent_handler(lambda pdu: client.answers.append(pdu))
        client.set_error_pdu_handler(lambda pdu: None)
        client.set_message_received_handler(lambda pdu: client.delivered.append(pdu))
        client.connect()
        self.clients.append(client)
        getattr(client, f"bind_{bind}")(system_id=system_id, password=password)
        return client

    def disconnect_clients(self) -> None:
        for client in self.clients:
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.clients = []

    def close(self) -> None:
        self.disconnect_clients()
        self.loop.run(self.firewall.close())
        self.loop.run(self.smsc.close())


def send_text(client: smpplib.client.Client, text: str, source: str = "10690001", dest: str = "13800138000",
              registered_delivery: bool = False) -> int:
    """Send ``text`` the way smpplib's users do (its own splitting and encoding); returns the number of parts."""
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    for part in parts:
        client.send_message(source_addr=source, destination_addr=dest, short_message=part, data_coding=coding,
                            esm_class=esm_class, registered_delivery=registered_delivery)
    return len(parts)


def read_answers(client: smpplib.client.Client, count: int) -> list:
    while len(client.answers) < count:
        client.read_once()
    return client.answers


def keyword_engine(policy: Policy) -> KeywordEngine:
    """An engine factory for :class:`~skyshield.gateway.engine_process.EngineProcess` (module-level, so the
    spawned child can import it): a :class:`KeywordEngine` that also holds texts with "请核对收件信息".
    ``SKYSHIELD_TEST_BUILD_DELAY`` (seconds) makes building it slow, as loading a real model is."""
    time.sleep(float(os.environ.get("SKYSHIELD_TEST_BUILD_DELAY", "0")))
    return KeywordEngine({"安全账户": Action.BLOCK, "verify your account": Action.BLOCK, "请核对收件信息": Action.HOLD})


class StallingEngine(KeywordEngine):
    """A keyword engine that never answers a batch with "STALL" in it (as a stuck engine would not)."""

    def check(self, messages: list[Message]) -> list[Verdict]:
        if any("STALL" in m.text for m in messages):
            time.sleep(3600)
        return super().check(messages)


def stalling_engine(policy: Policy) -> KeywordEngine:
    return StallingEngine()


def broken_engine(policy: Policy) -> KeywordEngine:
    raise RuntimeError("model file is corrupt")
