"""The SIP call-screening proxy: parser, raw UDP peers, and sipp as caller and callee."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import time

import pytest

from gateway_helpers import LoopThread, make_verdict, wait_for
from skyshield.events import Action, Call
from skyshield.gateway import sip_message as S
from skyshield.gateway.sip import start_proxy
from skyshield.policy import Policy

BLOCKED = "+8617000000000"
SUSPECT = "+8617100000000"


class ListScreener:
    def __init__(self, fail: bool = False):
        self.calls: list[Call] = []
        self.outcomes: list[tuple[str, bool]] = []
        self.fail = fail

    def outcome(self, call: Call, duration: float, answered: bool) -> None:
        self.outcomes.append((call.caller, answered))

    def screen(self, call: Call):
        self.calls.append(call)
        if self.fail:
            raise RuntimeError("behaviour engine down")
        action = {BLOCKED: Action.BLOCK, SUSPECT: Action.FOLD}.get(call.caller, Action.DELIVER)
        return make_verdict(action, matched="listed" if action is not Action.DELIVER else "")


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    return sock


def free_udp_port() -> int:
    """A loopback port free for UDP *and* TCP: sipp with ``-t t1`` binds both, and a port the kernel handed out
    for UDP can be in use by a TCP socket of another test or process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


def invite(caller: str, port: int, branch: str = "z9hG4bK-test-1", call_id: str = "call-1@test",
           max_forwards: int = 70, to_tag: str = "") -> bytes:
    return (f"INVITE sip:10086@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
            f"From: \"Caller\" <sip:{caller}@127.0.0.1:{port}>;tag=abc\r\n"
            f"To: <sip:10086@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{caller}@127.0.0.1:{port}>\r\n"
            f"Max-Forwards: {max_forwards}\r\nContent-Length: 0\r\n\r\n").encode()


@pytest.fixture
def proxy():
    loop = LoopThread()
    made = []

    def make(screener=None, policy_text: str = "", next_hop: tuple[str, int] | None = None):
        screener = screener if screener is not None else ListScreener()
        hop = next_hop or ("127.0.0.1", free_udp_port())
        p = loop.run(start_proxy(Policy.from_text(policy_text), screener, ("127.0.0.1", 0), hop))
        made.append(p)
        return p

    make.loop = loop
    yield make
    for p in made:
        loop.call(p.close)
    loop.stop()


def test_parser_reads_compact_headers_comma_vias_and_folding():
    raw = (b"INVITE sip:+8613800138000@example.com;user=phone SIP/2.0\r\n"
           b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n"
           b"f: \"Doe, J\" <sip:+8613900000000@example.com>;tag=1\r\nt: <tel:+8613800138000>\r\n"
           b"i: abc@host\r\nCSeq: 7 INVITE\r\nSubject: a long\r\n  folded subject\r\nl: 4\r\n\r\nbodyEXTRA")
    msg = S.parse(raw)
    assert [S.parse_via(v).host for v in msg.get_all("via")] == ["10.0.0.1", "10.0.0.2"]
    assert S.user_of(S.uri_of(msg.get("from"))) == "+8613900000000"
    assert S.user_of(S.uri_of(msg.get("to"))) == "+8613800138000"
    assert msg.get("subject") == "a long folded subject"
    assert msg.body == b"body" and msg.cseq == (7, "INVITE")
    again = S.parse(msg.encode())
    assert again.get_all("via") == msg.get_all("via") and again.body == b"body"


