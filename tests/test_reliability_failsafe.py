"""Fail open or fail closed: with the model or the store broken, the API still answers every message with the
action ``[engine] on_failure`` names, says why (ENGINE_UNAVAILABLE / STORE_UNAVAILABLE), records the decision
and raises ``skyshield_failsafe_total{reason}``."""

from __future__ import annotations

import json
import sqlite3

import pytest
from prometheus_client import REGISTRY

from skyshield.config import load_settings
from skyshield.engine import Engine
from skyshield.policy import Policy, PolicyError

FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"
CHECK = "/v1/messages:check"


class BrokenModel:
    version = "broken-model"

    def predict(self, analyses):
        raise RuntimeError("model file is corrupt")


def _failsafe_count(reason: str) -> float:
    return REGISTRY.get_sample_value("skyshield_failsafe_total", {"reason": reason}) or 0.0


def _policy(mode: str) -> Policy:
    return Policy.from_text(f'[engine]\non_failure = "{mode}"\n')


def _client(tmp_path, policy: Policy, engine: Engine):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    return TestClient(create_app(policy, load_settings(f"sqlite:///{tmp_path / 'f.db'}"), engine=engine))


def _broken_engine(policy: Policy) -> Engine:
    from skyshield.text.extract import analyse_batch

    return Engine(policy, analyse_batch, BrokenModel(), [])


@pytest.mark.parametrize(("mode", "action"), [("open", "deliver"), ("closed", "block")])
def test_a_broken_model_gives_the_policy_action_and_the_decision_is_stored(tmp_path, mode, action):
    policy = _policy(mode)
    before = _failsafe_count("engine")
    with _client(tmp_path, policy, _broken_engine(policy)) as client:
        r = client.post(CHECK, json={"messages": [{"text": FRAUD, "id": "a"}, {"text": "晚上吃饭吗", "id": "b"}]})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["action"] for x in results] == [action, action]
        assert all(x["failsafe"] == "engine_unavailable" for x in results)
        assert results[0]["signals"][0]["name"] == "ENGINE_UNAVAILABLE"
        assert "model file is corrupt" in results[0]["signals"][0]["evidence"]["why"]

        stored = client.get(f"/v1/verdicts/{results[0]['id']}").json()
        assert stored["action"] == action and [s["name"] for s in stored["signals"]] == ["ENGINE_UNAVAILABLE"]
        metrics = client.get("/metrics").text
        assert 'skyshield_failsafe_total{reason="engine"}' in metrics
    assert _failsafe_count("engine") == before + 2


@pytest.mark.parametrize(("mode", "closed"), [("open", False), ("closed", True)])
def test_a_broken_store_still_answers_and_journals_the_decision(tmp_path, engine, mode, closed):
    policy = _policy(mode)
    before = _failsafe_count("store")
    with _client(tmp_path, policy, engine) as client:
        store = client.app.state.skyshield.store

        def down(*args, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")

        store.save = down
        store.find_external = down
        r = client.post(CHECK, json={"messages": [{"text": FRAUD, "id": "x1", "recipient": "13800138000"}]})
        assert r.status_code == 200, r.text
        [result] = r.json()["results"]
        assert result["failsafe"] == "store_unavailable" and result["id"] is None
        if closed:
            assert result["action"] == "block"
        else:
            assert result["action"] in {"fold", "hold", "block"}, "failing open keeps the engine's own verdict"
    assert _failsafe_count("store") == before + 1
    [row] = [json.loads(line) for line in (tmp_path / "f.failsafe.jsonl").read_text().splitlines()]
    assert row["message_id"] == "x1" and row["action"] == result["action"] and "STORE_UNAVAILABLE" in row["signals"]
    assert "13800138000" not in json.dumps(row) and FRAUD not in json.dumps(row), "the journal holds no personal data"


def test_an_unknown_on_failure_value_stops_the_api_at_start(tmp_path):
    policy = _policy("sometimes")
    with pytest.raises(PolicyError, match="on_failure"):
        from skyshield.api.app import create_app

        create_app(policy, load_settings(f"sqlite:///{tmp_path / 'f.db'}"), engine=_broken_engine(policy))
