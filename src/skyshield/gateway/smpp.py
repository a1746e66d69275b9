"""The SMPP firewall: an SMPP 3.4 proxy that judges every submit_sm before the SMS centre sees it.

Senders (ESMEs) bind to the firewall as they would to an SMS centre; for each bind the firewall
opens its own bind to the real SMS centre (same bind type) and relays. A submit_sm (or data_sm) is read, its
concatenated parts are gathered, the whole text is judged by the engine (in micro-batches across
all binds), and then either forwarded unchanged (deliver / tag / fold; only the sequence number is
rewritten) or answered by the firewall itself (block: an error status, or a fake "accepted" as operators do
for grey routes; hold: kept for review and answered "accepted", see :mod:`skyshield.gateway.smpp_hold`, or an
error status / fake "accepted"). deliver_sm (replies, delivery receipts) flow back unchanged; replies also go
to the opt-out registry when it is installed.

Each bind is its own connection with its own state: a malformed PDU gets a generic_nack on that
bind and affects no other bind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import itertools
import logging
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skyshield.events import Action, Channel, Message, Verdict
from skyshield.gateway import smpp_pdu as P
from skyshield.gateway.engine_process import EngineProcess
from skyshield.gateway.smpp_hold import HoldQueue
from skyshield.gateway.smpp_text import Group, Part, Reassembler, decode, split_udh
from skyshield.policy import Policy, PolicyError, parse_duration, parse_rate

log = logging.getLogger("skyshield.gateway.smpp")


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"cannot read address {text!r}: write HOST:PORT, e.g. 127.0.0.1:2775")
    return (host.strip("[]") or default_host), int(port)


@dataclass(slots=True)
class SmppSettings:
    """The ``[gateway.smpp]`` section of the policy, read once."""

    system_id: str = "skyshield"
    block_response: str = "error"
    block_status: int = P.ESME_RSUBMITFAIL
    hold_response: str = "queue"
    hold_status: int = P.ESME_RSUBMITFAIL
    hold_expiry: float = 86400.0
    hold_poll_interval: float = 1.0
    fail_open: bool = True
    fail_status: int = P.ESME_RSYSERR
    window: int = 100
    max_rate: tuple[int, int] = (1000, 1)
    throttled_status: int = P.ESME_RTHROTTLED
    batch_max: int = 256
    batch_wait: float = 0.0
    engine_thread: bool = True
    engine_process: bool = True
    engine_timeout: float = 5.0
    reassembly_timeout: float = 10.0
    verdict_tlv: int = 0
    upstream_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    max_pdu_bytes: int = 65536
    passthrough_auth: bool = False
    fake_receipt_delay: float = 2.0
    confirm_opt_out: bool = True

    @classmethod
    def from_policy(cls, policy: Policy) -> SmppSettings:
        s = policy.section("gateway.smpp")
        choices = (("block_response", ("error", "fake_ok")), ("hold_response", ("queue", "error", "fake_ok")))
        for key, allowed in choices:
            if s[key] not in allowed:
                raise PolicyError(f"{policy.source}: gateway.smpp.{key} must be one of "
                                  f"{', '.join(repr(a) for a in allowed)}, got {s[key]!r}")
        if parse_duration(s["hold_poll_interval"]) < 1:
            raise PolicyError(f"{policy.source}: gateway.smpp.hold_poll_interval must be at least 1s")
        if not 0 <= s["verdict_tlv"] <= 0xFFFF:
            raise PolicyError(f"{policy.source}: gateway.smpp.verdict_tlv must be a 16-bit tag (e.g. 0x1400) or 0")
        return cls(
            system_id=s["system_id"],
            block_response=s["block_response"],
            block_status=int(s["block_status"]),
            hold_response=s["hold_response"],
            hold_status=int(s["hold_status"]),
            hold_expiry=float(parse_duration(s["hold_expiry"])),
            hold_poll_interval=float(parse_duration(s["hold_poll_interval"])),
            fail_open=bool(s["fail_open"]),
            fail_status=int(s["fail_status"]),
            window=int(s["window"]),
            max_rate=parse_rate(s["max_rate"]),
            throttled_status=int(s["throttled_status"]),
            batch_max=int(s["batch_max"]),
            batch_wait=float(s["batch_wait_ms"]) / 1000.0,
            engine_thread=bool(s["engine_thread"]),
            engine_process=bool(s["engine_process"]),
            engine_timeout=float(parse_duration(s["engine_timeout"])),
            reassembly_timeout=float(parse_duration(s["reassembly_timeout"])),
            verdict_tlv=int(s["verdict_tlv"]),
            upstream_timeout=float(parse_duration(s["upstream_timeout"])),
            enquire_link_interval=float(parse_duration(s["enquire_link_interval"])),
            max_pdu_bytes=int(s["max_pdu_bytes"]),
            passthrough_auth=bool(s["passthrough_auth"]),
            fake_receipt_delay=float(parse_duration(s["fake_receipt_delay"])),
            confirm_opt_out=bool(s["confirm_opt_out"]),
        )


@dataclass(slots=True, frozen=True)
class Tenant:
    name: str
    system_id: str
    password: str
    upstream_system_id: str
    upstream_password: str


def tenants_from_policy(policy: Policy) -> dict[str, Tenant]:
    """SMPP credentials per tenant, keyed by system_id, from ``[tenants.NAME]`` tables that have a system_id."""
    out: dict[str, Tenant] = {}
    for name, table in (policy.data.get("tenants") or {}).items():
        if not isinstance(table, dict) or "system_id" not in table:
            continue
        system_id, password = str(table["system_id"]), str(table.get("password", ""))
        if len(system_id) > 15 or len(password) > 8:
            raise PolicyError(f"{policy.source}: tenants.{name}: SMPP system_id is at most 15 characters and "
                              "password at most 8")
        if system_id in out:
            raise PolicyError(f"{policy.source}: tenants.{name}: system_id {system_id!r} is used twice")
        out[system_id] = Tenant(name, system_id, password, str(table.get("upstream_system_id", system_id)),
                                str(table.get("upstream_password", password)))
    return out


class TokenBucket:
    """At most ``count`` events per ``seconds``, with bursts up to ``count``."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, count: int, seconds: float):
        self.rate = count / seconds
        self.capacity = float(count)
        self.tokens = float(count)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Framed(asyncio.Protocol):
    """Length-framed SMPP reads: any number of PDUs per TCP read, and PDUs split across reads."""

    max_pdu = 65536

    def __init__(self) -> None:
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= P.HEADER_LEN:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if length < P.HEADER_LEN or length > self.max_pdu:
                header = bytes(buf[pos:pos + P.HEADER_LEN])
                buf.clear()
                self.framing_lost(header, length)
                return
            if end - pos < length:
                break
            pdu = bytes(buf[pos:pos + length])
            pos += length
            self.dispatch(pdu)
        if pos:
            del buf[:pos]

    def dispatch(self, pdu: bytes) -> None:
        try:
            self.pdu_received(pdu)
        except Exception:  # noqa: BLE001 - one PDU's failure must not take the bind down
            log.exception("error handling %s", P.command_name(int.from_bytes(pdu[4:8], "big")))
            self.pdu_failed(pdu)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pdu_received(self, pdu: bytes) -> None:
        raise NotImplementedError

    def pdu_failed(self, pdu: bytes) -> None:
        pass

    def framing_lost(self, header: bytes, length: int) -> None:
        log.warning("closing connection: command_length %d is not a PDU length", length)
        if self.transport is not None:
            self.transport.close()


