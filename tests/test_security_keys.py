"""API keys per tenant: open local mode until a key exists, then Bearer keys with scopes; one tenant never
sees another's verdicts, consents or templates; per-key rate limit; ``skyshield keys``; serve refuses a
public host without keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skyshield.config import load_settings
from skyshield.policy import Policy

PROMOTION = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"
CHECK = "/v1/messages:check"


def _app(engine, tmp_path, policy: Policy | None = None):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    return TestClient(create_app(policy or Policy.load(), load_settings(f"sqlite:///{tmp_path / 'api.db'}"),
                                 engine=engine))


def _keys(client):
    return client.app.state.security.keyring


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_open_local_mode_until_a_key_exists_then_every_v1_route_needs_one(engine, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="skyshield.security"), _app(engine, tmp_path) as client:
        assert any("open local mode" in r.getMessage() for r in caplog.records)
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION, "tenant": "shop"}]})
        assert r.status_code == 200, r.text
        vid = r.json()["results"][0]["id"]
        assert client.get(f"/v1/verdicts/{vid}").json()["message"]["tenant"] == "shop"

        key, record = _keys(client).create("shop", "check,read")
        assert key.startswith("sks_") and record.key_id in key

        r = client.post(CHECK, json={"messages": [{"text": PROMOTION}]})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert client.get(f"/v1/verdicts/{vid}").status_code == 401
        r = client.get(f"/v1/verdicts/{vid}", headers=_auth(key[:-1] + ("A" if key[-1] != "A" else "B")))
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"
        assert client.get(f"/v1/verdicts/{vid}", headers={"Authorization": key}).status_code == 401
        huge = client.get(f"/v1/verdicts/{vid}", headers=_auth("sks_" + "x" * 60_000))
        assert huge.status_code == 401 and huge.json()["error"]["code"] == "invalid_key"
        assert client.get(f"/v1/verdicts/{vid}", headers=_auth(key)).status_code == 200
        # health and metrics stay open for probes
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200

        _keys(client).revoke(record.key_id)
        r = client.get(f"/v1/verdicts/{vid}", headers=_auth(key))
        assert r.status_code == 401, "a revoked key stops working at once"
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION}]})
        assert r.status_code == 401, "revoking every key does not reopen the API"


def test_a_tenant_sees_only_its_own_verdicts(engine, tmp_path):
    with _app(engine, tmp_path) as client:
        ring = _keys(client)
        key_a, _ = ring.create("alpha", "check,read")
        key_b, _ = ring.create("beta", "check,read")
        admin, _ = ring.create("ops", "admin")

        # the body says beta, the key says alpha: the key wins
        r = client.post(CHECK, json={"messages": [{"text": FRAUD, "tenant": "beta", "id": "m1"}]}, headers=_auth(key_a))
        assert r.status_code == 200, r.text
        a_id = r.json()["results"][0]["id"]
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION, "id": "m1"}]}, headers=_auth(key_b))
        b_id = r.json()["results"][0]["id"]
        assert r.json()["results"][0]["replayed"] is False, "idempotency ids are per tenant"

        got = client.get(f"/v1/verdicts/{a_id}", headers=_auth(key_a))
        assert got.status_code == 200 and got.json()["message"]["tenant"] == "alpha"
        other = client.get(f"/v1/verdicts/{a_id}", headers=_auth(key_b))
        assert other.status_code == 404 and other.json()["error"]["code"] == "verdict_not_found"

        listed = client.get("/v1/verdicts", params={"tenant": "alpha"}, headers=_auth(key_b)).json()["verdicts"]
        assert [v["tenant"] for v in listed] == ["beta"], "a tenant filter cannot reach another tenant"

        # an admin key reads everything and may name the tenant in the body
        assert client.get(f"/v1/verdicts/{b_id}", headers=_auth(admin)).status_code == 200
        every = client.get("/v1/verdicts", headers=_auth(admin)).json()["verdicts"]
        assert {v["tenant"] for v in every} == {"alpha", "beta"}
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION, "tenant": "gamma"}]}, headers=_auth(admin))
        vid = r.json()["results"][0]["id"]
        assert client.get(f"/v1/verdicts/{vid}", headers=_auth(admin)).json()["message"]["tenant"] == "gamma"


def test_scopes_are_enforced(engine, tmp_path):
    with _app(engine, tmp_path) as client:
        ring = _keys(client)
        reader, _ = ring.create("alpha", "read")
        checker, _ = ring.create("alpha", "check")
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION}]}, headers=_auth(reader))
        assert r.status_code == 403 and r.json()["error"]["needed_scope"] == "check"
        r = client.post(CHECK, json={"messages": [{"text": PROMOTION}]}, headers=_auth(checker))
        assert r.status_code == 200
        assert client.get("/v1/verdicts", headers=_auth(checker)).status_code == 403
        assert client.get("/v1/verdicts", headers=_auth(reader)).status_code == 200
        # blocking a number acts on every tenant's traffic: admin only
        r = client.post("/v1/numbers/13800138000:block", json={"reason": "x"}, headers=_auth(checker))
        assert r.status_code == 403 and r.json()["error"]["needed_scope"] == "admin"


def test_consents_and_templates_stay_within_the_key_tenant(engine, tmp_path):
    with _app(engine, tmp_path) as client:
        ring = _keys(client)
        key_a, _ = ring.create("alpha", "check,read")
        key_b, _ = ring.create("beta", "check,read")
        record = {"recipient": "13800138000", "signature": "某宝", "source": "https://shop.example/form",
                  "disclosure": "我同意接收某宝的优惠短信，回T退订", "tenant": "beta"}
        r = client.post("/v1/consents", json={"records": [record]}, headers=_auth(key_a))
        assert r.status_code == 201, r.text
        assert r.json()["results"][0]["record"]["tenant"] == "alpha"

        def export(key, **params):
            r = client.get("/v1/consents", params={"format": "jsonl", **params}, headers=_auth(key))
            assert r.status_code == 200, r.text
            return [json.loads(line) for line in r.text.splitlines() if line.strip()]

        assert len(export(key_a)) == 1
        assert export(key_b) == [] and export(key_b, tenant="alpha") == []

        template = {"text": "【某宝】您的验证码是${code}，5分钟内有效。", "signature": "某宝",
                    "category": "verification", "variables": {"code": "code"}, "tenant": "beta"}
        r = client.post("/v1/templates", json=template, headers=_auth(key_a))
        assert r.status_code == 201, r.text
        stored = client.app.state.skyshield.engine  # the template registry is the compliance detector's
        registry = next(d for d in stored.detectors if d.name == "compliance").templates
        assert registry.get(r.json()["id"])["tenant"] == "alpha"
        assert registry.count("beta") == 0


def test_rate_limit_per_key_answers_429_json(engine, tmp_path):
    policy = Policy.from_text('[security]\nkey_rate = "3 / 1h"\n')
    with _app(engine, tmp_path, policy) as client:
        ring = _keys(client)
        key_a, _ = ring.create("alpha", "read")
        key_b, _ = ring.create("beta", "read")
        codes = [client.get("/v1/verdicts", headers=_auth(key_a)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = client.get("/v1/verdicts", headers=_auth(key_a))
        assert r.json()["error"]["code"] == "rate_limited" and r.json()["error"]["retry_after_s"] > 0
        assert int(r.headers["Retry-After"]) >= 1
        assert client.get("/v1/verdicts", headers=_auth(key_b)).status_code == 200, "buckets are per key"


def test_token_bucket_refills_over_time():
    from skyshield.security.api import TokenBucket

    bucket = TokenBucket(2, 1.0)
    assert [bucket.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    assert bucket.take("k", now=0.6) == 0.0


def _cli(*args: str, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKYSHIELD_DB": "sqlite:///keys.db"}
    env.pop("SKYSHIELD_KEY_FILE", None)
    return subprocess.run([sys.executable, "-m", "skyshield.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_keys_cli_prints_the_key_once_and_stores_only_its_hash(tmp_path):
    made = _cli("keys", "create", "--tenant", "acme", "--scopes", "check,read", "--label", "shop", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sks_") and "only time" in made.stderr
    secret = key.split("_", 2)[2]
    assert secret.encode() not in (tmp_path / "keys.db").read_bytes()
    key_id = key.split("_")[1]

    listed = _cli("keys", "list", cwd=tmp_path)
    assert key_id in listed.stdout and "acme" in listed.stdout and secret not in listed.stdout
    bad = _cli("keys", "create", "--tenant", "acme", "--scopes", "check,root", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown scope 'root'" in bad.stderr
    assert _cli("keys", "revoke", key_id, cwd=tmp_path).returncode == 0
    assert "revoked" in _cli("keys", "list", cwd=tmp_path).stdout
    assert _cli("keys", "revoke", "deadbeef", cwd=tmp_path).returncode == 1


def test_serve_refuses_a_public_host_without_keys(tmp_path):
    try:
        import skyshield.text.classify  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"the text model is not in the tree yet ({exc.name})")
    r = _cli("serve", "--host", "0.0.0.0", "--port", "1", cwd=tmp_path)
    assert r.returncode == 2 and "refusing to serve on 0.0.0.0 without API keys" in r.stderr
