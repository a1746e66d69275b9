"""The SMPP firewall with its engine in a child process (``engine_process = true``, what ``skyshield smpp`` runs):
real smpplib senders, the real firewall, the SMSC simulator, and a spawned engine process that also writes the
records. The child is killed outright in one test to show the gateway keeps answering and gets a new one."""

from __future__ import annotations

import os
import signal
import time

import pytest
import smpplib.consts

from gateway_helpers import (
    TENANTS,
    Gateway,
    broken_engine,
    keyword_engine,
    read_answers,
    send_text,
    stalling_engine,
    wait_for,
)
from skyshield.config import load_settings
from skyshield.disposal.held import HeldMessages
from skyshield.events import Action, Channel
from skyshield.gateway.engine_process import EngineProcess, EngineUnavailable
from skyshield.policy import Policy
from skyshield.store import open_store

FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即将资金转入安全账户配合调查"


@pytest.fixture
def db(tmp_path, monkeypatch):
    """The database the engine process records to (it reads SKYSHIELD_DB like any skyshield process)."""
    url = f"sqlite:///{tmp_path / 'sky.db'}"
    monkeypatch.setenv("SKYSHIELD_DB", url)
    return url


def start_engine(policy_text: str = "", factory=keyword_engine) -> EngineProcess:
    engine = EngineProcess(Policy.from_text(TENANTS + policy_text), factory=factory)
    engine.start()
    return engine


def stored(db: str, **query) -> list:
    store = open_store(load_settings(db))
    try:
        return store.search(**query)
    finally:
        store.close()


def test_real_engine_in_its_process_refuses_fraud_and_the_child_records_every_decision(loop, db):
    gw = Gateway(loop, engine=start_engine(factory=None))  # factory None: the shipped engine, build_engine
    try:
        client = gw.client("transmitter")
        send_text(client, FRAUD, source="10690001")
        send_text(client, "【顺丰速运】您的快递已到达小区驿站，取件码8-3-2011，请凭码取件。", source="10690002")
        answers = read_answers(client, 2)
        assert sorted(a.status for a in answers) == [0, smpplib.consts.SMPP_ESME_RSUBMITFAIL]
        assert wait_for(lambda: len(gw.smsc.received) == 1)
        assert "取件码" in gw.smsc.received[0].text
    finally:
        gw.close()  # the child writes what it holds before it stops
    fraud, = stored(db, sender="10690001")
    assert fraud.verdict.action is Action.BLOCK and fraud.verdict.category.value == "fraud"
    assert fraud.channel is Channel.SMPP and fraud.tenant == "acme" and fraud.text == FRAUD
    # Answered before it was explained, stored after: the record has the text model's terms.
    (model,) = [s for s in fraud.verdict.signals if s.name == "MODEL_FRAUD"]
    assert model.evidence["terms"] and "安全账户" in " ".join(fraud.verdict.reasons())
    parcel, = stored(db, sender="10690002")
    assert parcel.verdict.action is Action.DELIVER


def test_killed_engine_process_fails_closed_then_a_new_one_judges(loop, db, caplog, monkeypatch):
    engine = start_engine()
    monkeypatch.setenv("SKYSHIELD_TEST_BUILD_DELAY", "2")  # the next child takes 2 s to build its engine
    gw = Gateway(loop, "[gateway.smpp]\nfail_open = false\nfail_status = 0x08\n", engine=engine)
    try:
        client = gw.client("transmitter")
        send_text(client, "verify your account now")
        assert read_answers(client, 1)[0].status == smpplib.consts.SMPP_ESME_RSUBMITFAIL
        os.kill(engine._process.pid, signal.SIGKILL)
        assert wait_for(lambda: not engine.alive, timeout=10)
        send_text(client, "See you at 6")  # no engine while the new one builds: refused per fail_open = false
        assert read_answers(client, 2)[1].status == 0x08
        assert gw.smsc.received == []
        assert wait_for(lambda: engine.alive and engine.restarts == 1, timeout=60)
        send_text(client, "verify your account again")
        send_text(client, "See you at 7")
        answers = read_answers(client, 4)[2:]
        assert sorted(a.status for a in answers) == [0, smpplib.consts.SMPP_ESME_RSUBMITFAIL]  # judged again
    finally:
        gw.close()
    assert "the engine process ended" in caplog.text
    assert sorted(m.text for m in stored(db, channel="smpp") if m.text.endswith(("again", "7"))) == \
        ["See you at 7", "verify your account again"]


