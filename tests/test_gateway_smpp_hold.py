"""The SMPP firewall's hold queue: a held message is kept, answered "accepted", and goes out only when a reviewer
labels it wanted; an unwanted label (or hold_expiry) rejects it with a REJECTD receipt.

Real smpplib senders, the real firewall, the SMSC simulator, and the review queue (``Disposal``) on the same
SQLite database (the claim logic also on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import smpplib.client
import smpplib.consts

from gateway_helpers import TENANTS, Gateway, KeywordEngine, read_answers, send_text, wait_for
from service_helpers import postgres_schema
from skyshield.config import load_settings
from skyshield.disposal.held import HeldMessages, describe
from skyshield.disposal.service import Disposal
from skyshield.events import Action, Channel, Message
from skyshield.gateway import smpp_pdu as P
from skyshield.gateway.smpp import Firewall
from skyshield.policy import Policy, PolicyError
from skyshield.store import open_store
from store_helpers import sample_verdict

#: The phrase the test engine holds for review, like a policy whose hold threshold a signal reaches.
HOLD_PHRASE = "请核对收件信息"
NOTICE = ("【顺丰速运】您好，您的包裹因收件地址不完整暂存于深圳南山科技园网点。" + HOLD_PHRASE +
          "，可回复正确地址或致电95338，我们将在今天下午六点前重新安排派送，感谢您的耐心等待与配合。")


class RecordingClient(smpplib.client.Client):
    """smpplib's client, keeping the bytes of every submit_sm it sends (to compare with what the SMSC gets)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.submitted: list[bytes] = []

    def send_pdu(self, p):
        if p.command == "submit_sm":
            self.submitted.append(p.generate())
        return super().send_pdu(p)


class HoldDesk:
    """A firewall with a hold queue, and the review queue a person labels with, on one database."""

    def __init__(self, loop, settings, policy_text: str = ""):
        self.settings = settings
        self.held = HeldMessages(open_store(settings))
        self.disposal = Disposal(open_store(settings), settings.hmac_key(), Policy.from_text(TENANTS))
        engine = KeywordEngine({HOLD_PHRASE: Action.HOLD, "verify your account": Action.BLOCK})
        self.gw = Gateway(loop, policy_text, engine, held=self.held)

    def label(self, label: str) -> dict:
        """A reviewer labels the (only) held message's review item, as the console and API do."""
        self.disposal.refresh()
        (item,) = [i for i in self.disposal.review.open_items() if i["source"] == "hold"]
        return self.disposal.review.label(item["id"], label, reviewer="alice")

    def held_row(self) -> dict:
        (verdict,) = self.disposal.db.store.search(action="hold")
        return self.held.for_verdict(verdict.id)

    def close(self) -> None:
        self.gw.close()
        self.held.close()
        self.held.store.close()
        self.disposal.close()
        self.disposal.db.store.close()


@pytest.fixture
def settings(tmp_path):
    return load_settings(f"sqlite:///{tmp_path / 'sky.db'}")


@pytest.fixture
def desk(loop, settings):
    made = []

    def make(policy_text: str = "") -> HoldDesk:
        made.append(HoldDesk(loop, settings, policy_text))
        return made[-1]

    yield make
    for d in made:
        d.close()


def read_delivered(client, count: int) -> list:
    while len(client.delivered) < count:
        client.read_once()
    return client.delivered


def test_held_message_waits_for_review_then_arrives_once_unchanged(desk):
    d = desk()
    client = d.gw.client("transmitter", client_class=RecordingClient)
    parts = send_text(client, NOTICE)
    assert parts >= 2
    answers = read_answers(client, parts)
    assert [a.status for a in answers] == [0] * parts  # "accepted", as the SMS centre would say it
    ids = [a.message_id.decode() for a in answers]
    assert all(ids) and len(set(ids)) == parts
    time.sleep(2.5)  # two polls: nothing goes out before a decision
    assert d.gw.smsc.received == []
    assert d.held_row()["status"] == "held"

    item = d.label("notification")
    assert item["held"] == "released"
    assert wait_for(lambda: len(d.gw.smsc.received) == parts)
    time.sleep(2.5)  # later polls do not send it again
    assert len(d.gw.smsc.received) == parts
    # Every part as the sender sent it: only the sequence number (octets 12-15) is the firewall's own.
    assert sorted(r.pdu[16:] for r in d.gw.smsc.received) == sorted(p[16:] for p in client.submitted)
    assert sorted(r.pdu[:12] for r in d.gw.smsc.received) == sorted(p[:12] for p in client.submitted)
    assert [m.text for m in d.gw.engine.seen] == [NOTICE]  # judged once, whole
    row = d.held_row()
    assert (row["status"], row["decided_by"], row["outcome"]) == ("released", "alice", "forwarded")
    assert row["message_ids"] == ids and len(row["upstream_ids"]) == parts
    # The verdict is stored once, by the hold queue (the review item points at it).
    assert [v.verdict.action for v in d.disposal.db.store.search(channel="smpp")] == [Action.HOLD]


