"""The SMPP firewall between a real SMPP client (smpplib, as the sender) and the SMSC simulator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
import time
from types import SimpleNamespace

import pytest
import smpplib.client
import smpplib.consts

from gateway_helpers import TENANTS, Gateway, KeywordEngine, RawSmpp, read_answers, send_text, wait_for
from skyshield.events import Action, Channel
from skyshield.gateway import smpp_pdu as P
from skyshield.gateway.smpp import Firewall
from skyshield.gateway.smsc_sim import SmscSimulator
from skyshield.policy import Policy


@pytest.fixture
def gateway(loop):
    made = []

    def make(policy_text: str = "", engine=None, scoring: bool = True) -> Gateway:
        gw = Gateway(loop, policy_text, engine, scoring)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


def test_message_through_the_firewall_arrives_at_the_smsc(gateway):
    gw = gateway()
    client = gw.client()
    send_text(client, "Your parcel arrives today between 10 and 12.")
    (answer,) = read_answers(client, 1)
    assert answer.status == 0
    assert wait_for(lambda: len(gw.smsc.received) == 1)
    got = gw.smsc.received[0]
    assert got.text == "Your parcel arrives today between 10 and 12."
    assert answer.message_id.decode() == got.message_id  # the SMSC's id reaches the sender
    judged = gw.engine.seen[0]
    assert (judged.sender, judged.recipient, judged.channel, judged.tenant) == ("10690001", "13800138000",
                                                                                 Channel.SMPP, "acme")


@pytest.mark.parametrize("engine_thread", ["true", "false"])
def test_fraud_text_is_refused_with_the_policy_status(gateway, engine_thread):
    gw = gateway(f"[gateway.smpp]\nblock_status = 0x0B\nengine_thread = {engine_thread}\n")
    client = gw.client()
    send_text(client, "Your bank card is frozen, verify your account at http://1.2.3.4/")
    send_text(client, "See you at 6")
    answers = read_answers(client, 2)
    assert sorted(a.status for a in answers) == [0, 0x0B]
    assert wait_for(lambda: len(gw.smsc.received) == 1)
    assert [r.text for r in gw.smsc.received] == ["See you at 6"]


def test_blocked_message_can_be_answered_as_accepted_without_delivery(gateway):
    gw = gateway('[gateway.smpp]\nblock_response = "fake_ok"\n')
    client = gw.client()
    send_text(client, "verify your account now")
    (answer,) = read_answers(client, 1)
    assert answer.status == 0 and answer.message_id
    send_text(client, "hello")  # the bind goes on; only the good one reaches the SMSC
    read_answers(client, 2)
    assert wait_for(lambda: len(gw.smsc.received) == 1)
    assert gw.smsc.received[0].text == "hello"


LONG_CHINESE = ("【平安银行】尊敬的客户，您的账户存在异常交易风险，已被临时冻结。"
                "为保障资金安全，请立即将余额转入安全账户，工作人员将在核实后为您解冻。"
                "逾期未处理将影响您的征信记录，并可能承担法律责任。如有疑问请勿挂断来电，"
                "按照客服指引操作即可完成验证。")


def test_long_chinese_message_is_judged_whole_and_every_part_blocked(gateway):
    gw = gateway()
    client = gw.client()
    parts = send_text(client, LONG_CHINESE)
    assert parts >= 2  # smpplib split it into UCS-2 parts with an 8-bit UDH reference
    answers = read_answers(client, parts)
    assert [a.status for a in answers] == [smpplib.consts.SMPP_ESME_RSUBMITFAIL] * parts
    assert [m.text for m in gw.engine.seen] == [LONG_CHINESE]  # judged once, whole
    assert gw.smsc.received == []


def test_long_chinese_message_delivered_keeps_its_parts(gateway):
    gw = gateway()
    client = gw.client()
    text = LONG_CHINESE.replace("安全账户", "原账户")
    parts = send_text(client, text)
    answers = read_answers(client, parts)
    assert all(a.status == 0 for a in answers)
    assert wait_for(lambda: len(gw.smsc.received) == parts)
    udh_parts = [r.sm.short_message for r in gw.smsc.received]
    assert all(p[:3] == b"\x05\x00\x03" for p in udh_parts)  # forwarded as sent, UDH intact
    joined = b"".join(sorted(udh_parts, key=lambda p: p[5]))
    assert b"".join(p[6:] for p in sorted(udh_parts, key=lambda p: p[5])).decode("utf-16-be") == text
    assert len(joined) > 0 and [m.text for m in gw.engine.seen] == [text]


def test_16bit_udh_parts_with_a_split_surrogate_pair_and_sar_parts_are_joined(gateway):
    gw = gateway()
    client = gw.client()
    data = "笑一个😀再见".encode("utf-16-be")  # the emoji is a surrogate pair: 4 octets
    cut = 8  # 笑一个 is octets 0-5, the emoji 6-9: the cut falls between its two halves
    first, second = data[:cut], data[cut:]
    for number, chunk in ((2, second), (1, first)):  # out of order on purpose
        udh = b"\x06\x08\x04" + struct.pack(">H", 0xBEEF) + bytes([2, number])
        client.send_message(source_addr="1069", destination_addr="139", short_message=udh + chunk, data_coding=8,
                            esm_class=0x40, registered_delivery=False)
    sar_text = "Meet me at the station at nine"
    for number, chunk in ((1, sar_text[:12]), (2, sar_text[12:])):
        client.send_message(source_addr="1069", destination_addr="139", short_message=chunk.encode(), data_coding=3,
                            sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=number,
                            registered_delivery=False)
    answers = read_answers(client, 4)
    assert all(a.status == 0 for a in answers)
    assert sorted(m.text for m in gw.engine.seen) == sorted(["笑一个😀再见", sar_text])


def test_gsm_7bit_default_and_extension_table_are_decoded(gateway):
    gw = gateway()
    client = gw.client()
    text = "Pay 5€ now {ok} [x] ~y^ \\z| @£$¥ èéùì ΔΦΓ"
    send_text(client, text)
    read_answers(client, 1)
    assert [m.text for m in gw.engine.seen] == [text]
    assert gw.smsc.received[0].sm.data_coding == 0


def test_malformed_pdus_get_generic_nack_and_no_bind_is_dropped(gateway):
    gw = gateway()
    good = gw.client()
    raw = RawSmpp(gw.port)
    raw.send(P.build(P.BIND_TRANSCEIVER, 0, 1, P.Bind("acme", "secret").encode()))
    assert raw.read()[:2] == (P.BIND_TRANSCEIVER | P.RESPONSE_BIT, 0)
    # A submit_sm whose body stops in the middle of its fields.
    raw.send(P.build(P.SUBMIT_SM, 0, 2, b"\0\x01\x01123"))
    assert raw.read()[:3] == (P.GENERIC_NACK, P.ESME_RINVCMDLEN, 2)
    # sm_length announces more octets than there are.
    body = P.ShortMessage(source_addr="1", destination_addr="2", short_message=b"hi").encode()
    raw.send(P.build(P.SUBMIT_SM, 0, 3, body.replace(b"\x02hi", b"\x50hi")))
    assert raw.read()[:3] == (P.GENERIC_NACK, P.ESME_RINVCMDLEN, 3)
    # An unknown command id.
    raw.send(P.build(0x00000777, 0, 4))
    assert raw.read()[:3] == (P.GENERIC_NACK, P.ESME_RINVCMDID, 4)
    # A UDH that claims more octets than the message has: refused by submit_sm_resp.
    bad_udh = P.ShortMessage(source_addr="1", destination_addr="2", esm_class=0x40, short_message=b"\x09\x00\x03")
    raw.send(P.build(P.SUBMIT_SM, 0, 5, bad_udh.encode()))
    assert raw.read()[:3] == (P.SUBMIT_SM_RESP, P.ESME_RINVESMCLASS, 5)
    # The same connection still works, pipelined: two PDUs in one write.
    ok = P.ShortMessage(source_addr="1", destination_addr="2", short_message=b"fine").encode()
    raw.send(P.build(P.ENQUIRE_LINK, 0, 6) + P.build(P.SUBMIT_SM, 0, 7, ok))
    assert raw.read()[:3] == (P.ENQUIRE_LINK_RESP, 0, 6)
    assert raw.read()[:3] == (P.SUBMIT_SM_RESP, 0, 7)
    # A command_length that cannot be a PDU: the stream cannot be resynchronised, so that bind alone closes.
    raw.send(struct.pack(">IIII", 8, P.SUBMIT_SM, 0, 8))
    assert raw.read()[:3] == (P.GENERIC_NACK, P.ESME_RINVCMDLEN, 8)
    assert raw.closed()
    send_text(good, "still here")
    assert read_answers(good, 1)[0].status == 0
    assert wait_for(lambda: [r.text for r in gw.smsc.received] == ["fine", "still here"])
    raw.close()


def test_partial_reads_are_reassembled(gateway):
    gw = gateway()
    raw = RawSmpp(gw.port)
    stream = P.build(P.BIND_TRANSMITTER, 0, 1, P.Bind("acme", "secret").encode())
    stream += P.build(P.SUBMIT_SM, 0, 2, P.ShortMessage(source_addr="1", destination_addr="2",
                                                         short_message=b"byte by byte").encode())
    for i in range(len(stream)):  # one octet per TCP segment
        raw.send(stream[i:i + 1])
    assert raw.read()[1] == 0
    assert raw.read()[:3] == (P.SUBMIT_SM_RESP, 0, 2)
    assert [r.text for r in gw.smsc.received] == ["byte by byte"]
    raw.close()


def test_throttling_answers_esme_rthrottled_beyond_the_rate(gateway):
    gw = gateway('[gateway.smpp]\nmax_rate = "5 / 1h"\n')
    client = gw.client()
    for i in range(8):
        send_text(client, f"message {i}")
    statuses = [a.status for a in read_answers(client, 8)]
    assert statuses.count(0) == 5
    assert statuses.count(smpplib.consts.SMPP_ESME_RTHROTTLED) == 3
    assert len(gw.smsc.received) == 5


def test_many_outstanding_requests_per_bind(gateway):
    gw = gateway()
    client = gw.client()
    for i in range(60):  # all sent before any answer is read
        send_text(client, f"windowed {i}")
    answers = read_answers(client, 60)
    assert all(a.status == 0 for a in answers)
    assert sorted(a.sequence for a in answers) == sorted(set(a.sequence for a in answers))
    assert wait_for(lambda: len(gw.smsc.received) == 60)


def test_enquire_link_is_answered_and_upstream_is_kept_alive(gateway):
    gw = gateway('[gateway.smpp]\nenquire_link_interval = "1s"\n')
    client = gw.client()
    client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
    resp = client.read_pdu()
    assert resp.command == "enquire_link_resp" and resp.status == 0
    assert wait_for(lambda: gw.smsc.enquire_links >= 1, timeout=3)
    # unbind: answered, and the firewall unbinds from the SMS centre too.
    assert len(gw.smsc.sessions) == 1
    resp = client.unbind()
    assert resp.command == "unbind_resp" and resp.status == 0
    assert wait_for(lambda: len(gw.smsc.sessions) == 0)


def test_wrong_password_is_refused(gateway):
    gw = gateway()
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        gw.client(password="wrong")
    assert err.value.args[1] == smpplib.consts.SMPP_ESME_RINVPASWD


def test_reply_and_receipt_are_relayed_to_the_receiver(gateway, loop):
    gw = gateway()
    sender = gw.client("transmitter")
    receiver = gw.client("receiver")
    send_text(sender, "Sale this week, reply TD to stop")
    read_answers(sender, 1)
    # The SMSC waits for each deliver_sm_resp, which the receiver sends as it reads.
    answered = [asyncio.run_coroutine_threadsafe(gw.smsc.deliver("acme", "13800138000", "10690001", "TD"), loop.loop),
                asyncio.run_coroutine_threadsafe(gw.smsc.receipt("acme", gw.smsc.received[0]), loop.loop)]
    while len(receiver.delivered) < 2:
        receiver.read_once()
    assert [f.result(5) for f in answered] == [0, 0]  # the receiver's deliver_sm_resp reached the SMSC
    reply, receipt = receiver.delivered
    assert reply.short_message == b"TD" and reply.source_addr == b"13800138000"
    assert receipt.esm_class == P.ESM_DELIVERY_RECEIPT
    # The reply (not the receipt) went to the opt-out hook.
    assert [(m.text, m.sender, m.channel) for m in gw.replies] == [("TD", "13800138000", Channel.REPLY)]


@pytest.mark.parametrize("fail_open, expected", [(True, 0), (False, 0x08)])
def test_engine_failure_fails_open_or_closed_per_policy(gateway, fail_open, expected, caplog):
    caplog.set_level(logging.CRITICAL, logger="skyshield.gateway.smpp")
    gw = gateway(f"[gateway.smpp]\nfail_open = {str(fail_open).lower()}\n", engine=KeywordEngine(fail=True))
    client = gw.client()
    send_text(client, "hello")
    assert read_answers(client, 1)[0].status == expected
    assert len(gw.smsc.received) == (1 if fail_open else 0)


def test_hold_and_tag_follow_the_verdict(gateway):
    engine = KeywordEngine({"review me": Action.HOLD, "promo": Action.TAG})
    gw = gateway("[gateway.smpp]\nhold_status = 0x61\nverdict_tlv = 0x1400\n", engine=engine)
    client = gw.client()
    send_text(client, "review me please")
    send_text(client, "promo of the week")
    statuses = sorted(a.status for a in read_answers(client, 2))
    assert statuses == [0, 0x61]
    assert wait_for(lambda: len(gw.smsc.received) == 1)
    assert gw.smsc.received[0].sm.tlvs[0x1400] == b"tag"


def test_pass_through_mode_never_calls_the_engine(gateway):
    gw = gateway(scoring=False)
    client = gw.client()
    send_text(client, "verify your account")
    assert read_answers(client, 1)[0].status == 0
    assert gw.engine.calls == 0


@contextlib.contextmanager
def opt_out_firewall(loop, tmp_path, bind: str):
    """A firewall whose replies go through the opt-out hook into a real consent ledger, and an smpplib client
    bound as ``bind`` ("receiver" or "transceiver") that collects what it is sent."""
    ledger_mod = pytest.importorskip("skyshield.compliance.ledger", reason="compliance ledger not installed")
    from skyshield.gateway.replies import OptOutReplies

    ledger = ledger_mod.ConsentLedger(tmp_path / "consent.db", b"k" * 32)
    policy = Policy.from_text(TENANTS)
    hook = OptOutReplies(ledger, policy)
    smsc = SmscSimulator()
    firewall = Firewall(policy, KeywordEngine(), loop.run(smsc.start()), on_reply=hook)
    port = loop.run(firewall.start("127.0.0.1", 0))[1]
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    got: list = []
    client.set_message_received_handler(lambda pdu: got.append(pdu))
    try:
        client.connect()
        getattr(client, f"bind_{bind}")(system_id="acme", password="secret")
        yield SimpleNamespace(ledger_mod=ledger_mod, ledger=ledger, hook=hook, smsc=smsc, client=client, got=got)
    finally:
        client.disconnect()
        loop.run(firewall.close())
        loop.run(smsc.close())
        hook.close()
        ledger.close()


def test_opt_out_reply_reaches_the_consent_ledger(loop, tmp_path):
    with opt_out_firewall(loop, tmp_path, "receiver") as f:
        done = [asyncio.run_coroutine_threadsafe(f.smsc.deliver("acme", "13800138000", "10690001", text), loop.loop)
                for text in ("退订", "when does the sale end?")]
        while len(f.got) < 2:
            f.client.read_once()
        assert [d.result(5) for d in done] == [0, 0]
        f.hook.close()  # waits for the filing thread
        record = f.ledger.state("acme", [f.ledger_mod.SENDER_SCOPE + "10690001"], "13800138000")
        assert record is not None and record.status == f.ledger_mod.OPT_OUT
        assert f.ledger.state("acme", [f.ledger_mod.SENDER_SCOPE + "10690001"], "13900000000") is None
        assert [p.short_message.decode("utf-16-be") for p in f.got[:1]] == ["退订"]  # relayed to the sender as well


def test_real_engine_refuses_fraud_and_the_store_keeps_why(loop, tmp_path, monkeypatch):
    pytest.importorskip("skyshield.text.classify", reason="text model not installed")
    monkeypatch.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path / 'sky.db'}")
    from skyshield.assembly import build_engine
    from skyshield.gateway.recording import open_recorder

    # The operator's policy makes a link to a bare IP address enough to block on its own.
    policy = Policy.from_text(TENANTS + "[signals]\nIP_LINK = 20.0\n")
    recorder = open_recorder(policy)
    assert recorder is not None
    try:
        engine = build_engine(policy)
    except Exception as exc:  # noqa: BLE001 - the text area's own tests report a broken model; here it is a skip
        recorder.close()
        pytest.skip(f"the engine cannot be built right now: {exc!r}")
    smsc = SmscSimulator()
    firewall = Firewall(policy, engine, loop.run(smsc.start()), recorder=recorder)
    port = loop.run(firewall.start("127.0.0.1", 0))[1]
    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.answers = []
    client.set_message_sent_handler(lambda pdu: client.answers.append(pdu))
    client.set_error_pdu_handler(lambda pdu: None)
    try:
        client.connect()
        client.bind_transmitter(system_id="acme", password="secret")
        send_text(client, "您的账户存在异常，请登录 http://103.21.8.7/verify 核实身份", source="10690001")
        (answer,) = read_answers(client, 1)
        assert answer.status == smpplib.consts.SMPP_ESME_RSUBMITFAIL
        assert smsc.received == []
    finally:
        client.disconnect()
        loop.run(firewall.close())
        loop.run(smsc.close())
    recorder.close()
    (stored,) = recorder.store.search(sender="10690001")
    assert stored.verdict.action is Action.BLOCK and stored.channel is Channel.SMPP and stored.tenant == "acme"
    assert any(s.name == "IP_LINK" for s in stored.verdict.signals)
    assert "103.21.8.7" in stored.text


def test_unknown_sender_and_unreachable_smsc_fail_the_bind(loop):
    import socket as _socket

    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here once closed
    firewall = Firewall(Policy.from_text(TENANTS + '[gateway.smpp]\nupstream_timeout = "2s"\n'), KeywordEngine(),
                        ("127.0.0.1", dead_port))
    port = loop.run(firewall.start("127.0.0.1", 0))[1]
    try:
        for system_id, expected in (("stranger", smpplib.consts.SMPP_ESME_RINVSYSID),
                                    ("acme", smpplib.consts.SMPP_ESME_RBINDFAIL)):
            client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
            client.connect()
            with pytest.raises(smpplib.exceptions.PDUError) as err:
                client.bind_transceiver(system_id=system_id, password="secret")
            assert err.value.args[1] == expected
            client.disconnect()
    finally:
        loop.run(firewall.close())


def test_random_garbage_bodies_never_break_the_firewall(gateway):
    """Every mangled PDU gets exactly one answer on its own bind; the firewall goes on for everyone."""
    import random

    gw = gateway('[gateway.smpp]\nreassembly_timeout = "1s"\n')  # mangled parts wait at most ~2 s for siblings
    rng = random.Random(11)
    raw = RawSmpp(gw.port)
    raw.send(P.build(P.BIND_TRANSCEIVER, 0, 1, P.Bind("acme", "secret").encode()))
    assert raw.read()[1] == 0
    good = P.ShortMessage(source_addr="1069", destination_addr="139", esm_class=0x40, data_coding=8,
                          short_message=b"\x05\x00\x03\x07\x02\x01" + "你好".encode("utf-16-be"),
                          tlvs={P.TLV_SAR_MSG_REF_NUM: b"\x00\x01"}).encode()
    sent = set()
    for seq in range(2, 302):
        body = bytearray(good)
        for _ in range(rng.randint(1, 6)):  # flip, cut or grow
            op = rng.random()
            if op < 0.5 and body:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif op < 0.8:
                del body[rng.randrange(len(body) + 1):]
            else:
                body += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        command = rng.choice([P.SUBMIT_SM, P.SUBMIT_SM, P.SUBMIT_SM, P.BIND_TRANSMITTER, P.ENQUIRE_LINK])
        raw.send(P.build(command, 0, seq, bytes(body)))
        sent.add(seq)
    answers: dict[int, int] = {}
    while set(answers) != sent:
        cmd, status, seq, _ = raw.read()
        assert seq not in answers, f"two answers to sequence {seq}"
        answers[seq] = cmd
    assert set(answers.values()) <= {P.SUBMIT_SM_RESP, P.GENERIC_NACK, P.BIND_TRANSMITTER | P.RESPONSE_BIT,
                                     P.ENQUIRE_LINK_RESP}
    client = gw.client()
    send_text(client, "still standing")
    assert read_answers(client, 1)[0].status == 0
    raw.close()


def test_data_sm_is_judged_like_submit_sm(gateway):
    gw = gateway()
    raw = RawSmpp(gw.port)
    raw.send(P.build(P.BIND_TRANSMITTER, 0, 1, P.Bind("acme", "secret").encode()))
    assert raw.read()[1] == 0
    for seq, text in ((2, "请立即将资金转入安全账户"), (3, "会议改到下午三点")):
        sm = P.ShortMessage(source_addr="1069", destination_addr="139", data_coding=8,
                            tlvs={P.TLV_MESSAGE_PAYLOAD: text.encode("utf-16-be")})
        raw.send(P.build(P.DATA_SM, 0, seq, P.encode_data_sm(sm)))
    answers = {seq: (cmd, status) for cmd, status, seq, _ in (raw.read(), raw.read())}
    assert answers == {2: (P.DATA_SM | P.RESPONSE_BIT, P.ESME_RSUBMITFAIL), 3: (P.DATA_SM | P.RESPONSE_BIT, 0)}
    assert [r.text for r in gw.smsc.received] == ["会议改到下午三点"]
    assert [m.text for m in gw.engine.seen] == ["请立即将资金转入安全账户", "会议改到下午三点"]
    raw.close()


def test_fake_ok_block_sends_a_delivered_receipt_when_the_sender_asked_for_one(gateway):
    gw = gateway('[gateway.smpp]\nblock_response = "fake_ok"\nfake_receipt_delay = "0s"\n')
    client = gw.client("transceiver")
    client.send_message(source_addr="10690001", destination_addr="13800138000", short_message=b"verify your account",
                        registered_delivery=True)
    client.send_message(source_addr="10690001", destination_addr="13800138000", short_message=b"verify your account",
                        registered_delivery=False)
    answers = read_answers(client, 2)
    assert [a.status for a in answers] == [0, 0]
    while not client.delivered:
        client.read_once()
    (receipt,) = client.delivered
    message_id = answers[0].message_id.decode()
    assert receipt.esm_class == P.ESM_DELIVERY_RECEIPT
    assert (receipt.source_addr, receipt.destination_addr) == (b"13800138000", b"10690001")
    assert receipt.receipted_message_id.rstrip(b"\0").decode() == message_id
    body = receipt.short_message.decode()
    assert body.startswith(f"id:{message_id} sub:001 dlvrd:001 submit date:")
    assert " stat:DELIVRD err:000 text:verify your account" in body
    assert gw.smsc.received == []  # nothing was delivered
    client.send_message(source_addr="10690001", destination_addr="13800138000", short_message=b"hi")
    read_answers(client, 3)
    assert len(client.delivered) == 1  # only the message that asked for a receipt got one


def test_fake_ok_receipt_goes_to_the_tenants_receiver_bind(gateway):
    gw = gateway('[gateway.smpp]\nblock_response = "fake_ok"\nfake_receipt_delay = "0s"\n')
    sender = gw.client("transmitter")
    receiver = gw.client("receiver")
    sender.send_message(source_addr="10690001", destination_addr="13800138000", short_message=b"verify your account",
                        registered_delivery=True)
    (answer,) = read_answers(sender, 1)
    while not receiver.delivered:
        receiver.read_once()
    assert receiver.delivered[0].receipted_message_id.rstrip(b"\0") == answer.message_id


def test_opt_out_reply_gets_one_confirmation_sent_upstream(loop, tmp_path):
    with opt_out_firewall(loop, tmp_path, "transceiver") as f:
        for n, text in enumerate(("退订", "退订", "when does the sale end?"), 1):  # the 2nd is already on record
            fut = asyncio.run_coroutine_threadsafe(f.smsc.deliver("acme", "13800138000", "10690001", text),
                                                   loop.loop)
            while len(f.got) < n:
                f.client.read_once()
            assert fut.result(5) == 0
        assert wait_for(lambda: len(f.smsc.received) >= 1)
        time.sleep(0.3)  # a second confirmation would have arrived by now
        (confirmation,) = f.smsc.received
        assert (confirmation.sm.source_addr, confirmation.sm.destination_addr) == ("10690001", "13800138000")
        assert confirmation.text == "您已成功退订，将不再收到我们的营销短信。"  # confirm_zh; no signature on record


class SlowEngine(KeywordEngine):
    def check(self, messages):
        time.sleep(0.8)  # the batch is still being judged when the firewall is told to stop
        return super().check(messages)


def test_a_firewall_stopping_mid_batch_answers_and_delivers_what_it_had_read(gateway):
    gw = gateway(engine=SlowEngine())
    client = gw.client("transmitter")
    send_text(client, "See you at six")
    send_text(client, "请立即将资金转入安全账户")
    assert wait_for(lambda: gw.engine.calls == 1, timeout=2)  # judging
    stopping = threading.Thread(target=gw.loop.run, args=(gw.firewall.close(),))
    stopping.start()
    try:
        # Both answered before the bind closed (a sender with no answer sends again: the message twice).
        assert sorted(a.status for a in read_answers(client, 2)) == [0, smpplib.consts.SMPP_ESME_RSUBMITFAIL]
    finally:
        stopping.join(15)
    assert [r.text for r in gw.smsc.received] == ["See you at six"]
    gw.firewall, gw.port = gw.start_firewall()  # for the fixture's close
