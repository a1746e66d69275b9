"""The behaviour engine in the traffic path: call screening, the message detector, and the HTTP routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skyshield.behaviour.calls import CallScreener, call_decision
from skyshield.behaviour.detector import BehaviourDetector
from skyshield.behaviour.lists import ReputationLists
from skyshield.behaviour.service import BehaviourService
from skyshield.engine import Engine
from skyshield.events import Action, Call, Category, Message
from skyshield.policy import Policy
from skyshield.text.extract import analyse_batch

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return Policy.from_text(f'[detectors.behaviour]\nlists_db = "{tmp_path / "none.db"}"\n')


@pytest.fixture
def screener(policy: Policy) -> CallScreener:
    service = BehaviourService(policy, lists=ReputationLists({"4155550100": {"ftc-dnc": 3}}))
    return CallScreener(policy, service)


def test_ordinary_caller_is_allowed(screener: CallScreener) -> None:
    verdicts = []
    for i in range(30):  # three days of calls with five friends, who call back
        friend = f"1390000000{i % 5}"
        verdicts.append(screener.screen(Call("13800000001", friend, T0 + timedelta(hours=2.5 * i), 120.0, True)))
        screener.screen(Call(friend, "13800000001", T0 + timedelta(hours=2.5 * i, minutes=30), 60.0, True))
    assert all(call_decision(v) == "allow" for v in verdicts)
    assert not verdicts[-1].signals and verdicts[-1].category == Category.PERSONAL
    assert screener.service.profile("13800000001")["fraud_probability"] < 0.5


def test_fresh_number_dialling_strangers_is_blocked_with_reasons(screener: CallScreener) -> None:
    verdicts = [screener.screen(Call("17000000001", f"1380000{i:04d}", T0 + timedelta(seconds=40 * i)))
                for i in range(80)]
    assert call_decision(verdicts[0]) == "allow"
    last = verdicts[-1]
    names = {s.name for s in last.signals}
    assert {"SENDER_FAN_OUT", "SENDER_FRAUD_SCORE"} <= names
    assert last.category == Category.FRAUD and last.action == Action.BLOCK
    assert any("P(fraud number)" in r for r in last.reasons())
    profile = screener.service.profile("17000000001")
    assert profile["fraud_probability"] > 0.9 and profile["reasons"]
    assert profile["blocked"] is not None  # auto-blocked at auto_block_score, so rotation can follow it


def test_listed_number_carries_its_source(screener: CallScreener) -> None:
    v = screener.screen(Call("+1 415-555-0100", "13800000001", T0))
    listed = [s for s in v.signals if s.name == "REPUTATION_LISTED"]
    assert listed and listed[0].evidence["sources"] == ["ftc-dnc"] and listed[0].points == 8.0


def test_block_carries_over_to_a_rotated_number(screener: CallScreener) -> None:
    svc = screener.service
    victims = [f"1380000{i:04d}" for i in range(40)]
    for i, v in enumerate(victims):
        screener.screen(Call("17100000001", v, T0 + timedelta(minutes=i)))
    svc.block("17100000001", "reported by 12 users", (T0 + timedelta(hours=1)).timestamp())
    t1 = T0 + timedelta(days=1)
    verdicts = [screener.screen(Call("17100000002", v, t1 + timedelta(hours=i))) for i, v in enumerate(victims[:9])]
    assert "ROTATED_NUMBER" not in {s.name for v in verdicts[:7] for s in v.signals}  # too few callees yet
    rotated = [s for s in verdicts[-1].signals if s.name == "ROTATED_NUMBER"]
    assert rotated and rotated[0].evidence["blocked"] == "17100000001"
    assert verdicts[-1].action == Action.BLOCK
    blocked_again = screener.screen(Call("17100000001", "13900000000", t1))
    assert "BLOCKED_NUMBER" in {s.name for s in blocked_again.signals}


def test_simbox_gateway(screener: CallScreener) -> None:
    sims = [f"1720000{i:04d}" for i in range(8)]
    last = None
    for k in range(45):
        for sim in sims:
            j = sims.index(sim)
            call = Call(sim, f"1380{k:03d}{j:04d}", T0 + timedelta(minutes=20 * k, seconds=j), 60.0, True)
            last = screener.screen(call, cell="c42", device="imei-box")
    box = [s for s in last.signals if s.name == "SIMBOX"]
    assert box and box[0].evidence["numbers_on_device"] == 8


def test_call_outcome_updates_answer_rate(screener: CallScreener) -> None:
    call = Call("13800000009", "13900000009", T0)
    screener.screen(call)
    assert screener.service.stream.features("13800000009")["answer_rate_1h"] == 0.0
    assert screener.outcome(call, 42.0, True)
    f = screener.service.stream.features("13800000009")
    assert f["answer_rate_1h"] == 1.0 and f["dur_p50_1h"] == 42.0


@pytest.fixture(scope="module")
def text_model():
    from skyshield.text.classify import load_model

    return load_model(None)


def test_message_detector_flags_sms_bombing(policy: Policy, text_model) -> None:
    service = BehaviourService(policy, lists=ReputationLists())
    engine = Engine(policy, analyse_batch, text_model, [BehaviourDetector(policy, service)])
    msgs = [Message(f"{100000 + i} is your code", sender=f"10690{i:03d}", recipient="13800000077",
                    time=T0 + timedelta(seconds=20 * i)) for i in range(8)]
    msgs.append(Message("see you at 7", sender="13800000001", recipient="13800000002", time=T0))
    verdicts = engine.check(msgs)
    flagged = [any(s.name == "SMS_BOMBING" for s in v.signals) for v in verdicts]
    assert flagged == [False] * 4 + [True] * 4 + [False]
    bomb = next(s for s in verdicts[5].signals if s.name == "SMS_BOMBING")
    assert bomb.evidence["distinct_senders"] == 6 and verdicts[5].action == Action.HOLD


def test_http_routes(policy: Policy, tmp_path: Path, text_model) -> None:
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.config import load_settings

    engine = Engine(policy, analyse_batch, text_model, [BehaviourDetector(policy)])
    settings = load_settings(f"sqlite:///{tmp_path / 'api.db'}", tmp_path / "k.key")
    with TestClient(create_app(policy, settings, engine=engine)) as client:
        calls = [{"caller": "17300000001", "callee": f"1380000{i:04d}",
                  "start": (T0 + timedelta(seconds=30 * i)).isoformat(), "id": f"c{i}"} for i in range(70)]
        r = client.post("/v1/calls:check", json={"calls": calls})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["checked"] == 70 and body["results"][0]["decision"] == "allow"
        last = body["results"][-1]
        assert last["call_id"] == "c69" and last["decision"] == "block" and last["reasons"]
        # Every decision is recorded like the SIP proxy's: channel "call", the caller's id as the message id.
        stored = client.get(f"/v1/verdicts/{last['id']}").json()
        assert stored["message"]["channel"] == "call" and stored["message"]["id"] == "c69"
        assert stored["action"] == "block" and stored["signals"]
        listed = client.get("/v1/verdicts", params={"channel": "call", "limit": 100}).json()
        assert len(listed["verdicts"]) == 70
        p = client.get("/v1/numbers/17300000001").json()
        assert p["seen"] and p["features"]["distinct_callees_1h"] >= 30 and p["fraud_probability"] > 0.5
        assert client.get("/v1/numbers/19999999999").json()["seen"] is False
        r = client.post("/v1/calls:check", json={"calls": [{"caller": "1", "callee": "2", "duration": -1}]})
        assert r.status_code == 422
        r = client.post("/v1/numbers/17300000002:block", json={"reason": "complaints"})
        assert r.status_code == 200 and r.json()["blocked"]["reason"] == "complaints"
        assert client.post("/v1/numbers/17300000002:unblock").status_code == 200
        assert client.get("/v1/numbers/17300000002").json()["blocked"] is None
        assert client.post("/v1/numbers/17300000002:unblock").json()["error"]["code"] == "not_blocked"


def test_engine_clock_is_local_wall_clock() -> None:
    from datetime import timezone as tz

    from skyshield.behaviour.calls import epoch

    beijing = tz(timedelta(hours=8))
    local = epoch(datetime(2026, 1, 1, 2, 30, tzinfo=beijing), "Asia/Shanghai")
    assert local == epoch(datetime(2026, 1, 1, 2, 30))  # 02:30 in Beijing is night, whatever the offset given
    assert epoch(datetime(2026, 1, 1, 2, 30, tzinfo=UTC), "Asia/Shanghai") == epoch(datetime(2026, 1, 1, 10, 30))
