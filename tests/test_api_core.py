"""The HTTP API with the real engine and a real SQLite file: verdicts, per-item errors, limits, retrieval,
health, metrics and the OpenAPI page."""

from __future__ import annotations

import json

import pytest

from skyshield.config import Settings, load_settings

PROMOTION = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"
CHECK = "/v1/messages:check"
ACTIONS = {"deliver", "tag", "fold", "hold", "block"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(f"sqlite:///{tmp_path / 'api.db'}")


@pytest.fixture
def client(engine, settings):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    with TestClient(create_app(None, settings, engine=engine)) as c:
        yield c


def _check(client, *messages, status=200):
    r = client.post(CHECK, json={"messages": list(messages)})
    assert r.status_code == status, r.text
    return r.json()


def test_the_two_examples_come_out_as_promotion_and_fraud(client):
    body = _check(client, {"text": PROMOTION, "sender": "106900001234"}, {"text": FRAUD, "id": "m2"})
    promo, fraud = body["results"]
    assert body["checked"] == 2 and body["failed"] == 0 and body["model_version"]

    assert promo["index"] == 0 and promo["category"] == "promotion"
    assert promo["action"] in {"tag", "fold", "hold", "block"}
    promo_signals = {s["name"] for s in promo["signals"]}
    assert {"SIGNATURE", "OPT_OUT_TEXT"} <= promo_signals, promo["signals"]
    assert any(r.startswith("SIGNATURE") for r in promo["reasons"])

    assert fraud["category"] == "fraud" and fraud["subtype"] == "authority_impersonation"
    assert fraud["message_id"] == "m2"
    assert fraud["unwanted"] > 0.5
    assert fraud["action"] in {"fold", "hold", "block"}
    assert fraud["reasons"], "a fraud verdict must say why"
    assert isinstance(promo["id"], int) and fraud["id"] == promo["id"] + 1


def test_a_checked_message_can_be_read_back_with_every_reason(client):
    [result] = _check(client, {"text": PROMOTION, "sender": "+86 138 0013 8000", "tenant": "acme"})["results"]
    r = client.get(f"/v1/verdicts/{result['id']}")
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == result["id"] and got["category"] == "promotion"
    assert got["message"]["text"] == PROMOTION and got["message"]["tenant"] == "acme"
    assert got["message"]["sender"].startswith("h:"), "numbers are pseudonymised at rest"
    names = {s["name"] for s in got["signals"]}
    assert {"SIGNATURE", "OPT_OUT_TEXT"} <= names
    assert all("evidence" in s and "points" in s for s in got["signals"])
    assert got["reasons"] == result["reasons"]

    listed = client.get("/v1/verdicts", params={"sender": "13800138000"}).json()["verdicts"]
    assert [v["id"] for v in listed] == [result["id"]]


def test_a_resent_message_id_gets_its_stored_verdict_back(client):
    first = _check(client, {"text": PROMOTION, "id": "order-1"}, {"text": "明天下午三点开会"})
    assert first["replayed"] == 0
    # A client retrying the whole batch (e.g. after a timeout) does not create a second record.
    again = _check(
        client,
        {"text": PROMOTION, "id": "order-1"},
        {"text": FRAUD, "id": "order-2"},
        {"text": FRAUD, "id": "order-2"},
        {"text": PROMOTION, "id": "order-1", "tenant": "other-tenant"},
    )
    r = again["results"]
    assert r[0]["id"] == first["results"][0]["id"] and r[0]["replayed"] is True
    assert r[0]["category"] == first["results"][0]["category"]
    assert r[1]["replayed"] is False and r[2]["replayed"] is True and r[2]["id"] == r[1]["id"]
    assert r[3]["replayed"] is False and r[3]["id"] not in {r[0]["id"], r[1]["id"]}, "ids are per tenant"
    assert again["replayed"] == 2 and again["checked"] == 4
    listed = client.get("/v1/verdicts", params={"limit": 100}).json()["verdicts"]
    assert len(listed) == 4, "2 from the first request, 2 new from the second"


def test_missing_and_malformed_verdict_ids_are_json_errors(client):
    r = client.get("/v1/verdicts/987654")
    assert r.status_code == 404 and r.json()["error"]["code"] == "verdict_not_found"
    assert client.get("/v1/verdicts/99999999999999999999999").status_code == 404
    r = client.get("/v1/verdicts/forty-two")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_type"
    assert "verdict_id" in r.json()["error"]["message"]
    r = client.get("/v1/verdicts", params={"action": "explode"})
    assert r.status_code == 422 and "action" in r.json()["error"]["message"]
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get(CHECK)
    assert r.status_code == 405 and "GET is not allowed on /v1/messages:check" in r.json()["error"]["message"]


def test_a_batch_with_broken_items_still_checks_the_good_ones(client):
    r = client.post(
        CHECK,
        json={
            "messages": [
                {"text": PROMOTION},
                {"text": ""},
                {"text": "x" * 100_000},
                {"text": 42},
                {"text": "hello", "colour": "red"},
                "just a string",
                {"sender": "13800138000"},
                {"text": FRAUD, "time": "not a time"},
                {"text": FRAUD, "time": "2026-11-11T08:30:00+08:00", "id": 7},
            ]
        },
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_items"
    assert body["error"]["indexes"] == [1, 2, 3, 4, 5, 6, 7]
    assert body["checked"] == 2 and body["failed"] == 7
    results = body["results"]
    assert [x["index"] for x in results] == list(range(9)), "every item answered, in order"
    codes = {x["index"]: x["error"]["code"] for x in results if "error" in x}
    assert codes == {
        1: "empty_text",
        2: "text_too_long",
        3: "invalid_type",
        4: "unknown_field",
        5: "invalid_type",
        6: "missing_field",
        7: "invalid_value",
    }
    assert results[4]["error"]["field"] == "colour" and "messages[4].colour" in results[4]["error"]["message"]
    assert "100,000" in results[2]["error"]["message"]
    assert results[0]["category"] == "promotion" and results[8]["action"] in ACTIONS
    assert results[8]["message_id"] == "7"
    # The good items were stored, not just answered.
    for i in (0, 8):
        assert client.get(f"/v1/verdicts/{results[i]['id']}").status_code == 200


def test_a_batch_of_only_broken_items_is_422_with_each_index(client):
    body = _check(client, {"text": "   "}, {"txt": "typo"}, status=422)
    assert body["checked"] == 0 and [x["error"]["code"] for x in body["results"]] == ["empty_text", "unknown_field"]


def test_more_than_10000_messages_is_413(client):
    r = client.post(CHECK, json={"messages": [{"text": "hi"}] * 10_001})
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "batch_too_large" and "10,001" in error["message"] and "10,000" in error["message"]


def test_an_oversized_body_is_413_before_parsing(engine, tmp_path):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    small = Settings(db_url=f"sqlite:///{tmp_path / 's.db'}", key_file=tmp_path / "s.key", max_body_bytes=1000)
    with TestClient(create_app(None, small, engine=engine)) as c:
        r = c.post(CHECK, json={"messages": [{"text": "x" * 2000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        (b"{not json", 400, "invalid_json", "not JSON"),
        (b"", 400, "invalid_json", "empty"),
        (b"[1, 2]", 422, "invalid_type", "object"),
        (json.dumps({"messages": [{"text": "hi"}], "priority": 1}).encode(), 422, "unknown_field", "priority"),
        (json.dumps({"msgs": []}).encode(), 422, "unknown_field", "msgs"),
        (json.dumps({}).encode(), 422, "missing_field", "messages"),
        (json.dumps({"messages": "hi"}).encode(), 422, "invalid_type", "list"),
        (json.dumps({"messages": []}).encode(), 422, "empty_batch", "1 to 10,000"),
        (b"\xff\xfe{}", 400, "invalid_json", "UTF-8"),
    ],
)
def test_a_malformed_body_gets_a_json_error_that_names_the_problem(client, body, status, code, named):
    r = client.post(CHECK, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and named in error["message"]


def test_health_metrics_and_docs(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"

    def promotion_count(text: str) -> float:
        for line in text.splitlines():
            if line.startswith("skyshield_messages_checked_total{") and 'ingress="api"' in line \
                    and 'category="promotion"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").text
    _check(client, {"text": PROMOTION}, {"text": PROMOTION})
    client.post(CHECK, json={"messages": [{"text": ""}]})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    assert promotion_count(after.text) - promotion_count(before) == 2
    assert 'skyshield_errors_total{code="empty_text",ingress="api"}' in after.text
    assert 'skyshield_batch_size_bucket{ingress="api",le="2.0"}' in after.text
    assert "skyshield_check_batch_seconds_count" in after.text

    spec = client.get("/openapi.json").json()
    op = spec["paths"][CHECK]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CheckRequest")
    example = spec["components"]["schemas"]["CheckRequest"]["examples"][0]
    assert example["messages"][0]["text"] == PROMOTION
    assert "MessageIn" in spec["components"]["schemas"]
    assert {"200", "413", "422"} <= set(op["responses"])
    assert client.get("/docs").status_code == 200