def test_receipt_for_a_released_message_reaches_the_sender_under_the_firewalls_id(desk, loop):
    d = desk()
    client = d.gw.client("transceiver")
    client.send_message(source_addr="10690001", destination_addr="13800138000",
                        short_message=f"验证码已发送。{HOLD_PHRASE}".encode("utf-16-be"), data_coding=8,
                        registered_delivery=True)
    ours = read_answers(client, 1)[0].message_id.decode()
    d.label("personal")
    assert wait_for(lambda: len(d.gw.smsc.received) == 1)
    received = d.gw.smsc.received[0]
    assert received.message_id != ours
    answered = asyncio.run_coroutine_threadsafe(d.gw.smsc.receipt("acme", received), loop.loop)
    (receipt,) = read_delivered(client, 1)
    assert answered.result(5) == 0
    assert receipt.esm_class == P.ESM_DELIVERY_RECEIPT
    assert receipt.receipted_message_id.rstrip(b"\0").decode() == ours
    assert receipt.short_message.decode().startswith(f"id:{ours} sub:001 dlvrd:001")
    assert " stat:DELIVRD " in receipt.short_message.decode()


def test_rejected_message_never_arrives_and_the_sender_gets_a_rejectd_receipt(desk):
    d = desk()
    client = d.gw.client("transceiver")
    parts = send_text(client, NOTICE, registered_delivery=True)
    ids = [a.message_id.decode() for a in read_answers(client, parts)]
    assert d.label("fraud/customer_service_impersonation")["held"] == "rejected"
    receipts = read_delivered(client, parts)  # one per part, each under the id that part was answered with
    assert sorted(r.receipted_message_id.rstrip(b"\0").decode() for r in receipts) == sorted(ids)
    for r in receipts:
        body = r.short_message.decode()
        assert " stat:REJECTD err:001 " in body and body.startswith("id:")
        assert r.esm_class == P.ESM_DELIVERY_RECEIPT and r.message_state == P.MESSAGE_STATES["REJECTD"]
        assert (r.source_addr, r.destination_addr) == (b"13800138000", b"10690001")
    time.sleep(2.5)
    assert d.gw.smsc.received == []
    assert len(client.delivered) == parts  # one receipt each, not one per poll
    assert d.held_row()["outcome"] == f"rejected: {parts} REJECTD receipt(s) sent"


def test_unanswered_hold_expires_as_rejected_and_a_late_label_sends_nothing(desk):
    d = desk('[gateway.smpp]\nhold_expiry = "1s"\n')
    client = d.gw.client("transceiver")
    client.send_message(source_addr="10690001", destination_addr="13800138000",
                        short_message=f"Parcel waiting. {HOLD_PHRASE}".encode("utf-16-be"), data_coding=8,
                        registered_delivery=True)
    ours = read_answers(client, 1)[0].message_id.decode()
    (receipt,) = read_delivered(client, 1)
    assert receipt.receipted_message_id.rstrip(b"\0").decode() == ours
    assert " stat:REJECTD " in receipt.short_message.decode()
    assert d.held_row()["status"] == "expired"
    assert d.label("notification")["held"] == "expired"  # the decision came too late
    time.sleep(2.5)
    assert d.gw.smsc.received == []


def test_firewall_restart_between_hold_and_release_loses_nothing(desk):
    d = desk()
    client = d.gw.client("transmitter", client_class=RecordingClient)
    parts = send_text(client, NOTICE)
    assert all(a.status == 0 for a in read_answers(client, parts))
    sent = client.submitted
    d.gw.restart()  # the process that answered "accepted" is gone; the message is in the database
    d.label("notification")
    time.sleep(2.5)
    assert d.gw.smsc.received == []  # released, but no bind of the tenant is up to send it on
    assert "waiting for a transmitting bind" in describe(d.held_row())
    d.gw.client("transmitter")
    assert wait_for(lambda: len(d.gw.smsc.received) == parts)
    assert sorted(r.pdu[16:] for r in d.gw.smsc.received) == sorted(p[16:] for p in sent)