class BatchScorer:
    """Collects whole messages from every bind and judges them in one engine call per micro-batch.

    With ``engine_thread`` the engine runs on one worker thread while the event loop goes on reading and
    relaying. Batching adapts to the load: when the engine is idle a message is judged at once (with what
    the same turn of the event loop read, or what came within ``batch_wait``); while it is busy, what
    arrives forms the next batch, so batches grow only as the backlog grows.

    Records (write-behind): the verdicts go to the store on that same worker thread, between batches,
    in chunks, once the answers are on their way: never on the reply path, never in a third thread
    competing for the GIL, and never in a write transaction beside the engine's own (the consent
    ledger's send counts), so neither waits on SQLite's lock (whose busy handler sleeps 1, 2, 5... ms).
    """

    #: Records written in one store transaction between batches (a message arriving meanwhile waits for
    #: at most one chunk: 35-70 µs a record).
    RECORD_CHUNK = 16

    def __init__(self, engine: Any, settings: SmppSettings, recorder: Any = None, passthrough: bool = False):
        self.engine = engine
        self.passthrough = passthrough
        self.settings = settings
        self.recorder = recorder
        self.pending: list[tuple[EsmeSession, Group, Message]] = []
        self.records: list[tuple[Message, Verdict]] = []
        self._timer: asyncio.Handle | None = None
        self._busy = False
        self._executor: ThreadPoolExecutor | None = None
        #: The engine runs in a child process (it records there too); answers come on the event loop.
        self.process: EngineProcess | None = engine if isinstance(engine, EngineProcess) else None
        if engine is not None and self.process is None and settings.engine_thread:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="skyshield-engine")
        self.batches = 0
        self.judged = 0
        self.failures = 0
        self.engine_seconds = 0.0
        self._last_batch = 0
        self.waited = 0.0  # seconds messages spent between arriving and their batch starting, summed
        self.max_waited = 0.0

    @property
    def busy(self) -> bool:
        """A batch is being judged (or, on the engine thread, records written)."""
        return self._busy

    def stats(self) -> str:
        if not self.judged:
            return "engine: no messages judged"
        rate = self.judged / max(self.engine_seconds, 1e-9)
        return (f"engine: {self.judged} messages in {self.batches} batches (mean {self.judged / self.batches:.1f}), "
                f"{self.engine_seconds:.2f} s in engine.check ({rate:,.0f} msg/s); queued before judging: mean "
                f"{self.waited / self.judged * 1000:.2f} ms, max {self.max_waited * 1000:.1f} ms")

    def submit(self, session: EsmeSession, group: Group, message: Message) -> None:
        self.pending.append((session, group, message))
        if self._busy:
            return  # the batch being judged (or records being written) will pick these up when done
        if len(self.pending) >= self.settings.batch_max:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            if self.settings.batch_wait > 0:
                self._timer = loop.call_later(self.settings.batch_wait, self.flush)
            else:  # judge what this turn of the event loop read, without waiting for more
                self._timer = loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or not self.pending:
            return
        batch = self.pending[: self.settings.batch_max]
        del self.pending[: len(batch)]
        self._last_batch = len(batch)
        messages = [m for _, _, m in batch]
        now = time.time()
        waits = [now - m.time.timestamp() for m in messages]
        self.waited += sum(waits)
        self.max_waited = max(self.max_waited, *waits)
        if self.engine is None:
            self.finish(batch, None, 0.0, None if self.passthrough else RuntimeError("no engine"))
        elif self.process is not None:
            self._busy = True
            self.process.check(messages, lambda answer: self.answered(batch, answer))
        elif self._executor is None:
            self.finish(batch, *self.judge(messages))
        else:
            self._busy = True
            future = asyncio.get_running_loop().run_in_executor(self._executor, self.judge, messages)
            future.add_done_callback(lambda f: self.answered(batch, f.result()))

    def judge(self, messages: list[Message]) -> tuple[list[Verdict] | None, float, Exception | None]:
        started = time.perf_counter()
        try:
            return self.engine.check(messages), time.perf_counter() - started, None
        except Exception as exc:  # noqa: BLE001 - fail open or closed per policy, never crash the gateway
            return None, time.perf_counter() - started, exc

    def answered(self, batch: list[tuple[EsmeSession, Group, Message]],
                 answer: tuple[list[Verdict] | None, float, Exception | None]) -> None:
        """The engine thread or process answered ``batch`` (on the event loop)."""
        self._busy = False
        try:
            self.finish(batch, *answer)
        finally:
            self.next_job()

    def next_job(self) -> None:
        """The worker thread is free: judge what is waiting, else write records (a backlog first)."""
        if self._busy:
            return
        if self.records and (not self.pending or len(self.records) >= self.RECORD_CHUNK):
            # A message arriving meanwhile waits for one chunk at most, so chunks are small; while messages
            # wait, as many as the last batch judged, so the records keep up with the traffic at any load.
            size = self.RECORD_CHUNK if not self.pending else max(self.RECORD_CHUNK, self._last_batch)
            chunk = self.records[:size]
            del self.records[: len(chunk)]
            self._busy = True
            future = asyncio.get_running_loop().run_in_executor(self._executor, self.recorder.write, chunk)
            future.add_done_callback(self.written)
        elif self.pending:
            self.flush()

    def written(self, future: asyncio.Future) -> None:
        self._busy = False
        if not future.cancelled() and future.exception() is not None:
            log.error("recording failed", exc_info=future.exception())
        self.next_job()

    def finish(self, batch: list[tuple[EsmeSession, Group, Message]], verdicts: list[Verdict] | None,
               seconds: float, error: Exception | None) -> None:
        self.batches += 1
        if error is not None and self.engine is not None:
            self.failures += 1
            if self.failures < 10 or self.failures % 1000 == 0:
                log.error("engine failed on a batch of %d (failure %d)", len(batch), self.failures, exc_info=error)
        elif verdicts is not None:
            self.judged += len(batch)
            self.engine_seconds += seconds
        failed = error is not None
        kept = set()  # messages the hold queue records itself (with the held message, before answering)
        for i, (session, group, message) in enumerate(batch):
            if session.on_verdict(group, message, verdicts[i] if verdicts else None, failed):
                kept.add(i)
        if self.process is not None and verdicts:
            self.process.settle(kept)  # the engine process records the rest
        elif self.recorder is not None and verdicts:
            records = [(m, v) for i, ((_, _, m), v) in enumerate(zip(batch, verdicts, strict=True)) if i not in kept]
            if self._executor is None:
                self.recorder.record(records)  # no worker thread here: the recorder's own thread writes
            else:
                self.records.extend(records)

    def close(self) -> None:
        """Stop judging; records not yet written go to the recorder's thread (``Recorder.close`` writes them)."""
        self.flush()
        if self.process is not None:
            self.process.close()  # answers the batch in flight, then the child writes its records
        if self._executor is not None:
            # One job at a time runs there: let it end (a chunk of records being written must not be dropped).
            self._executor.shutdown(wait=True)
        if self.records and self.recorder is not None:
            self.recorder.record(self.records)
            self.records = []


