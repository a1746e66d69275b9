"""Operator work (blocks, appeal decisions, campaigns, review, every complaint) needs an admin key; a tenant's
key files complaints and reads regulator reports for its own tenant only."""

from __future__ import annotations

import pytest

from skyshield.config import load_settings
from skyshield.policy import Policy


@pytest.fixture
def client(engine, tmp_path):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    with TestClient(create_app(Policy.load(), load_settings(f"sqlite:///{tmp_path / 'api.db'}"), engine=engine)) as c:
        yield c


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BLOCK = {"kind": "number", "value": "17012345678", "reason": "fraud wave", "decided_by": "ops"}


def test_a_tenant_key_cannot_block_review_or_list_every_complaint(client):
    keyring = client.app.state.security.keyring
    shop, _ = keyring.create("shop", "check,read")
    admin, _ = keyring.create("carrier", "check,read,admin")

    assert client.post("/v1/blocks", json=BLOCK, headers=_bearer(shop)).status_code == 403
    for path in ("/v1/blocks", "/v1/review", "/v1/campaigns", "/v1/reports"):
        r = client.get(path, headers=_bearer(shop))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "forbidden"

    r = client.post("/v1/blocks", json=BLOCK, headers=_bearer(admin))
    assert r.status_code == 201, r.text
    assert client.get("/v1/blocks", headers=_bearer(admin)).status_code == 200


def test_a_tenant_files_complaints_for_itself_and_reads_only_its_own_regulator_report(client):
    keyring = client.app.state.security.keyring
    shop, _ = keyring.create("shop", "check,read")
    admin, _ = keyring.create("carrier", "check,read,admin")

    report = {"reporter": "13800138000", "sender": "17012345678", "text": "您的账户异常，请点击链接", "tenant": "bank"}
    r = client.post("/v1/reports", json=report, headers=_bearer(shop))
    assert r.status_code == 201, r.text
    listed = client.get("/v1/reports", headers=_bearer(admin)).json()["reports"]
    assert [row["tenant"] for row in listed] == ["shop"], "the key's tenant, not the one in the body"

    period = {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z", "format": "json"}
    assert client.get("/v1/regulator-report", params={**period, "tenant": "bank"},
                      headers=_bearer(shop)).status_code == 404
    assert client.get("/v1/regulator-report", params={**period, "tenant": "shop"},
                      headers=_bearer(shop)).status_code == 200