def test_a_firewall_stopping_while_a_held_message_is_stored_still_answers_it(desk):
    d = desk()
    store_message = d.held.keep

    def slow_keep(*args):
        time.sleep(0.8)  # a slow database
        return store_message(*args)

    d.held.keep = slow_keep
    client = d.gw.client("transmitter")
    send_text(client, f"Parcel waiting. {HOLD_PHRASE}")
    assert wait_for(lambda: d.gw.firewall.hold.keeping)  # judged, being stored
    stopping = threading.Thread(target=d.gw.loop.run, args=(d.gw.firewall.close(),))
    stopping.start()
    try:
        # Answered "accepted" before the bind closed: the sender will not send it again (and have it kept twice).
        assert [a.status for a in read_answers(client, 1)] == [0]
    finally:
        stopping.join(15)
    assert len(d.held.store.search(action="hold")) == 1
    d.gw.firewall, d.gw.port = d.gw.start_firewall()  # for the fixture's close


def test_two_firewall_workers_send_a_released_message_once(desk, settings, loop):
    d = desk()
    # A second worker: its own firewall and its own connection to the database, as a second process has.
    other_held = HeldMessages(open_store(settings))
    other = Firewall(d.gw.policy, d.gw.engine, d.gw.smsc_addr, held=other_held)
    other_port = loop.run(other.start("127.0.0.1", 0))[1]
    other_client = smpplib.client.Client("127.0.0.1", other_port, timeout=5, allow_unknown_opt_params=True)
    try:
        other_client.connect()
        other_client.bind_transmitter(system_id="acme", password="secret")
        client = d.gw.client("transmitter")
        parts = send_text(client, NOTICE)
        read_answers(client, parts)
        d.label("notification")
        assert wait_for(lambda: len(d.gw.smsc.received) >= parts)
        time.sleep(3)  # both workers have polled several times since
        assert len(d.gw.smsc.received) == parts
        assert d.gw.firewall.counts["held_released"] + other.counts["held_released"] == 1
    finally:
        other_client.disconnect()
        loop.run(other.close())
        other_held.close()
        other_held.store.close()


def test_a_claimed_message_is_never_sent_again(desk):
    """A worker that crashed after claiming (before recording the SMS centre's answer) leaves the row claimed:
    no other worker sends it again, and ``why`` says so."""
    d = desk()
    client = d.gw.client("transmitter")
    send_text(client, f"Parcel waiting. {HOLD_PHRASE}")
    read_answers(client, 1)
    d.gw.disconnect_clients()  # nothing bound: this firewall cannot take it
    d.label("notification")
    (taken,) = d.held.claim("crashed-worker", ["acme"], [])
    assert taken.status == "released" and len(taken.pdus) == 1
    d.gw.client("transmitter")
    time.sleep(2.5)
    assert d.gw.smsc.received == []
    assert "taken by firewall crashed-worker" in describe(d.held_row())


def test_when_the_held_message_cannot_be_stored_the_sender_is_told(desk):
    d = desk()
    d.held.store.close()  # the database is gone
    client = d.gw.client("transmitter")
    send_text(client, f"Parcel waiting. {HOLD_PHRASE}")
    send_text(client, "See you at six")
    statuses = sorted(a.status for a in read_answers(client, 2))
    assert statuses == [0, smpplib.consts.SMPP_ESME_RSUBMITFAIL]  # hold_status: not accepted, the sender keeps it
    assert wait_for(lambda: [r.text for r in d.gw.smsc.received] == ["See you at six"])


def test_hold_response_error_keeps_nothing_and_bad_values_are_refused(desk):
    d = desk('[gateway.smpp]\nhold_response = "error"\nhold_status = 0x61\n')
    client = d.gw.client("transmitter")
    send_text(client, f"Parcel waiting. {HOLD_PHRASE}")
    assert read_answers(client, 1)[0].status == 0x61
    with pytest.raises(PolicyError, match="hold_response must be one of 'queue', 'error', 'fake_ok'"):
        Firewall(Policy.from_text(TENANTS + '[gateway.smpp]\nhold_response = "keep"\n'), None, ("127.0.0.1", 1))
    with pytest.raises(PolicyError, match="release_held: unknown label"):
        Disposal(d.disposal.db.store, b"k" * 32, Policy.from_text('[disposal]\nrelease_held = ["ham"]\n'))