def test_a_stuck_engine_process_is_replaced_after_engine_timeout(loop, db, caplog):
    engine = EngineProcess(Policy.from_text(TENANTS), factory=stalling_engine, answer_timeout=0.5)
    engine.start()
    gw = Gateway(loop, "[gateway.smpp]\nfail_open = false\nfail_status = 0x08\n", engine=engine)
    try:
        client = gw.client("transmitter")
        started = time.monotonic()
        send_text(client, "STALL the engine")
        assert read_answers(client, 1)[0].status == 0x08  # refused per fail_open = false, not left waiting
        assert time.monotonic() - started < 5
        assert wait_for(lambda: engine.alive and engine.restarts == 1, timeout=60)
        send_text(client, "verify your account")
        assert read_answers(client, 2)[1].status == smpplib.consts.SMPP_ESME_RSUBMITFAIL  # judged again
    finally:
        gw.close()
    assert "gave no answer within 0.5 s" in caplog.text


def test_held_message_is_recorded_once_by_the_hold_queue_and_the_rest_by_the_child(loop, db):
    held = HeldMessages(open_store(load_settings(db)))
    gw = Gateway(loop, engine=start_engine(), held=held)
    try:
        client = gw.client("transmitter")
        send_text(client, "您的包裹地址不完整，请核对收件信息")
        send_text(client, "See you at 6")
        assert [a.status for a in read_answers(client, 2)] == [0, 0]
        assert wait_for(lambda: len(gw.smsc.received) == 1)  # the held one waits for review
    finally:
        gw.close()
        held.close()
        held.store.close()
    assert sorted(v.verdict.action.value for v in stored(db, channel="smpp")) == ["deliver", "hold"]


def test_engine_that_cannot_be_built_says_why():
    with pytest.raises(EngineUnavailable, match="model file is corrupt"):
        start_engine(factory=broken_engine)


def test_skyshield_smpp_command_judges_in_a_child_and_sigterm_loses_no_record(loop, db, tmp_path):
    import socket
    import subprocess
    import sys

    import smpplib.client

    from skyshield.gateway.smsc_sim import SmscSimulator

    smsc = SmscSimulator()
    host, smsc_port = loop.run(smsc.start())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = tmp_path / "policy.toml"
    policy.write_text(TENANTS)
    proc = subprocess.Popen([sys.executable, "-m", "skyshield.cli", "--policy", str(policy), "smpp", "--listen",
                             f"127.0.0.1:{port}", "--upstream", f"{host}:{smsc_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    client = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
        client.answers = []
        client.set_message_sent_handler(lambda pdu: client.answers.append(pdu))
        client.set_error_pdu_handler(lambda pdu: None)
        client.connect()
        client.bind_transmitter(system_id="acme", password="secret")
        for n in range(20):
            send_text(client, FRAUD if n % 4 == 0 else f"See you at {n}", source="10690001")
        assert sorted(a.status for a in read_answers(client, 20)).count(smpplib.consts.SMPP_ESME_RSUBMITFAIL) == 5
        client.disconnect()
        client = None
        proc.send_signal(signal.SIGTERM)  # the gateway stops its engine child, which writes what it holds
        out, _ = proc.communicate(timeout=60)
    finally:
        if client is not None:
            client.disconnect()
        if proc.poll() is None:
            proc.kill()
        loop.run(smsc.close())
    assert "engine process: 20 records saved, 0 failed" in out, out
    assert len(stored(db, sender="10690001")) == 20


def test_a_few_records_wait_briefly_for_company_then_are_written_without_a_stop(loop, db):
    gw = Gateway(loop, engine=start_engine())
    try:
        client = gw.client("transmitter")
        send_text(client, "See you at six", source="10690011")
        send_text(client, "Dinner at eight?", source="10690011")
        read_answers(client, 2)
        # Two records are fewer than a chunk: they wait up to RECORD_LINGER for more, then are committed anyway.
        assert wait_for(lambda: len(stored(db, sender="10690011")) == 2, timeout=5)
    finally:
        gw.close()