class Firewall:
    """The SMPP firewall server. ``engine`` is anything with ``check(list[Message]) -> list[Verdict]``;
    ``None`` with ``scoring=False`` makes a pass-through relay (the benchmark's baseline)."""

    def __init__(
        self,
        policy: Policy,
        engine: Any,
        upstream: tuple[str, int],
        *,
        scoring: bool = True,
        recorder: Any = None,
        on_reply: Callable[[Message], Any] | None = None,
        settings: SmppSettings | None = None,
        held: Any = None,
    ):
        """``held`` (a :class:`skyshield.disposal.held.HeldMessages`) keeps held messages for review when
        ``hold_response = "queue"``; without it they are refused with ``hold_status``."""
        self.policy = policy
        self.settings = settings or SmppSettings.from_policy(policy)
        self.tenants = tenants_from_policy(policy)
        self.upstream = upstream
        self.scorer = BatchScorer(engine if scoring else None, self.settings, recorder, passthrough=not scoring)
        self.on_reply = on_reply
        self.sessions: set[EsmeSession] = set()
        self.server: asyncio.AbstractServer | None = None
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(3).hex()
        self.counts: dict[str, int] = {a.value: 0 for a in Action} | {
            "unjudged": 0, "refused_unjudged": 0, "throttled": 0, "malformed": 0, "opt_out_confirmations": 0,
            "held_kept": 0, "held_not_kept": 0, "held_released": 0, "held_rejected": 0}
        self.hold: HoldQueue | None = None
        if held is not None and self.settings.hold_response == "queue" and scoring:
            self.hold = HoldQueue(self, held)
        elif self.settings.hold_response == "queue" and scoring:
            log.warning("no store for held messages: messages judged \"hold\" are refused with hold_status 0x%02x",
                        self.settings.hold_status)

    async def start(self, host: str = "127.0.0.1", port: int = 2775, reuse_port: bool = False) -> tuple[str, int]:
        """Listen for senders; ``reuse_port`` lets several worker processes share the port (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: EsmeSession(self), host, port, reuse_port=reuse_port or None)
        sock = self.server.sockets[0].getsockname()
        if self.scorer.process is not None:
            self.scorer.process.attach(loop)
        if self.hold is not None:
            self.hold.start()
        log.info("SMPP firewall listening on %s:%d, SMS centre %s:%d", sock[0], sock[1], *self.upstream)
        return sock[0], sock[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self._drain()
        for session in list(self.sessions):
            session.close()
        self.scorer.close()
        if self.hold is not None:
            await self.hold.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _drain(self, timeout: float = 5.0) -> None:
        """Stop reading from the senders, then let what they already sent be answered before the binds close: the
        batch being judged, held messages being stored, messages relayed and not yet acknowledged by the SMS centre.
        A message acted on (stored, delivered) but never answered would be sent again by its sender. Parts of a
        concatenated message still waiting for their siblings are dropped with the bind, unanswered."""
        for session in self.sessions:
            if session.transport is not None and not session.transport.is_closing():
                session.transport.pause_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._answered_all():
            if loop.time() >= deadline:
                log.warning("stopping with messages not yet answered after %.0f s (SMS centre or store slow)", timeout)
                return
            await asyncio.sleep(0.005)

    def _answered_all(self) -> bool:
        scorer = self.scorer
        return (not scorer.pending and not scorer.busy and not (self.hold is not None and self.hold.keeping)
                and not any(session.to_upstream for session in self.sessions))

    def fake_message_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):010x}"

    def receiver_for(self, tenant: Tenant | None, prefer: EsmeSession | None = None) -> EsmeSession | None:
        """A live bind of ``tenant`` that takes deliver_sm (receiver or transceiver), ``prefer`` first."""
        candidates = ([prefer] if prefer is not None else []) + list(self.sessions)
        for session in candidates:
            if (not session.closed and session.tenant is tenant and tenant is not None
                    and session.bound in ("receiver", "transceiver")):
                return session
        return None

    def send_receipt(self, tenant: Tenant | None, prefer: EsmeSession | None, message_id: str,
                     submitted: P.ShortMessage, stat: str, text: str) -> bool:
        """Send the sender a delivery receipt the firewall made up (fake_ok, review decisions); False when no
        bind of the tenant can take it (logged)."""
        session = self.receiver_for(tenant, prefer)
        if session is None:
            log.info("no receiver bound for tenant %s: receipt %s for %s not sent", tenant.name if tenant else "?",
                     stat, message_id)
            return False
        now = datetime.now(UTC)
        receipt = P.delivery_receipt(message_id, submitted, stat, now, now, text)
        session.write(P.build(P.DELIVER_SM, 0, session.next_seq(), receipt.encode()))
        return True

    def confirm_opt_out(self, tenant: Tenant | None, reply: Message, filed: concurrent.futures.Future) -> None:
        """The opt-out registry filed ``reply``: send its one confirmation (a new opt-out, when the policy has a
        text) to the subscriber, from the number they replied to, through a transmitting bind of the tenant."""
        outcome = None if filed.cancelled() or filed.exception() is not None else filed.result()
        text = getattr(outcome, "confirmation", None)
        if not text:
            return
        session = next((x for x in self.sessions if not x.closed and x.tenant is tenant and tenant is not None
                        and x.bound in ("transmitter", "transceiver") and x.upstream is not None), None)
        if session is None:
            log.warning("opt-out confirmation to %s not sent: no transmitting bind of tenant %s is up",
                        reply.sender, tenant.name if tenant else "?")
            return
        try:
            data, coding = text.encode("gsm03.38"), 0
        except UnicodeError:
            data, coding = text.encode("utf-16-be"), 8
        sm = P.ShortMessage(source_addr=reply.recipient, destination_addr=reply.sender, data_coding=coding)
        if len(data) <= 140:
            sm.short_message = data
        else:
            sm.tlvs[P.TLV_MESSAGE_PAYLOAD] = data
        upstream = session.upstream
        assert upstream is not None
        upstream.write(P.build(P.SUBMIT_SM, 0, upstream.next_seq(), sm.encode()))
        self.counts["opt_out_confirmations"] += 1
        log.info("opt-out confirmation sent to %s from %s", reply.sender, reply.recipient)

    def authenticate(self, bind: P.Bind) -> tuple[int, Tenant | None]:
        if self.settings.passthrough_auth:
            return P.ESME_ROK, Tenant(bind.system_id, bind.system_id, bind.password, bind.system_id, bind.password)
        tenant = self.tenants.get(bind.system_id)
        if tenant is None:
            return P.ESME_RINVSYSID, None
        if not hmac.compare_digest(tenant.password.encode(), bind.password.encode()):
            return P.ESME_RINVPASWD, None
        return P.ESME_ROK, tenant


class UpstreamLink(_Framed):
    """The firewall's own bind to the SMS centre, one per sender bind."""

    def __init__(self, session: EsmeSession):
        super().__init__()
        self.session = session
        self.max_pdu = session.max_pdu
        self.seq = 1
        self.bind_answer: asyncio.Future[tuple[int, int]] | None = None

    def next_seq(self) -> int:
        self.seq = self.seq % 0x7FFFFFFF + 1
        return self.seq

    def pdu_received(self, pdu: bytes) -> None:
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        if self.bind_answer is not None and not self.bind_answer.done() and cmd & ~P.RESPONSE_BIT in P.BINDS:
            self.bind_answer.set_result((cmd, status))
            return
        self.session.on_upstream_pdu(pdu, cmd, status, seq)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.bind_answer is not None and not self.bind_answer.done():
            self.bind_answer.set_exception(ConnectionError("SMS centre closed the connection during bind"))
        self.session.upstream_lost()