def test_why_shows_what_became_of_the_held_message(desk, settings, capsys):
    from skyshield.cli import main

    d = desk()
    client = d.gw.client("transmitter")
    send_text(client, f"Parcel waiting. {HOLD_PHRASE}")
    read_answers(client, 1)
    d.label("notification")
    assert wait_for(lambda: len(d.gw.smsc.received) == 1)
    assert wait_for(lambda: d.held_row()["outcome"] == "forwarded")
    (verdict,) = d.disposal.db.store.search(action="hold")
    assert main(["why", str(verdict.id), "--db", settings.db_url]) == 0
    out = capsys.readouterr().out
    assert "held by the SMPP firewall" in out and "released by alice" in out and "forwarded at" in out


def test_real_engine_holds_what_the_policy_says_and_release_delivers_it(loop, settings, monkeypatch):
    """The real engine under an operator's policy where a bare-IP link is enough to hold (and nothing blocks)."""
    pytest.importorskip("skyshield.text.classify", reason="text model not installed")
    monkeypatch.setenv("SKYSHIELD_DB", settings.db_url)
    from skyshield.assembly import build_engine

    policy_text = "[actions]\nblock = 100.0\nhold = 11.0\n[signals]\nIP_LINK = 12.0\n"
    try:
        engine = build_engine(Policy.from_text(TENANTS + policy_text))
    except Exception as exc:  # noqa: BLE001 - the text area's own tests report a broken model; here it is a skip
        pytest.skip(f"the engine cannot be built right now: {exc!r}")
    held = HeldMessages(open_store(settings))
    disposal = Disposal(open_store(settings), settings.hmac_key(), Policy.from_text(TENANTS))
    gw = Gateway(loop, policy_text, engine, held=held)
    try:
        client = gw.client("transmitter")
        text = "会议资料已上传到 http://10.20.30.40/q3 请查收"
        send_text(client, text)
        assert read_answers(client, 1)[0].status == 0
        time.sleep(1.5)
        assert gw.smsc.received == []
        disposal.refresh()
        (item,) = disposal.review.open_items()
        assert (item["source"], item["text"]) == ("hold", text)
        disposal.review.label(item["id"], "personal", reviewer="alice")
        assert wait_for(lambda: [r.text for r in gw.smsc.received] == [text])
    finally:
        gw.close()
        held.close()
        held.store.close()
        disposal.close()
        disposal.db.store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service)])
def test_concurrent_claims_take_each_released_message_once(backend, tmp_path):
    """Eight workers claim at once, again and again: each released message is taken by exactly one of them."""

    def run(settings):
        books = [HeldMessages(open_store(settings)) for _ in range(8)]
        try:
            verdict = sample_verdict(Action.HOLD)
            message = Message(text="x", sender="1069", recipient="139", channel=Channel.SMPP, tenant="acme")
            pdu = P.build(P.SUBMIT_SM, 0, 1, P.ShortMessage(source_addr="1069", destination_addr="139",
                                                            short_message=b"x").encode())
            for _ in range(20):
                books[0].keep(message, verdict, [(pdu, "m1", 0)], False)
            books[0].db.execute("UPDATE smpp_held SET status = 'released'")
            taken: list[int] = []
            lock = threading.Lock()

            def worker(book, name):
                for _ in range(10):
                    got = book.claim(name, ["acme"], [], limit=3)
                    with lock:
                        taken.extend(h.id for h in got)

            threads = [threading.Thread(target=worker, args=(b, f"w{i}")) for i, b in enumerate(books)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(taken) == sorted(set(taken)) and len(taken) == 20
            assert books[1].claim("late", ["acme"], []) == []
        finally:
            for b in books:
                b.close()
                b.store.close()

    if backend == "sqlite":
        run(load_settings(f"sqlite:///{tmp_path / 'sky.db'}"))
    else:
        with postgres_schema() as url:
            run(load_settings(url, key_file=tmp_path / "sky.key"))
