"""A simulated festival day end to end (small sizes): the behaviour simulator's traffic, dressed in real texts
from ../shared/data, flows through the API; people report spam by API, 7726 and 12321; campaigns appear;
a reviewer works the queue in the browser (or the API where Chromium is absent); an operator blocks the
biggest wave and an appeal goes round; a retrain runs; the regulator report for the day is produced."""

from __future__ import annotations

import csv
import io
import os
import random

import pytest

from disposal_helpers import CHROMIUM, CHROMIUM_ARGS, disposal_of, live_server, login

PASSWORD = "festival password 1"


def _texts(data_dir):
    from skyshield.text import datasets as ds

    zh = ds.read_zh800k(data_dir)
    ham = [r.text for r in zh if r.cls == ds.HAM and 12 <= len(r.text) <= 70][:400]
    promo = [r.text for r in zh if r.cls == ds.PROMOTION and 30 <= len(r.text) <= 120][:40]
    fraud = [r.text for r in ds.read_telecom(data_dir) if r.cls.startswith("fraud/") and 30 <= len(r.text) <= 150][:6]
    return ham, promo, fraud


def _festival_messages(data_dir) -> list[dict]:
    """One simulated day; each sender kind gets texts of its kind. Businesses send festival promotions from a few
    templates across their numbers; fraud rings reuse a few scripts across rotating numbers."""
    from skyshield.behaviour.simulate import SimConfig, simulate

    _, msgs, labels, _ = simulate(SimConfig(subscribers=300, days=1, seed=3))
    kinds = dict(zip(labels["number"].to_list(), labels["kind"].to_list(), strict=True))
    ham, promo, fraud = _texts(data_dir)
    rng = random.Random(7)
    out = []
    for i, row in enumerate(msgs.iter_rows(named=True)):
        kind = kinds.get(row["sender"], "ordinary")
        if kind == "business":
            text = promo[hash(row["template"] or "") % 4]
        elif kind == "fraud":
            text = fraud[i % 3]
        elif row["is_code"]:
            text = f"{row['signature'] or '【网站】'}您的验证码是{rng.randint(100000, 999999)}，5分钟内有效，请勿泄露。"
        else:
            text = ham[i % len(ham)]
        out.append({"text": text, "sender": row["sender"], "recipient": row["recipient"], "tenant": "acme",
                    "time": row["time"].isoformat() + "Z", "id": f"sim-{i}"})
    return out