@pytest.mark.parametrize("raw, why", [
    (b"HELLO\r\n\r\n", "start line"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
     b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\nContent-Length: 99\r\n\r\nshort", "Content-Length"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n", "call-id"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: one INVITE\r\n"
     b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\n\r\n", "CSeq"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_parser_rejects_malformed_messages_with_a_reason(raw, why):
    with pytest.raises(S.SipError, match=why):
        S.parse(raw)


def test_suspected_call_is_forwarded_labelled_and_the_answer_comes_back(proxy):
    hop = udp_socket()
    p = proxy(next_hop=hop.getsockname())
    caller = udp_socket()
    caller.sendto(invite(SUSPECT, caller.getsockname()[1]), (p.host, p.port))
    data, proxy_addr = hop.recvfrom(65535)
    forwarded = S.parse(data)
    vias = forwarded.get_all("via")
    assert S.parse_via(vias[0]).port == p.port and len(vias) == 2
    assert forwarded.get("max-forwards") == "69"
    assert forwarded.get("warning") == '399 skyshield "suspected spam"'
    # The callee answers 180 and 200 to the proxy; both reach the caller with the proxy's Via removed.
    for status, reason in ((180, "Ringing"), (200, "OK")):
        answer = S.response_to(forwarded, status, reason, to_tag="callee")
        hop.sendto(answer.encode(), proxy_addr)
        back = S.parse(caller.recvfrom(65535)[0])
        assert back.status == status and len(back.get_all("via")) == 1
        assert S.parse_via(back.get("via")).branch == "z9hG4bK-test-1"
    # The caller hangs up: the screener learns the call was answered.
    bye = invite(SUSPECT, caller.getsockname()[1], branch="z9hG4bK-bye", to_tag="callee")
    caller.sendto(bye.replace(b"INVITE sip", b"BYE sip").replace(b"1 INVITE", b"2 BYE"), (p.host, p.port))
    assert S.parse(hop.recvfrom(65535)[0]).method == "BYE"
    assert p.screener.outcomes == [(SUSPECT, True)]


def test_blocked_call_gets_607_once_screened_and_its_ack_stops_at_the_proxy(proxy):
    hop = udp_socket()
    screener = ListScreener()
    p = proxy(screener, next_hop=hop.getsockname())
    caller = udp_socket()
    for _ in range(2):  # the second is a retransmission
        caller.sendto(invite(BLOCKED, caller.getsockname()[1]), (p.host, p.port))
        answer = S.parse(caller.recvfrom(65535)[0])
        assert (answer.status, answer.reason) == (607, "Unwanted")
        assert S.tag_of(answer.get("to")) is not None
    assert [c.caller for c in screener.calls] == [BLOCKED]
    ack = invite(BLOCKED, caller.getsockname()[1]).replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    caller.sendto(ack, (p.host, p.port))
    hop.settimeout(0.3)
    with pytest.raises(TimeoutError):
        hop.recvfrom(65535)  # neither the INVITE nor its ACK went to the next hop
    assert p.counts["refuse"] == 1


def test_603_decline_when_the_policy_says_so(proxy):
    p = proxy(policy_text="[gateway.sip]\nblock_code = 603\n")
    caller = udp_socket()
    caller.sendto(invite(BLOCKED, caller.getsockname()[1]), (p.host, p.port))
    assert S.parse(caller.recvfrom(65535)[0]).status == 603


def test_malformed_requests_get_400_or_are_dropped_and_the_proxy_goes_on(proxy):
    hop = udp_socket()
    p = proxy(next_hop=hop.getsockname())
    caller = udp_socket()
    port = caller.getsockname()[1]
    bad_cseq = invite("+8613800000000", port).replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    caller.sendto(bad_cseq, (p.host, p.port))
    answer = caller.recvfrom(65535)[0]  # it echoes the bad CSeq, so it is read as text here
    assert answer.startswith(b"SIP/2.0 400 Bad Request") and b"CSeq" in answer.split(b"\r\n")[0]
    caller.sendto(b"\x00\x01 not sip at all", (p.host, p.port))  # nothing to answer: dropped with a log line
    # Answers that cannot be sent (a Via port out of range, a host name) are dropped; the socket stays open.
    for via in (b"127.0.0.1:99999", b"sip.example.com:5060"):
        caller.sendto(bad_cseq.replace(f"127.0.0.1:{port}".encode(), via, 1), (p.host, p.port))
    caller.sendto(invite("+8613800000000", port, max_forwards=0), (p.host, p.port))
    assert S.parse(caller.recvfrom(65535)[0]).status == 483
    caller.sendto(invite("+8613800000000", port, call_id="fine@test"), (p.host, p.port))
    assert S.parse(hop.recvfrom(65535)[0]).call_id == "fine@test"
    assert p.counts["bad"] == 4


@pytest.mark.parametrize("fail_open, expected", [(True, "forwarded"), (False, 607)])
def test_screening_failure_fails_open_or_closed(proxy, fail_open, expected, caplog):
    caplog.set_level("CRITICAL", logger="skyshield.gateway.sip")
    hop = udp_socket()
    p = proxy(ListScreener(fail=True), f"[gateway.sip]\nfail_open = {str(fail_open).lower()}\n", hop.getsockname())
    caller = udp_socket()
    caller.sendto(invite("+8613800000000", caller.getsockname()[1]), (p.host, p.port))
    if expected == "forwarded":
        assert S.parse(hop.recvfrom(65535)[0]).method == "INVITE"
    else:
        assert S.parse(caller.recvfrom(65535)[0]).status == expected


def test_every_decision_is_written_to_the_decision_log(proxy, tmp_path):
    log_path = tmp_path / "calls.jsonl"
    p = proxy(policy_text=f"[gateway.sip]\ndecision_log = '{log_path}'\n")
    caller = udp_socket()
    caller.sendto(invite(BLOCKED, caller.getsockname()[1]), (p.host, p.port))
    caller.recvfrom(65535)
    caller.sendto(invite("+8613800000000", caller.getsockname()[1], call_id="ok@test"), (p.host, p.port))
    assert wait_for(lambda: p.counts["forward"] == 1)
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(e["caller"], e["decision"]) for e in entries] == [(BLOCKED, "refuse"), ("+8613800000000", "forward")]
    assert entries[0]["verdict"]["action"] == "block"


# -- with sipp as caller and callee ---------------------------------------------------------------------

SIPP = shutil.which("sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp not installed (Debian package sip-tester)")

BLOCKED_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a call from a blocked number is refused with 607">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{BLOCKED}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:{BLOCKED}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="607"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:{BLOCKED}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
</scenario>
"""


def sipp(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([SIPP, *args, "-i", "127.0.0.1", "-nostdin", "-timeout", "15", "-timeout_error"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@needs_sipp
def test_sipp_call_through_the_proxy_completes(proxy, tmp_path):
    uas_port = free_udp_port()
    screener = ListScreener()
    p = proxy(screener, next_hop=("127.0.0.1", uas_port))
    uas = sipp("-sn", "uas", "-p", str(uas_port), "-m", "1", cwd=tmp_path)
    try:
        uac = sipp("-sn", "uac", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "1", "-s", "10086",
                   cwd=tmp_path)
        assert uac.wait(30) == 0, uac.stderr.read().decode()[-500:]
        assert uas.wait(30) == 0, uas.stderr.read().decode()[-500:]
    finally:
        for proc in (uas,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [(c.caller, c.callee) for c in screener.calls] == [("sipp", "10086")]
    assert p.counts["forward"] == 1


@needs_sipp
def test_sipp_call_from_a_blocked_number_gets_607(proxy, tmp_path):
    hop = udp_socket()
    p = proxy(next_hop=hop.getsockname())
    (tmp_path / "blocked.xml").write_text(BLOCKED_SCENARIO)
    uac = sipp("-sf", "blocked.xml", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "1", "-s", "10086",
               cwd=tmp_path)
    assert uac.wait(30) == 0, uac.stderr.read().decode()[-500:]
    assert p.counts["refuse"] == 1
    hop.settimeout(0.3)
    with pytest.raises(TimeoutError):
        hop.recvfrom(65535)  # the callee never heard of it


@needs_sipp
def test_sipp_calls_screened_by_the_behaviour_engine(proxy, tmp_path, monkeypatch):
    calls_mod = pytest.importorskip("skyshield.behaviour.calls", reason="behaviour call screener not installed")
    monkeypatch.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path / 'sky.db'}")
    screener = calls_mod.CallScreener(Policy.load())
    screener.service.block(BLOCKED, "operator block in a test", time.time())
    uas_port = free_udp_port()
    p = proxy(screener, next_hop=("127.0.0.1", uas_port))
    (tmp_path / "blocked.xml").write_text(BLOCKED_SCENARIO)
    blocked = sipp("-sf", "blocked.xml", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "1", "-s", "10086",
                   cwd=tmp_path)
    assert blocked.wait(30) == 0, blocked.stderr.read().decode()[-500:]
    uas = sipp("-sn", "uas", "-p", str(uas_port), "-m", "1", cwd=tmp_path)
    try:
        uac = sipp("-sn", "uac", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "1", "-s", "10086",
                   cwd=tmp_path)
        assert uac.wait(30) == 0, uac.stderr.read().decode()[-500:]
        assert uas.wait(30) == 0
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
    # The blocked number was refused; the other call went through (labelled or not, as the engine judged it).
    assert p.counts["refuse"] == 1 and p.counts["forward"] + p.counts["label"] == 1


def test_mangled_datagrams_never_stop_the_proxy(proxy, caplog):
    import random

    caplog.set_level("ERROR", logger="skyshield.gateway.sip")
    hop = udp_socket()
    p = proxy(next_hop=hop.getsockname())
    caller = udp_socket()
    rng = random.Random(5)
    good = invite("+8613800000000", caller.getsockname()[1])
    for i in range(300):
        data = bytearray(good.replace(b"call-1@test", f"fuzz-{i}@test".encode()))
        for _ in range(rng.randint(1, 5)):
            op = rng.random()
            if not data:
                break
            if op < 0.5:
                data[rng.randrange(len(data))] = rng.choice(b"\r\n:;<>@, \x00\xff" + bytes([rng.randrange(256)]))
            elif op < 0.8:
                del data[rng.randrange(len(data)):]
            else:
                pos = rng.randrange(len(data))
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        caller.sendto(bytes(data), (p.host, p.port))
        time.sleep(0.001)  # a burst would overflow the socket buffer: the kernel, not the proxy, would drop them
    assert wait_for(lambda: p.counts["bad"] + p.counts["screened"] >= 200)
    caller.sendto(invite("+8613800000000", caller.getsockname()[1], call_id="after-fuzz@test"), (p.host, p.port))
    hop.settimeout(5)
    while True:  # some mangled INVITEs were still valid and were forwarded; the last one must be too
        try:
            if S.parse(hop.recvfrom(65535)[0]).call_id == "after-fuzz@test":
                break
        except S.SipError:
            continue
    assert p.counts["bad"] > 0
    unexpected = [r for r in caplog.records if r.levelname == "ERROR"]
    assert not unexpected, unexpected[0].getMessage()  # every bad datagram was a SipError, none a crash


def test_tcp_messages_are_framed_by_content_length_and_answered_on_their_connection(proxy):
    hop = socket.socket()
    hop.bind(("127.0.0.1", 0))
    hop.listen(1)
    hop.settimeout(5)
    p = proxy(next_hop=hop.getsockname())
    caller = socket.create_connection((p.host, p.port), timeout=5)
    port = caller.getsockname()[1]
    blocked = invite(BLOCKED, port, call_id="tcp-1@test").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    allowed = invite("+8613800000000", port, call_id="tcp-2@test").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    body = b"v=0\r\n"
    allowed = allowed.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()) + body
    stream = blocked + b"\r\n" + allowed  # two messages (and a keep-alive CRLF) in one stream ...
    caller.sendall(stream[:50])  # ... cut at odd places
    time.sleep(0.05)
    caller.sendall(stream[50:len(blocked) + 7])
    time.sleep(0.05)
    caller.sendall(stream[len(blocked) + 7:])
    assert caller.recv(65535).startswith(b"SIP/2.0 607 Unwanted")  # on the caller's own connection
    conn, _ = hop.accept()  # the proxy opened a TCP connection to the next hop for the allowed call
    conn.settimeout(5)
    data = b""
    while not data.endswith(body):
        data += conn.recv(65535)
    forwarded = S.parse(data)
    assert forwarded.call_id == "tcp-2@test" and forwarded.body == body
    assert S.parse_via(forwarded.get("via")).transport == "TCP"
    conn.sendall(S.response_to(forwarded, 200, "OK", to_tag="x").encode())
    answer = S.parse(caller.recv(65535))
    assert answer.status == 200 and len(answer.get_all("via")) == 1
    for s in (caller, conn, hop):
        s.close()


@needs_sipp
def test_sipp_call_over_tcp_completes(proxy, tmp_path):
    uas_port = free_udp_port()
    p = proxy(next_hop=("127.0.0.1", uas_port))
    uas = sipp("-sn", "uas", "-t", "t1", "-p", str(uas_port), "-m", "2", cwd=tmp_path)
    try:
        time.sleep(0.3)
        uac = sipp("-sn", "uac", "-t", "t1", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "2", "-s",
                   "10086", cwd=tmp_path)
        assert uac.wait(30) == 0, uac.stderr.read().decode()[-500:]
        assert uas.wait(30) == 0
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
    assert p.counts["forward"] == 2


# -- every decision in the store; overload ---------------------------------------------------------------


def test_a_screening_failure_is_recorded_with_its_reason(caplog, tmp_path):
    from skyshield.gateway.recording import Recorder
    from skyshield.store.sqlite import SQLiteStore

    caplog.set_level("CRITICAL", logger="skyshield.gateway.sip")
    store = SQLiteStore(tmp_path / "calls.db", b"k" * 32)
    recorder = Recorder(store)
    loop = LoopThread()
    try:
        p = loop.run(start_proxy(Policy.from_text("[gateway.sip]\nfail_open = false\n"), ListScreener(fail=True),
                                 ("127.0.0.1", 0), ("127.0.0.1", free_udp_port()), recorder=recorder))
        caller = udp_socket()
        caller.sendto(invite("+8613800000000", caller.getsockname()[1], call_id="down@test"), (p.host, p.port))
        assert S.parse(caller.recvfrom(65535)[0]).status == 607
        loop.call(p.close)
    finally:
        loop.stop()
    recorder.close()
    [stored] = store.search(sender="+8613800000000", channel="call")
    assert stored.external_id == "down@test" and stored.verdict.action is Action.BLOCK
    assert [s.name for s in stored.verdict.signals] == ["SCREENING_UNAVAILABLE"]
    assert "fail_open = false" in stored.verdict.signals[0].evidence["why"]


def test_an_invite_that_waited_too_long_gets_503_and_calls_in_progress_go_on(proxy):
    hop = udp_socket()
    screener = ListScreener()
    p = proxy(screener, "[gateway.sip]\noverload_delay_ms = 50\nretry_after = 7\n", hop.getsockname())
    caller = udp_socket()
    port = caller.getsockname()[1]
    addr = caller.getsockname()
    late = invite("+8613800000000", port, call_id="late@test")
    # What the socket reader does with a datagram the kernel stamped 200 ms ago (a real overload is not
    # reproducible on a shared test machine; the timestamps themselves are read by every other test here).
    proxy.loop.call(lambda: p.receive(late, addr, "UDP", 0.2))
    answer = S.parse(caller.recvfrom(65535)[0])
    assert (answer.status, answer.get("retry-after")) == (503, "7")
    assert screener.calls == [] and p.counts["overload"] == 1  # not screened, so nothing to record
    ack = late.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    caller.sendto(ack, (p.host, p.port))
    # A BYE of a call in progress and a fresh INVITE that did not wait still go through.
    bye = invite("+8613900000000", port, branch="z9hG4bK-bye", call_id="old@test", to_tag="callee")
    caller.sendto(bye.replace(b"INVITE sip", b"BYE sip").replace(b"1 INVITE", b"2 BYE"), (p.host, p.port))
    caller.sendto(invite("+8613800000001", port, call_id="fresh@test"), (p.host, p.port))
    got = [S.parse(hop.recvfrom(65535)[0]) for _ in range(2)]
    assert [(m.method, m.call_id) for m in got] == [("BYE", "old@test"), ("INVITE", "fresh@test")]  # no ACK



@needs_sipp
def test_sipp_call_from_a_blocked_number_gets_607_and_the_operator_finds_it_as_a_call(engine, tmp_path, monkeypatch):
    """The issue's acceptance test: sipp calls from a number the behaviour engine blocks; the caller gets 607, and
    the decision is in the store, read back the way an operator reads verdicts (HTTP API and ``skyshield why``)."""
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.behaviour.calls import CallScreener
    from skyshield.cli import main as skyshield
    from skyshield.config import load_settings
    from skyshield.gateway.recording import open_recorder

    db = f"sqlite:///{tmp_path / 'sky.db'}"
    monkeypatch.setenv("SKYSHIELD_DB", db)
    monkeypatch.delenv("SKYSHIELD_KEY_FILE", raising=False)
    policy = Policy.load()
    screener = CallScreener(policy)
    screener.service.block(BLOCKED, "operator block in a test", time.time())
    recorder = open_recorder(policy, linger=0.05)
    assert recorder is not None
    loop = LoopThread()
    try:
        p = loop.run(start_proxy(policy, screener, ("127.0.0.1", 0), ("127.0.0.1", free_udp_port()),
                                 recorder=recorder))
        (tmp_path / "blocked.xml").write_text(BLOCKED_SCENARIO)
        uac = sipp("-sf", "blocked.xml", f"{p.host}:{p.port}", "-p", str(free_udp_port()), "-m", "1", "-s",
                   "10086", cwd=tmp_path)
        assert uac.wait(30) == 0, uac.stderr.read().decode()[-500:]  # the scenario requires the 607
        loop.call(p.close)
    finally:
        loop.stop()
    recorder.close()  # what a stop of `skyshield sip` does: everything queued is written
    assert recorder.saved == 1

    app = create_app(None, load_settings(db), engine=engine)
    with TestClient(app) as client:
        listed = client.get("/v1/verdicts", params={"sender": BLOCKED, "channel": "call"}).json()["verdicts"]
        assert [(v["channel"], v["action"]) for v in listed] == [("call", "block")]
        one = client.get(f"/v1/verdicts/{listed[0]['id']}").json()
    assert one["message"]["channel"] == "call" and one["message"]["text"] == ""
    assert one["message"]["sender"].startswith("h:")  # the caller, pseudonymised like a message sender
    assert any("BLOCKED_NUMBER" in r for r in one["reasons"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert skyshield(["why", str(one["id"]), "--db", db]) == 0
    text = out.getvalue()
    assert "channel: call" in text and f"caller:    {one['message']['sender']}" in text
    assert "BLOCKED_NUMBER" in text and "text:" not in text


def test_call_verdicts_read_as_calls_in_disposal_and_the_regulator_report(tmp_path):
    """A recorded call is not clustered into a text campaign or queued for text review, a report quoting its
    Call-ID finds it, and the regulator report counts it in its own row rather than as an unsigned message."""
    from datetime import timedelta

    from skyshield.disposal import regulator
    from skyshield.disposal.service import Disposal
    from skyshield.events import Category, Message, utcnow
    from skyshield.gateway.recording import call_message
    from skyshield.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "d.db", b"k" * 32)
    held_call = make_verdict(Action.HOLD, matched="listed")
    store.save([(call_message(Call("+8617000000001", "+8613800000000"), "sip-1@test"), held_call),
                (Message("【某宝】双11全场5折，回T退订", "10690001", "+8613800000000"),
                 make_verdict(Action.HOLD, Category.PROMOTION, "5折"))])
    disposal = Disposal(store, b"k" * 32, Policy.load())
    disposal.refresh()
    queued = disposal.db.rows("SELECT verdict_id FROM disposal_review")
    assert [r["verdict_id"] for r in queued] == [2]  # the held message, not the held call
    assert not disposal.db.rows("SELECT 1 FROM disposal_campaign_messages WHERE verdict_id = 1")
    report = disposal.reports.submit(reporter="+8613800000000", sender="+8617000000001", text="骚扰电话 nuisance call",
                                     message_id="sip-1@test")
    assert report["verdict_id"] == 1
    now = utcnow()
    rows = {r.signature: r for r in regulator.build(disposal.db, "default", now - timedelta(hours=1),
                                                    now + timedelta(hours=1)).rows}
    assert (rows[regulator.CALLS].messages, rows[regulator.CALLS].complaints) == (1, 1)
    assert rows["某宝"].messages == 1 and regulator.NO_SIGNATURE not in rows
    disposal.close()
    store.close()
