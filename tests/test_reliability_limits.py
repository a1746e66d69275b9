"""Long adversarial input through the whole API path (every detector, the store, the answer): each batch is
answered, and none hangs (a catastrophic regex backtrack would take minutes; the bound here is generous and
only catches hangs: speed is measured in bench/). The analyser's own 100k-character cases live in
tests/test_text_extract.py."""

from __future__ import annotations

import threading

import pytest

LIMIT = 10_000  # Settings.max_text_chars
ADVERSARIAL = [
    "【" + "签" * (LIMIT - 2) + "】",
    "回T退订" * (LIMIT // 4),
    "http://" + "a-" * ((LIMIT - 7) // 2),
    "http://" + "a." * ((LIMIT - 7) // 2),
    "13800138000" * (LIMIT // 11),
    "${code}" * (LIMIT // 7),
    "验证码" * (LIMIT // 3),
    "¥1," * (LIMIT // 3),
    "加 V ：" * (LIMIT // 5),
    "\u200b" * LIMIT,
    "ｗｗｗ．" * (LIMIT // 4),
    "1." * (LIMIT // 2),
]


@pytest.fixture(scope="module")
def client(api_client):
    return api_client


def _answered_within(seconds: float, call):
    box: list = []
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"no answer within {seconds:.0f} s: a hang (catastrophic backtracking?)"
    return box[0]


def test_adversarial_texts_at_the_length_limit_all_get_verdicts(client):
    messages = [{"text": t, "sender": "1" * 64, "recipient": "+" + "8" * 63, "id": str(i)}
                for i, t in enumerate(ADVERSARIAL)]
    assert all(len(m["text"]) <= LIMIT for m in messages)
    r = _answered_within(120, lambda: client.post("/v1/messages:check", json={"messages": messages}))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["message_id"] for x in results] == [str(i) for i in range(len(ADVERSARIAL))]
    assert all(x["id"] and "failsafe" not in x for x in results)


def test_one_character_over_the_limit_is_refused_and_named(client):
    r = client.post("/v1/messages:check", json={"messages": [{"text": "a" * (LIMIT + 1)}, {"text": "hi"}]})
    assert r.status_code == 422
    assert r.json()["results"][0]["error"]["code"] == "text_too_long" and r.json()["results"][1]["id"]


def test_adversarial_templates_and_replies(client):
    templates = [{"text": t[:2000]} for t in ADVERSARIAL]
    r = _answered_within(120, lambda: client.post("/v1/templates:audit", json={"templates": templates}))
    assert r.status_code == 200 and len(r.json()["templates"]) == len(ADVERSARIAL)
    r = _answered_within(60, lambda: client.post("/v1/replies", json={"text": "退订" * 1000, "from": "13800138000",
                                                                      "to": "1069"}))
    assert r.status_code == 200 and r.json()["opt_out"] is True

