"""The SIP call-screening proxy: a stateless UDP proxy (RFC 3261 16.11) that screens each new INVITE.

allow → the INVITE goes on to the next hop (our Via on top, Max-Forwards one less); responses come
back along the Via headers. block → the proxy answers ``607 Unwanted`` (RFC 8197) or ``603 Decline``
itself. suspected (fold / hold by default) → forwarded with a label header the handset can show
(by default ``Warning: 399 skyshield "suspected spam"``; see docs/gateway.md). When the call ends,
its outcome (answered, duration) goes back to the screener, which learns callers' answer rates.

Requests from the next hop (the callee side) are routed by their Request-URI; everything else goes
to the next hop. Retransmitted INVITEs get the same decision without being screened again, and the
ACK / CANCEL for a call the proxy refused itself stop at the proxy. Every decision is recorded in the
store (channel ``call``, through the gateways' write-behind :class:`~skyshield.gateway.recording.Recorder`),
logged, and written to a JSON-lines decision log when the policy names one.

Overload: the proxy reads its UDP socket itself, many datagrams per wake-up, with the kernel's receive time
of each (``SO_TIMESTAMPNS``). A new INVITE that waited in the socket longer than ``overload_delay_ms`` is
answered ``503 Service Unavailable`` with ``Retry-After`` at once, unscreened and unrecorded (it was never
judged), while the messages of calls already in progress go on as usual: throughput stays near what one
core can do instead of melting down under sipp's / the callers' retransmissions.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skyshield.events import Action, Call, Category, Signal, Verdict
from skyshield.gateway import sip_message as S
from skyshield.gateway.recording import call_message
from skyshield.policy import Policy, PolicyError, parse_duration

log = logging.getLogger("skyshield.gateway.sip")

REASONS = {603: "Decline", 607: "Unwanted"}
#: The signal a call's record carries when it could not be screened (fail open / closed per policy).
SCREENING_UNAVAILABLE = "SCREENING_UNAVAILABLE"
#: Datagrams read per wake-up of the event loop before TCP and timers get their turn.
READ_BURST = 64
# SO_TIMESTAMPNS (socket(7)): the kernel's receive time of each datagram, as ancillary data. Python 3.11 does
# not name it; 35 is its value in Linux's generic socket ABI (x86-64, arm64). Elsewhere: no overload control.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


class CallScreener(Protocol):
    def screen(self, call: Call) -> Verdict: ...


@dataclass(slots=True)
class SipSettings:
    block_code: int = 607
    suspect_headers: tuple[str, ...] = ('Warning: 399 skyshield "suspected spam"',)
    suspect_actions: frozenset[Action] = frozenset({Action.FOLD, Action.HOLD})
    fail_open: bool = True
    decision_memory: float = 32.0
    decision_log: str = ""
    tenant: str = "default"
    tcp: bool = True
    receive_buffer: int = 4 << 20
    overload_delay: float = 0.1
    retry_after: int = 5

    @classmethod
    def from_policy(cls, policy: Policy) -> SipSettings:
        s = policy.section("gateway.sip")
        if s["block_code"] not in REASONS:
            raise PolicyError(f"{policy.source}: gateway.sip.block_code must be 607 (Unwanted) or 603 (Decline)")
        try:
            label = frozenset(Action(a) for a in s["label_actions"])
        except ValueError as exc:
            raise PolicyError(f"{policy.source}: gateway.sip.label_actions: {exc}") from None
        if Action.BLOCK in label:
            raise PolicyError(f"{policy.source}: gateway.sip.label_actions cannot hold \"block\"")
        headers = tuple(s["suspect_headers"])
        for h in headers:
            if ":" not in h or "\n" in h or "\r" in h:
                raise PolicyError(f"{policy.source}: gateway.sip.suspect_headers: {h!r} is not one 'Name: value' line")
        return cls(
            block_code=int(s["block_code"]),
            suspect_headers=headers,
            suspect_actions=label,
            fail_open=bool(s["fail_open"]),
            decision_memory=float(parse_duration(s["decision_memory"])),
            decision_log=s["decision_log"],
            tenant=s["tenant"],
            tcp=bool(s["tcp"]),
            receive_buffer=_positive(policy, "receive_buffer", s["receive_buffer"]),
            overload_delay=_positive(policy, "overload_delay_ms", s["overload_delay_ms"]) / 1000.0,
            retry_after=_positive(policy, "retry_after", s["retry_after"]),
        )


def _positive(policy: Policy, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(f"{policy.source}: gateway.sip.{key} must be a whole number above 0, not {value!r}")
    return value


class Recorder(Protocol):
    def record(self, items: Any) -> None: ...


@dataclass(slots=True)
class Decision:
    action: str  # "forward", "label", "refuse", "busy" (503, overloaded)
    verdict: Verdict | None
    at: float


class SipProxy:
    """The proxy on one UDP socket; ``screener`` has ``screen(Call) -> Verdict`` (or is ``None``: fail mode).

    ``recorder`` (``record([(Message, Verdict)])``, see ``gateway/recording.py``) gets every decision;
    ``screening=False`` makes a pass-through relay (the benchmark's baseline): nothing screened or recorded.
    """

    def __init__(self, policy: Policy, screener: CallScreener | None, next_hop: tuple[str, int],
                 settings: SipSettings | None = None, recorder: Recorder | None = None, screening: bool = True):
        self.settings = settings or SipSettings.from_policy(policy)
        self.screener = screener
        self.next_hop = next_hop
        self.recorder = recorder
        self.screening = screening
        self.sock: socket.socket | None = None
        self.tcp: SipTcp | None = None
        self.host, self.port = "127.0.0.1", 5060
        self.decisions: OrderedDict[str, Decision] = OrderedDict()
        #: Calls let through, by Call-ID: the Call and when it was answered (for the screener's outcome()).
        self.live: OrderedDict[str, list[Any]] = OrderedDict()
        self._log_file = None
        if self.settings.decision_log:
            path = Path(self.settings.decision_log)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = path.open("a", encoding="utf-8", buffering=1)
        self.counts = {"screened": 0, "forward": 0, "label": 0, "refuse": 0, "overload": 0, "bad": 0,
                       "screen_failed": 0, "send_dropped": 0}
        self._secret = os.urandom(8).hex()
        self._stamped = False
        self._overload_logged = 0.0

    # -- socket -------------------------------------------------------------------------------------

    def open(self, listen: tuple[str, int]) -> None:
        """Bind the UDP socket and read it on the running event loop."""
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Room for bursts and scheduling hiccups (the kernel caps it at net.core.rmem_max): a full
            # buffer drops datagrams, and every drop costs a 500 ms retransmission and a longer call set-up.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.receive_buffer)
            if _SO_TIMESTAMPNS is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    self._stamped = True
                except OSError:
                    pass
            if not self._stamped:
                log.warning("no receive timestamps on this platform: overload control (503) is off")
            sock.setblocking(False)
            sock.bind(listen)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        asyncio.get_running_loop().add_reader(sock.fileno(), self.read_ready)

    def read_ready(self) -> None:
        """Read what the socket holds (up to ``READ_BURST`` datagrams), each with how long it waited there."""
        sock = self.sock
        if sock is None:
            return
        for _ in range(READ_BURST):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(S.MAX_MESSAGE + 1, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket: the next read goes on
                log.info("UDP read error: %s", exc)
                return
            waited = 0.0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    waited = time.time() - (sec + nsec * 1e-9)
            self.receive(data, addr[:2], "UDP", waited)

    def close(self) -> None:
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            except RuntimeError:  # no running loop (closing after it stopped)
                pass
            self.sock.close()
            self.sock = None
        if self.tcp is not None:
            self.tcp.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def send(self, msg: S.SipMessage, addr: tuple[str, int], transport: str = "UDP") -> None:
        # Only IP literals and real ports: a host name would mean a blocking DNS lookup on the event loop,
        # and a port out of range would make the datagram transport close for good.
        host, port = addr
        try:
            ipaddress.ip_address(host)
        except ValueError:
            log.info("not sending to %r: not an IP address (this proxy does no DNS lookups)", host)
            return
        if not 0 < port < 65536:
            log.info("not sending to port %d", port)
            return
        if transport == "TCP":
            if self.tcp is not None:
                self.tcp.send((host, port), msg.encode())
            else:
                log.info("not sending over TCP to %s:%d: TCP is off (gateway.sip.tcp)", host, port)
        elif self.sock is not None:
            try:
                self.sock.sendto(msg.encode(), (host, port))
            except (BlockingIOError, InterruptedError):  # our send buffer is full: UDP may drop, SIP retransmits
                self.counts["send_dropped"] += 1
            except OSError as exc:
                self.counts["send_dropped"] += 1
                log.info("could not send to %s:%d: %s", host, port, exc)

    def receive(self, data: bytes, addr: tuple[str, int], transport: str, waited: float = 0.0) -> None:
        """One SIP message from ``addr`` over ``transport`` ("UDP" or "TCP"), ``waited`` seconds in the socket."""
        if not data.strip():
            return  # CRLF keep-alive
        try:
            msg = S.parse(data)
            if msg.is_request:
                self.on_request(msg, addr, transport, waited)
            else:
                self.on_response(msg, addr)
        except S.SipError as exc:
            self.counts["bad"] += 1
            partial = exc.message
            if partial is not None and partial.is_request and partial.method != "ACK" and partial.get("via"):
                log.info("400 to %s:%d: %s", addr[0], addr[1], exc)
                self.send_response(partial, 400, f"Bad Request ({str(exc)[:60]})", addr, transport)
            else:
                log.info("dropped an unreadable datagram from %s:%d: %s", addr[0], addr[1], exc)
        except Exception:  # noqa: BLE001 - one datagram must never stop the proxy
            self.counts["bad"] += 1
            log.exception("error handling a datagram from %s:%d", *addr)

    # -- requests -----------------------------------------------------------------------------------

    def reply_address(self, via_value: str) -> tuple[tuple[str, int], str]:
        """Where responses for this Via go (RFC 3261 18.2.2 with RFC 3581 rport), and over which transport."""
        via = S.parse_via(via_value)
        host = via.params.get("received") or via.host
        rport = via.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
        return (host, port), via.transport

    def send_response(self, request: S.SipMessage, status: int, reason: str, addr: tuple[str, int],
                      transport: str = "UDP", extra: list[tuple[str, str]] | None = None) -> None:
        tag = hashlib.sha1(f"{self._secret}{request.call_id}".encode()).hexdigest()[:12]
        response = S.response_to(request, status, reason, tag if status > 100 else None, extra)
        if transport == "TCP":
            target = addr  # over TCP the answer goes back on the connection the request came in on
        else:
            try:
                target = self.reply_address(request.get("via") or "")[0]
            except S.SipError:
                target = addr  # an unreadable Via: answer where the datagram came from
        self.send(response, target, transport)

    def on_request(self, msg: S.SipMessage, addr: tuple[str, int], transport: str = "UDP",
                   waited: float = 0.0) -> None:
        top = S.parse_via(msg.get("via") or "")
        # Remember where it really came from, so responses find their way back (RFC 3261 18.2.1, RFC 3581).
        if top.host != addr[0] or transport == "TCP":
            top.params["received"] = addr[0]
        if "rport" in top.params or transport == "TCP":
            # Over TCP the answer must find the very connection the request came on: its peer address.
            top.params["rport"] = str(addr[1])
        msg.headers[msg.index("via")] = ("Via", S.format_via(top))
        key = f"{msg.call_id}|{top.branch}"
        known = self.decisions.get(key)
        if msg.method == "BYE":
            self.call_ended(msg.call_id)
        if msg.method in ("ACK", "CANCEL") and known is not None and known.action in ("refuse", "busy"):
            if msg.method == "CANCEL":
                self.send_response(msg, 200, "OK", addr, transport)
            return  # the ACK for our own 607/603 ends here
        max_forwards = msg.get("max-forwards")
        if max_forwards is not None:
            if not max_forwards.isdigit():
                raise S.SipError(f"bad Max-Forwards {max_forwards!r}", msg)
            if int(max_forwards) <= 0:
                if msg.method != "ACK":
                    self.send_response(msg, 483, "Too Many Hops", addr, transport)
                return
            msg.set("Max-Forwards", str(int(max_forwards) - 1))
        else:
            msg.set("Max-Forwards", "69")
        if msg.method == "INVITE" and self.screening and S.tag_of(msg.get("to") or "") is None:
            if known is None and waited > self.settings.overload_delay:
                known = self.shed(msg, key, waited)
            decision = known or self.decide(msg, key)
            if decision.action == "busy":
                self.send_response(msg, 503, "Service Unavailable", addr, transport,
                                   [("Retry-After", str(self.settings.retry_after))])
                return
            if decision.action == "refuse":
                code = self.settings.block_code
                self.send_response(msg, code, REASONS[code], addr, transport)
                return
            if decision.action == "label":
                for line in self.settings.suspect_headers:
                    name, _, value = line.partition(":")
                    msg.add(name.strip(), value.strip())
        self.forward(msg, addr, top, transport)

    def forward(self, msg: S.SipMessage, addr: tuple[str, int], top: S.Via, transport: str) -> None:
        if addr == self.next_hop:
            target = S.host_port_of(msg.uri or "")
            if target is None:
                self.send_response(msg, 416, "Unsupported URI Scheme", addr, transport)
                return
        else:
            target = self.next_hop
        cseq_number, _ = msg.cseq
        # Stateless branch (RFC 3261 16.11): the same for a retransmission, and for the CANCEL / non-2xx ACK
        # of an INVITE, because it depends only on what those share with it.
        digest = hashlib.md5(f"{top.branch}|{msg.call_id}|{cseq_number}|{self._secret}".encode()).hexdigest()
        msg.prepend("Via", f"SIP/2.0/{transport} {self.host}:{self.port};branch=z9hG4bK{digest[:20]}")
        self.send(msg, target, transport)

    def decide(self, msg: S.SipMessage, key: str) -> Decision:
        identity = msg.get("p-asserted-identity") or msg.get("from") or ""
        call = Call(caller=S.user_of(S.uri_of(identity)), callee=S.user_of(msg.uri or "")
                    or S.user_of(S.uri_of(msg.get("to") or "")), tenant=self.settings.tenant)
        verdict: Verdict | None = None
        self.counts["screened"] += 1
        if self.screener is not None:
            try:
                verdict = self.screener.screen(call)
            except Exception:  # noqa: BLE001 - fail open or closed per policy
                self.counts["screen_failed"] += 1
                log.exception("call screening failed for %s -> %s", call.caller, call.callee)
        else:
            self.counts["screen_failed"] += 1
        if verdict is None:
            verdict = self.unscreened_verdict()  # deliver (fail open) or block (fail closed), with the reason
        if verdict.action is Action.BLOCK:
            action = "refuse"
        elif verdict.action in self.settings.suspect_actions:
            action = "label"
        else:
            action = "forward"
        decision = Decision(action, verdict, time.monotonic())
        self.remember(key, decision)
        if action != "refuse":
            self.live[msg.call_id] = [call, None]
            while len(self.live) > 100_000:
                self.live.popitem(last=False)
        self.counts[action] += 1
        self.record(msg, call, decision)
        return decision

    def unscreened_verdict(self) -> Verdict:
        """The verdict on record for a call the screener could not judge: the policy's fail mode, and why."""
        mode = "fail_open = true: forwarded" if self.settings.fail_open else "fail_open = false: refused"
        signal = Signal(SCREENING_UNAVAILABLE, 1.0, {"why": f"call screening unavailable ({mode})"})
        if self.settings.fail_open:
            return Verdict(Action.DELIVER, Category.PERSONAL, None, 0.0, 0.0, [signal], "")
        return Verdict(Action.BLOCK, Category.FRAUD, None, 0.0, 0.0, [signal], "")

    def shed(self, msg: S.SipMessage, key: str, waited: float) -> Decision:
        """Overloaded: this new call waited ``waited`` s in the socket; it gets 503 and is not screened."""
        decision = Decision("busy", None, time.monotonic())
        self.remember(key, decision)  # its retransmissions get 503 too, and the ACK stops here
        self.counts["overload"] += 1
        if decision.at - self._overload_logged >= 10:
            self._overload_logged = decision.at
            log.warning("overloaded: new calls waited %.0f ms in the socket (limit %.0f ms); answering 503 "
                        "Retry-After %d (%d so far)", waited * 1000, self.settings.overload_delay * 1000,
                        self.settings.retry_after, self.counts["overload"])
        return decision

    def remember(self, key: str, decision: Decision) -> None:
        self.decisions[key] = decision
        horizon = decision.at - self.settings.decision_memory
        while self.decisions:
            oldest = next(iter(self.decisions.values()))
            if oldest.at >= horizon and len(self.decisions) <= 100_000:
                break
            self.decisions.popitem(last=False)

    def record(self, msg: S.SipMessage, call: Call, decision: Decision) -> None:
        v = decision.verdict
        if self.recorder is not None and v is not None:
            self.recorder.record([(call_message(call, msg.call_id), v)])
        level = logging.INFO if decision.action != "forward" else logging.DEBUG
        if log.isEnabledFor(level):
            reasons = (v.reasons()[:3] or [str(x.evidence.get("why", x.name)) for x in v.signals[:1]]) if v else []
            log.log(level, "call %s -> %s: %s (%s)", call.caller, call.callee, decision.action, "; ".join(reasons))
        if self._log_file is not None:
            entry: dict[str, Any] = {"time": call.start.isoformat(), "call_id": msg.call_id, "caller": call.caller,
                                     "callee": call.callee, "tenant": call.tenant, "decision": decision.action,
                                     "verdict": v.to_dict(top_signals=5) if v else None}
            self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def report_outcome(self, call: Call, duration: float, answered: bool) -> None:
        outcome = getattr(self.screener, "outcome", None)
        if outcome is None:
            return
        try:
            outcome(call, duration=duration, answered=answered)
        except Exception:  # noqa: BLE001 - learning from the outcome must not disturb the call
            log.exception("screener.outcome failed for %s", call.caller)

    def call_ended(self, call_id: str) -> None:
        entry = self.live.pop(call_id, None)
        if entry is not None and entry[1] is not None:
            self.report_outcome(entry[0], time.monotonic() - entry[1], True)

    # -- responses ----------------------------------------------------------------------------------

    def on_response(self, msg: S.SipMessage, addr: tuple[str, int]) -> None:
        vias = msg.get_all("via")
        top = S.parse_via(vias[0])
        if (top.host, top.port or 5060) != (self.host, self.port) or not top.branch.startswith("z9hG4bK"):
            log.info("dropped a response whose top Via is not this proxy: %s", vias[0][:80])
            return
        msg.remove_first("via")
        if msg.status is not None and msg.status >= 200 and msg.cseq[1] == "INVITE":
            entry = self.live.get(msg.call_id)
            if entry is not None and msg.status < 300:
                entry[1] = entry[1] or time.monotonic()
            elif entry is not None:
                del self.live[msg.call_id]
                self.report_outcome(entry[0], 0.0, False)
        if len(vias) < 2:
            return  # a response to a request the proxy itself sent: none are sent, so nothing to do
        self.send(msg, *self.reply_address(vias[1]))


_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$", re.IGNORECASE | re.MULTILINE)


class SipStream(asyncio.Protocol):
    """One TCP connection: SIP messages framed by the blank line and Content-Length (RFC 3261 18.3)."""

    def __init__(self, tcp: SipTcp, target: tuple[str, int] | None = None):
        self.tcp = tcp
        self.target = target
        self.peer: tuple[str, int] = target or ("", 0)
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.target is None:
            self.peer = tuple(transport.get_extra_info("peername")[:2])  # type: ignore[assignment]
        self.tcp.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tcp.closed(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            self.buf = self.buf.lstrip(b"\r\n")  # keep-alive CRLFs between messages
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > S.MAX_MESSAGE:
                    log.info("closing TCP connection from %s:%d: headers longer than %d octets", *self.peer,
                             S.MAX_MESSAGE)
                    self.transport.close()  # type: ignore[union-attr]
                return
            m = _CONTENT_LENGTH.search(self.buf, 0, end)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if total > S.MAX_MESSAGE:
                log.info("closing TCP connection from %s:%d: a message of %d octets", *self.peer, total)
                self.transport.close()  # type: ignore[union-attr]
                return
            if len(self.buf) < total:
                return
            message, self.buf = self.buf[:total], self.buf[total:]
            self.tcp.proxy.receive(message, self.peer, "TCP")  # TCP: no overload control (no socket timestamps)


class SipTcp:
    """SIP over TCP beside the UDP socket: accepted connections, and connections the proxy opens to forward."""

    def __init__(self, proxy: SipProxy):
        self.proxy = proxy
        self.conns: dict[tuple[str, int], SipStream] = {}
        self.waiting: dict[tuple[str, int], list[bytes]] = {}
        self.server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.get_running_loop().create_server(lambda: SipStream(self), host, port)

    def opened(self, stream: SipStream) -> None:
        self.conns[stream.peer] = stream
        for data in self.waiting.pop(stream.peer, []):
            stream.transport.write(data)  # type: ignore[union-attr]

    def closed(self, stream: SipStream) -> None:
        if self.conns.get(stream.peer) is stream:
            del self.conns[stream.peer]

    def send(self, addr: tuple[str, int], data: bytes) -> None:
        stream = self.conns.get(addr)
        if stream is not None and stream.transport is not None and not stream.transport.is_closing():
            stream.transport.write(data)
        elif addr in self.waiting:
            self.waiting[addr].append(data)
        else:
            self.waiting[addr] = [data]
            task = asyncio.get_running_loop().create_task(self.connect(addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def connect(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: SipStream(self, addr), *addr), 5)
        except (OSError, TimeoutError) as exc:
            dropped = self.waiting.pop(addr, [])
            log.warning("cannot open TCP to %s:%d (%s); %d messages dropped", *addr, exc or "timeout", len(dropped))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for stream in list(self.conns.values()):
            if stream.transport is not None:
                stream.transport.close()


async def start_proxy(policy: Policy, screener: CallScreener | None, listen: tuple[str, int],
                      next_hop: tuple[str, int], settings: SipSettings | None = None,
                      recorder: Recorder | None = None, screening: bool = True) -> SipProxy:
    """The proxy on UDP ``listen`` (and TCP on the same port when ``gateway.sip.tcp`` is on)."""
    # With port 0 the kernel picks a free UDP port, which another process may hold for TCP: pick again.
    attempts = 20 if listen[1] == 0 else 1
    for attempt in range(attempts):
        proxy = SipProxy(policy, screener, next_hop, settings, recorder, screening)
        proxy.open(listen)
        if not proxy.settings.tcp:
            break
        proxy.tcp = SipTcp(proxy)
        try:
            await proxy.tcp.start(proxy.host, proxy.port)
            break
        except OSError as exc:
            proxy.tcp = None
            proxy.close()
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
    log.info("SIP proxy on %s:%d (UDP%s), next hop %s:%d", proxy.host, proxy.port,
             " and TCP" if proxy.tcp else "", *next_hop)
    return proxy


def build_screener(policy: Policy) -> CallScreener | None:
    """The behaviour engine's call screener, or ``None`` (fail mode, with a log line) when it is not there."""
    try:
        from skyshield.behaviour.calls import CallScreener as Screener
    except ImportError as exc:
        log.error("call screening unavailable (%s): calls pass per gateway.sip.fail_open", exc)
        return None
    return Screener(policy)