@pytest.mark.data
def test_a_festival_day_goes_round_the_whole_disposal_loop(data_dir, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.config import load_settings
    from skyshield.console.auth import Users
    from skyshield.disposal import regulator
    from skyshield.disposal.retrain import retrain
    from skyshield.disposal.schema import parse_time

    db = f"sqlite:///{tmp_path / 'festival.db'}"
    monkeypatch.setenv("SKYSHIELD_DB", db)
    monkeypatch.delenv("SKYSHIELD_KEY_FILE", raising=False)
    app = create_app(None, load_settings(db))
    client = TestClient(app)
    messages = _festival_messages(data_dir)
    verdicts = []
    for start in range(0, len(messages), 200):
        r = client.post("/v1/messages:check", json={"messages": messages[start:start + 200]})
        assert r.status_code == 200, r.text
        verdicts += r.json()["results"]
    assert len(verdicts) == len(messages) > 500

    # Reports: recipients of promotions and fraud complain, by API, GSMA 7726 (two steps) and 12321.
    unwanted = [(m, v) for m, v in zip(messages, verdicts, strict=True) if v["category"] in {"promotion", "fraud"}]
    assert len(unwanted) >= 20
    for k, (m, v) in enumerate(unwanted[:12]):
        if k % 3 == 0:
            r = client.post("/v1/reports", json={"reporter": m["recipient"], "sender": m["sender"], "text": m["text"],
                                                 "tenant": "acme", "time": m["time"]})
            assert r.status_code == 201 and r.json()["verdict_id"] == v["id"]
        elif k % 3 == 1:
            step1 = client.post("/v1/reports:sms", json={"from": m["recipient"], "to": "7726", "text": m["text"],
                                                         "tenant": "acme", "time": m["time"]}).json()
            assert step1["state"] == "awaiting_sender"
            step2 = client.post("/v1/reports:sms", json={"from": m["recipient"], "to": "7726", "text": m["sender"],
                                                         "tenant": "acme", "time": m["time"]}).json()
            assert step2["state"] == "reported" and step2["report"]["verdict_id"] == v["id"]
        else:
            r = client.post("/v1/reports:sms", json={"from": m["recipient"], "to": "12321",
                                                     "text": f"{m['sender']}*{m['text']}", "tenant": "acme",
                                                     "time": m["time"]}).json()
            assert r["state"] == "reported" and r["report"]["campaign_id"] is not None

    # Campaigns: the promotion templates and the fraud scripts are waves across several numbers.
    campaigns = client.get("/v1/campaigns", params={"min_size": 5}).json()["campaigns"]
    assert len(campaigns) >= 3 and any(c["senders"] >= 2 and c["reports"] >= 1 for c in campaigns)

    # Review queue: a reviewer labels items (with the keyboard in the browser where Chromium is available).
    disposal = disposal_of(app)
    Users(disposal.db).add("rita", "reviewer", PASSWORD)
    queue = client.get("/v1/review", params={"limit": 1000}).json()
    assert queue["items"], "held, uncertain or reported-but-delivered messages should be queued"
    to_label = min(3, len(queue["items"]))
    if os.path.exists(CHROMIUM) and _have_playwright():
        from playwright.sync_api import sync_playwright

        with live_server(app) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = login(browser, base, "rita", PASSWORD)
            page.goto(f"{base}/console/review")
            for _ in range(to_label):
                first = page.locator("#queue tbody tr").first.get_attribute("data-id")
                page.keyboard.press("4")  # promotion
                page.wait_for_selector(f'#queue tr[data-id="{first}"]', state="detached")
            browser.close()
    else:
        for item in queue["items"][:to_label]:
            client.post(f"/v1/review/{item['id']}:label", json={"label": "promotion", "reviewer": "rita"})
    after = client.get("/v1/review", params={"limit": 1000}).json()
    assert after["counts"].get("labelled") == to_label

    # Block the biggest wave; its sender appeals; the operator keeps the block; the next wave is blocked.
    top = campaigns[0]
    block = client.post("/v1/blocks", json={"kind": "campaign", "value": str(top["id"]), "reason": "festival wave",
                                            "decided_by": "olga", "expires": "7d"}).json()
    appeal = client.post(f"/v1/blocks/{block['id']}/appeals",
                         json={"appellant": "sender", "statement": "lawful"}).json()
    kept = client.post(f"/v1/appeals/{appeal['id']}:decide",
                       json={"decision": "keep", "actor": "olga", "note": "reports confirmed"}).json()
    assert kept["active"] and [a["action"] for a in kept["audit"]] == ["create", "appeal", "appeal_kept"]
    again = client.post("/v1/messages:check", json={"messages": [
        {"text": top["example"], "sender": "13999990000", "tenant": "acme"}]}).json()["results"][0]
    assert again["action"] == "block" and any(s["name"] == "BLOCKLISTED" for s in again["signals"])

    # Retrain with the reviewer's labels (seed base: small sizes); guards decide whether it ships.
    result = retrain(disposal.review.labelled(), tmp_path / "models", data_dir=None, log=lambda m: None)
    assert result.candidate.is_file() and result.shipped == (not result.failed_guards)

    # The regulator report for the day.
    day = messages[0]["time"][:10]
    report = regulator.build(disposal.db, "acme", parse_time(day), parse_time(f"{day}T23:59:59.999999"))
    rows = {r["signature"]: r for r in csv.DictReader(io.StringIO(regulator.to_csv(report)))}
    assert int(rows["(all)"]["messages"]) == len(messages)
    assert int(rows["(all)"]["complaints"]) == 12
    assert report.top_offenders and "<table>" in regulator.to_html(report)


def _have_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True