class EsmeSession(_Framed):
    """One sender's bind: its own window, throttle, reassembly and upstream bind."""

    def __init__(self, firewall: Firewall):
        super().__init__()
        self.fw = firewall
        self.settings = firewall.settings
        self.max_pdu = self.settings.max_pdu_bytes
        self.peer = "?"
        self.bound: str | None = None
        self.binding = False
        self.early: list[bytes] = []
        self.tenant: Tenant | None = None
        self.upstream: UpstreamLink | None = None
        self.outstanding = 0
        #: upstream sequence -> (sender's sequence, counts toward the window)
        self.to_upstream: dict[int, tuple[int, bool]] = {}
        #: our sequence toward the sender -> the SMS centre's sequence (deliver_sm relayed down)
        self.to_esme: dict[int, int] = {}
        #: upstream sequence -> what to do with the answer, for PDUs the firewall sends itself (released messages)
        self.own_requests: dict[int, Callable[[int, bytes], None]] = {}
        self.seq = 0
        self.bucket = TokenBucket(*self.settings.max_rate)
        self.reassembler = Reassembler(self.settings.reassembly_timeout)
        self._expiry: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self.closed = False

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.fw.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.fw.sessions.discard(self)
        for handle in (self._expiry, self._keepalive):
            if handle is not None:
                handle.cancel()
        # Parts still waiting for their siblings are dropped with the bind: nothing was answered or forwarded.
        self.reassembler.drain()
        if self.upstream is not None and self.upstream.transport is not None:
            if self.bound and not self.upstream.transport.is_closing():
                self.upstream.write(P.build(P.UNBIND, 0, self.upstream.next_seq()))
            self.upstream.transport.close()
        if self.transport is not None:
            self.transport.close()

    def upstream_lost(self) -> None:
        if not self.closed and self.bound:
            log.warning("%s: SMS centre closed the upstream bind; closing the sender's bind", self.peer)
        if self.bound:
            self.close()

    def framing_lost(self, header: bytes, length: int) -> None:
        # The stream cannot be resynchronised after a bad length: say why, then close this bind only.
        seq = int.from_bytes(header[12:16], "big")
        log.warning("%s: command_length %d is not a PDU length; generic_nack and close", self.peer, length)
        self.fw.counts["malformed"] += 1
        self.write(P.generic_nack(P.ESME_RINVCMDLEN, seq))
        self.close()

    def pdu_failed(self, pdu: bytes) -> None:
        _, cmd, _, seq = P.HEADER.unpack_from(pdu)
        if not cmd & P.RESPONSE_BIT:
            self.write(P.generic_nack(P.ESME_RSYSERR, seq))

    def next_seq(self) -> int:
        self.seq = self.seq % 0x7FFFFFFF + 1
        return self.seq

    # -- from the sender ----------------------------------------------------------------------------

    def pdu_received(self, pdu: bytes) -> None:
        if self.binding:
            # Sent before our bind_resp (pipelined): handle it once the bind is settled, in order.
            if len(self.early) >= self.settings.window:
                log.warning("%s: %d PDUs sent before the bind was answered; closing", self.peer, len(self.early))
                self.close()
                return
            self.early.append(pdu)
            return
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        if cmd & P.RESPONSE_BIT:
            up_seq = self.to_esme.pop(seq, None)
            if up_seq is not None and self.upstream is not None:
                self.upstream.write(P.with_sequence(pdu, up_seq))
            return
        if (cmd == P.SUBMIT_SM or cmd == P.DATA_SM) and self.bound is not None:
            self.on_submit(seq, pdu, cmd)
        elif cmd == P.ENQUIRE_LINK:
            self.write(P.empty_resp(cmd, seq))
        elif cmd in P.BINDS:
            self.on_bind(cmd, seq, pdu)
        elif cmd == P.UNBIND:
            self.write(P.empty_resp(cmd, seq))
            self.close()
        elif cmd not in P.KNOWN_COMMANDS:
            self.fw.counts["malformed"] += 1
            log.info("%s: unknown command_id 0x%08x; generic_nack", self.peer, cmd)
            self.write(P.generic_nack(P.ESME_RINVCMDID, seq))
        elif self.bound is None:
            self.write(P.build(cmd | P.RESPONSE_BIT, P.ESME_RINVBNDSTS, seq))
        elif cmd in (P.QUERY_SM, P.CANCEL_SM):
            self.relay_up(seq, pdu, counts=False)
        else:
            # submit_multi and replace_sm carry text the firewall does not judge yet: relaying them would be
            # a way around it, so they are refused.
            log.info("%s: %s is not relayed by the firewall", self.peer, P.command_name(cmd))
            self.write(P.generic_nack(P.ESME_RINVCMDID, seq))

    def relay_up(self, seq: int, pdu: bytes, counts: bool) -> None:
        if self.upstream is None:
            if counts:
                self.outstanding -= 1
            self.write(P.generic_nack(P.ESME_RSYSERR, seq))
            return
        up_seq = self.upstream.next_seq()
        self.to_upstream[up_seq] = (seq, counts)
        self.upstream.write(P.with_sequence(pdu, up_seq))

    def on_bind(self, cmd: int, seq: int, pdu: bytes) -> None:
        if self.bound is not None:
            self.write(P.bind_resp(cmd, P.ESME_RALYBND, seq, self.settings.system_id))
            return
        try:
            bind = P.parse_bind(pdu[P.HEADER_LEN:])
        except P.PduError as exc:
            self.fw.counts["malformed"] += 1
            log.info("%s: unreadable bind: %s", self.peer, exc)
            self.write(P.generic_nack(P.ESME_RINVCMDLEN, seq))
            return
        status, tenant = self.fw.authenticate(bind)
        if tenant is None:
            log.warning("%s: bind refused for system_id %r (status 0x%02x)", self.peer, bind.system_id, status)
            self.write(P.bind_resp(cmd, status, seq, self.settings.system_id))
            return
        self.binding = True
        self._bind_task = asyncio.get_running_loop().create_task(self.bind_upstream(cmd, seq, bind, tenant))

    async def bind_upstream(self, cmd: int, seq: int, bind: P.Bind, tenant: Tenant) -> None:
        loop = asyncio.get_running_loop()
        link = UpstreamLink(self)
        status = P.ESME_RBINDFAIL
        try:
            await asyncio.wait_for(loop.create_connection(lambda: link, *self.fw.upstream),
                                   self.settings.upstream_timeout)
            link.bind_answer = loop.create_future()
            up_bind = P.Bind(tenant.upstream_system_id, tenant.upstream_password, bind.system_type,
                             0x34, bind.addr_ton, bind.addr_npi, bind.address_range)
            link.write(P.build(cmd, 0, link.seq, up_bind.encode()))
            _, status = await asyncio.wait_for(link.bind_answer, self.settings.upstream_timeout)
        except (TimeoutError, OSError) as exc:
            log.error("%s: cannot bind to the SMS centre %s:%d: %s", self.peer, *self.fw.upstream, exc or "timeout")
        self.binding = False
        if self.closed:
            if link.transport is not None:
                link.transport.close()
            return
        if status != P.ESME_ROK:
            if status != P.ESME_RBINDFAIL:
                log.warning("%s: SMS centre refused the bind of %r: status 0x%02x", self.peer, tenant.name, status)
            if link.transport is not None:
                link.transport.close()
            self.write(P.bind_resp(cmd, status, seq, self.settings.system_id))
            self.replay_early()
            return
        self.upstream = link
        self.tenant = tenant
        self.bound = P.BINDS[cmd]
        log.info("%s: bound as %s for tenant %s", self.peer, self.bound, tenant.name)
        self.write(P.bind_resp(cmd, P.ESME_ROK, seq, self.settings.system_id))
        self._keepalive = loop.call_later(self.settings.enquire_link_interval, self.keepalive)
        self.replay_early()

    def replay_early(self) -> None:
        early, self.early = self.early, []
        for pdu in early:
            self.dispatch(pdu)

    def keepalive(self) -> None:
        if self.closed or self.upstream is None:
            return
        self.upstream.write(P.build(P.ENQUIRE_LINK, 0, self.upstream.next_seq()))
        self._keepalive = asyncio.get_running_loop().call_later(self.settings.enquire_link_interval, self.keepalive)

    def on_submit(self, seq: int, pdu: bytes, cmd: int = P.SUBMIT_SM) -> None:
        if self.bound == "receiver":
            self.write(P.refusal(cmd, P.ESME_RINVBNDSTS, seq))
            return
        if self.outstanding >= self.settings.window or not self.bucket.take():
            self.fw.counts["throttled"] += 1
            self.write(P.refusal(cmd, self.settings.throttled_status, seq))
            return
        try:
            body = pdu[P.HEADER_LEN:]
            sm = P.parse_short_message(body) if cmd == P.SUBMIT_SM else P.parse_data_sm(body)
            segment, data = split_udh(sm)
        except P.PduError as exc:
            self.fw.counts["malformed"] += 1
            log.info("%s: unreadable %s seq %d: %s", self.peer, P.command_name(cmd), seq, exc)
            if exc.status == P.ESME_RINVCMDLEN:
                self.write(P.generic_nack(exc.status, seq))
            else:
                self.write(P.refusal(cmd, exc.status, seq))
            return
        self.outstanding += 1
        group = self.reassembler.add(Part(seq, pdu, sm, data, segment, command_id=cmd))
        if group is not None:
            self.judge(group)
        if len(self.reassembler) and self._expiry is None:
            self._expiry = asyncio.get_running_loop().call_later(1.0, self.expire_parts)

    def expire_parts(self) -> None:
        self._expiry = None
        for group in self.reassembler.expire():
            log.info("%s: judging a concatenated message with %d of %d parts (the rest did not come in %gs)",
                     self.peer, len(group.parts), group.parts[0].segment.total if group.parts[0].segment else 1,
                     self.settings.reassembly_timeout)
            self.judge(group)
        if len(self.reassembler) and not self.closed:
            self._expiry = asyncio.get_running_loop().call_later(1.0, self.expire_parts)

    def judge(self, group: Group) -> None:
        first = group.parts[0]
        assert self.tenant is not None
        message = Message(
            text=group.text,
            sender=first.sm.source_addr,
            recipient=first.sm.destination_addr,
            channel=Channel.SMPP,
            tenant=self.tenant.name,
            external_id=f"smpp:{self.tenant.system_id}:{first.sequence}",
        )
        self.fw.scorer.submit(self, group, message)

    # -- the verdict --------------------------------------------------------------------------------

    def on_verdict(self, group: Group, message: Message, verdict: Verdict | None, failed: bool) -> bool:
        """Act on the verdict; True when the hold queue took the message (it records the verdict itself)."""
        group.verdict = verdict
        s = self.settings
        if verdict is not None:
            action = verdict.action
        elif failed and not s.fail_open:
            action = None
        else:
            action = Action.DELIVER
        self.fw.counts[action.value if action else "refused_unjudged"] += 1
        if verdict is None and failed:
            self.fw.counts["unjudged"] += 1
        if self.closed:
            return False
        if action in (Action.DELIVER, Action.TAG, Action.FOLD) and self.upstream is not None:
            label = action.value.encode() if s.verdict_tlv and action is not Action.DELIVER else None
            for part in group.parts:
                pdu = part.pdu if label is None else add_tlv(part.pdu, s.verdict_tlv, label)
                self.relay_up(part.sequence, pdu, counts=True)
            return False
        if action is Action.HOLD and verdict is not None and self.fw.hold is not None:
            self.fw.hold.keep(self, group, message, verdict)
            return True
        if action is Action.BLOCK or action is Action.HOLD:
            fake = (s.block_response if action is Action.BLOCK else s.hold_response) == "fake_ok"
            status = s.block_status if action is Action.BLOCK else s.hold_status
            if verdict is not None:
                log.info("%s: %s %s -> %s (score %.1f): %s", self.peer, action.value, group.parts[0].sm.source_addr,
                         group.parts[0].sm.destination_addr, verdict.score, "; ".join(verdict.reasons()[:3]))
        else:
            fake, status = False, s.fail_status
        for part in group.parts:
            self.outstanding -= 1
            if fake:
                message_id = self.fw.fake_message_id()
                self.write(P.refusal(part.command_id, P.ESME_ROK, part.sequence, message_id))
                if action is Action.BLOCK and P.receipt_wanted(part.sm.registered_delivery, "DELIVRD"):
                    # The sender asked for a receipt: "delivered", as the SMS centre would say it, so a grey
                    # route cannot tell its message was dropped.
                    asyncio.get_running_loop().call_later(
                        s.fake_receipt_delay, self.fw.send_receipt, self.tenant, self, message_id, part.sm,
                        "DELIVRD", group.text)
            else:
                self.write(P.refusal(part.command_id, status, part.sequence))
        return False

    # -- from the SMS centre ------------------------------------------------------------------------

    def on_upstream_pdu(self, pdu: bytes, cmd: int, status: int, seq: int) -> None:
        if cmd & P.RESPONSE_BIT:
            entry = self.to_upstream.pop(seq, None)
            if entry is None:
                answer = self.own_requests.pop(seq, None)
                if answer is not None:
                    answer(status, pdu)
                return  # else the answer to our own enquire_link or opt-out confirmation
            esme_seq, counts = entry
            if counts:
                self.outstanding -= 1
            self.write(P.with_sequence(pdu, esme_seq))
            return
        if cmd == P.ENQUIRE_LINK:
            self.upstream.write(P.empty_resp(cmd, seq))  # type: ignore[union-attr]
            return
        if cmd == P.UNBIND:
            self.upstream.write(P.empty_resp(cmd, seq))  # type: ignore[union-attr]
            self.bound = None
            self.write(P.build(P.UNBIND, 0, self.next_seq()))
            self.close()
            return
        if cmd == P.DELIVER_SM and self.fw.hold is not None and self.fw.hold.receipt_ids:
            pdu = self.fw.hold.map_receipt(self.tenant, pdu)
        if cmd == P.DELIVER_SM and self.fw.on_reply is not None:
            self.offer_reply(pdu)
        down_seq = self.next_seq()
        self.to_esme[down_seq] = seq
        self.write(P.with_sequence(pdu, down_seq))

    def offer_reply(self, pdu: bytes) -> None:
        """A mobile-originated reply (not a delivery receipt) goes to the opt-out registry as well."""
        try:
            sm = P.parse_short_message(pdu[P.HEADER_LEN:])
            if sm.esm_class & P.ESM_TYPE_MASK:
                return  # delivery receipt or other SMSC notification
            _, data = split_udh(sm)
            text = decode(data, sm.data_coding)
        except P.PduError as exc:
            log.info("%s: deliver_sm relayed without opt-out check, cannot read it: %s", self.peer, exc)
            return
        reply = Message(text=text, sender=sm.source_addr, recipient=sm.destination_addr, channel=Channel.REPLY,
                        tenant=self.tenant.name if self.tenant else "default")
        try:
            filed = self.fw.on_reply(reply)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the reply is relayed whatever the registry does
            log.exception("opt-out registry failed on a reply from %s", sm.source_addr)
            return
        if isinstance(filed, concurrent.futures.Future) and self.settings.confirm_opt_out:
            loop = asyncio.get_running_loop()
            filed.add_done_callback(lambda f: loop.call_soon_threadsafe(self.fw.confirm_opt_out, self.tenant, reply, f))


def add_tlv(pdu: bytes, tag: int, value: bytes) -> bytes:
    """The PDU with one more optional parameter at the end, its command_length adjusted."""
    extra = struct.pack(">HH", tag, len(value)) + value
    return (len(pdu) + len(extra)).to_bytes(4, "big") + pdu[4:] + extra
