"""A campaign of a few thousand sends, with consent records and opt-out replies, through `skyshield audit`,
the engine and the API: the right sends are blocked for the right reasons; bad rows are reported, not fatal."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance_helpers import make_engine
from skyshield.compliance.campaign import COLUMNS, CampaignFileError, audit_campaign
from skyshield.compliance.ledger import ConsentLedger
from skyshield.compliance.optout import handle_reply
from skyshield.config import load_settings
from skyshield.engine import BatchContext
from skyshield.events import Action, Category
from skyshield.policy import Policy

POLICY = Policy.load()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, monkeypatch):
    """A database URL for the CLI's ``--db``: a SQLite file, or a PostgreSQL schema of its own (with its key file)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    from service_helpers import postgres_schema

    monkeypatch.setenv("SKYSHIELD_KEY_FILE", str(tmp_path / "cli.key"))
    with postgres_schema() as url:
        yield url
COMPLIANCE = {"NO_CONSENT", "OPTED_OUT", "DND_LISTED", "QUIET_HOURS", "FREQUENCY_CAP"}
JD = "【京东】尊敬的{name}，双11会员日全场5折起，详情 jd.com/s 回T退订"
TB = "【淘宝】{name}您好，年货节优惠红包已到账，速来领取"  # no opt-out text: template needs fixing
LOAN = "【快贷】无抵押贷款，当天下款 回T退订"  # banned industry: rejected
CODE = "【招商银行】您的验证码是${code}，5分钟内有效。"
SH = ZoneInfo("Asia/Shanghai")


def csv_line(values: dict) -> str:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([values.get(c, "") for c in HEADER])
    return out.getvalue()


HEADER = ["recipient", "template", "signature", "category", "variables", "send_at", "sender"]


def build_campaign(ledger: ConsentLedger, n_cn: int = 2400, seed: int = 7):
    """Consent records, opt-out replies and a campaign file; returns (csv bytes, expected reasons per row)."""
    rng = random.Random(seed)
    cn = [f"1380013{i:04d}" for i in range(n_cn)]
    uk = [f"+4479111{i:05d}" for i in range(40)]
    consent_time = datetime(2026, 6, 1, tzinfo=UTC)
    consented, opted_out, dnd = set(), set(), set()
    for i, number in enumerate(cn):
        if i % 5 < 3:  # 60% gave consent on the web form
            ledger.record_opt_in("default", "京东", number, source="web:jd.com/join", disclosure="同意接收京东营销短信",
                                 campaign="会员招募", time=consent_time + timedelta(minutes=i))
            consented.add(number)
    for number in uk:
        ledger.record_opt_in("default", "京东", number, source="shop:London", disclosure="I agree to JD offers",
                             time=consent_time)
        consented.add(number)
    # Replies: real opt-outs in many spellings, some attributed by the last send from the sending number.
    keywords = ["退订", "TD", "ＴＤ", "t", "STOP", "拒收。", "取消", "Unsubscribe", "【退订】"]
    lookalikes = ["不要退订", "T恤还有吗", "Don't stop", "how do I stop my card being charged", "取消订单"]
    sends = []
    for i, number in enumerate(sorted(consented)):
        if i % 10 == 0:
            sends.append(("default", "京东", "10690001", ledger.pseudonym(number), "promotion",
                          datetime(2026, 11, 1, tzinfo=UTC).timestamp()))
    ledger.record_sends(sends)
    reply_time = datetime(2026, 11, 2, tzinfo=UTC)
    for i, number in enumerate(sorted(consented)):
        if i % 10 == 0:
            out = handle_reply(ledger, POLICY, text=keywords[i % len(keywords)], recipient=number, sender="10690001",
                               signature=None if i % 20 == 0 else "京东", time=reply_time)
            assert out.opt_out and out.scope == "京东"
            opted_out.add(number)
        elif i % 10 == 5:
            out = handle_reply(ledger, POLICY, text=lookalikes[i % len(lookalikes)], recipient=number,
                               sender="10690001", time=reply_time)
            assert not out.opt_out
    # Some who opted out come back with new explicit consent.
    for number in sorted(opted_out)[::4]:
        ledger.record_opt_in("default", "京东", number, source="app:settings", disclosure="重新订阅京东营销短信",
                             time=reply_time + timedelta(days=3))
        opted_out.discard(number)
    for i, number in enumerate(cn):
        if i % 50 == 7:
            dnd.add(number)
    ledger.add_dnd(sorted(dnd), source="regulator list")

    rows = []  # (values, kind)
    day = datetime(2026, 11, 25, tzinfo=SH)
    for i, number in enumerate(cn):
        at = day.replace(hour=10) + timedelta(seconds=i)
        if i % 17 == 0:
            at = day.replace(hour=21)  # 21:00 local: quiet
        elif i % 17 == 1:
            at = day.replace(hour=20, minute=59)
        rows.append(({"recipient": number, "template": JD, "variables": json.dumps({"name": f"会员{i}"}),
                      "send_at": at.isoformat(), "sender": "10690001"}, "jd"))
        if i % 23 == 0:  # a second JD promotion the same day: over 1 / 1d when the first went out
            rows.append(({"recipient": number, "template": JD, "variables": f"name=会员{i}",
                          "send_at": day.replace(hour=15).isoformat(), "sender": "10690001"}, "jd"))
    for j, number in enumerate(uk):
        at = datetime(2026, 11, 25, 20, 59 if j % 2 else 21, tzinfo=UTC)  # London is UTC+0 in November
        rows.append(({"recipient": number, "template": JD, "variables": json.dumps({"name": "Alex"}),
                      "send_at": at.isoformat(), "sender": "10690001"}, "jd"))
    for k, number in enumerate(cn[:300]):
        at = day.replace(hour=9) + timedelta(minutes=k)
        rows.append(({"recipient": number, "template": CODE, "category": "verification",
                      "variables": json.dumps({"code": f"{rng.randrange(10**6):06d}"}), "send_at": at.isoformat(),
                      "sender": "95555"}, "code"))
        if k % 10 == 0:
            rows.append(({"recipient": number, "template": CODE, "category": "verification",
                          "variables": json.dumps({"code": "111111"}),
                          "send_at": (at + timedelta(seconds=30)).isoformat(), "sender": "95555"}, "code"))
    for number in cn[:30]:
        rows.append(({"recipient": number, "template": TB, "variables": "name=亲", "category": "promotion",
                      "send_at": day.replace(hour=11).isoformat(), "sender": "10690002"}, "tb"))
    for number in cn[30:40]:
        rows.append(({"recipient": number, "template": LOAN, "send_at": day.replace(hour=11).isoformat(),
                      "category": "promotion", "sender": "10690003"}, "loan"))
    rng.shuffle(rows)
    lines = [",".join(HEADER) + "\n"]
    line_of = {}
    for values, kind in rows:
        line_of[len(lines) + 1] = (values, kind)
        lines.append(csv_line(values))
    malformed = {
        "12345x,hello,,,,,": "not a phone number",
        f"13800139999,{JD},,,name=x,tomorrow,10690001": "ISO 8601",
        "13800139998,too,few": "3 fields",
        f"13800139997,{JD},,,,2026-11-25T10:00:00+08:00,10690001": "no value for variable 'name'",
        f'13800139996,"{CODE}",,verification,"{{not json",2026-11-25T10:00:00+08:00,95555': "variables",
    }
    bad_rows = {}
    for text, why in malformed.items():
        bad_rows[len(lines) + 1] = why
        lines.append(text + "\n")

    # Expected reasons, simulating the rules in send-time order.
    expected = {}
    delivered = defaultdict(list)  # (signature, recipient) -> delivered send times
    order = sorted(line_of.items(), key=lambda kv: (datetime.fromisoformat(kv[1][0]["send_at"]), kv[0]))
    for line, (values, kind) in order:
        number, at = values["recipient"], datetime.fromisoformat(values["send_at"])
        reasons = set()
        if kind in {"jd", "tb", "loan"}:
            signature = {"jd": "京东", "tb": "淘宝", "loan": "快贷"}[kind]
            if number in dnd:
                reasons.add("DND_LISTED")
            if signature != "京东" or number not in consented:
                reasons.add("NO_CONSENT")
            elif number in opted_out:
                reasons.add("OPTED_OUT")
            local = at.astimezone(ZoneInfo("Europe/London" if number.startswith("+44") else "Asia/Shanghai"))
            if not (8 <= local.hour < 21):
                reasons.add("QUIET_HOURS")
            window = timedelta(days=1)
        else:
            signature, window = "招商银行", timedelta(minutes=1)
        if any(at - t < window for t in delivered[(signature, number)]):
            reasons.add("FREQUENCY_CAP")
        if not reasons:
            delivered[(signature, number)].append(at)
        expected[line] = reasons
    return "".join(lines).encode("utf-8"), expected, bad_rows


@pytest.fixture
def ledger(tmp_path):
    led = ConsentLedger(tmp_path / "skyshield.db", b"k" * 32)
    yield led
    led.close()


def check_report(report, expected, bad_rows):
    assert len(report.sends) == len(expected) > 2500
    for send in report.sends:
        got = set(send.signals) & COMPLIANCE
        assert got == expected[send.row], (send.row, send.reasons)
        assert (send.action == Action.BLOCK.value) == bool(expected[send.row]), (send.row, send.action, send.reasons)
    assert [e.split(":")[0] for e in report.errors] == [f"row {n}" for n in sorted(bad_rows)]
    for err, why in zip(report.errors, (bad_rows[n] for n in sorted(bad_rows)), strict=True):
        assert why in err, err
    outcomes = {a.text: a.outcome for a in report.templates}
    assert outcomes == {JD: "pass", CODE: "pass", TB: "fix", LOAN: "reject"}
    assert report.outcome == "reject"


def test_campaign_audit_blocks_the_right_sends_for_the_right_reasons(ledger):
    data, expected, bad_rows = build_campaign(ledger)
    engine, _ = make_engine(POLICY, ledger)
    report = audit_campaign(data, policy=POLICY, engine=engine, ledger=ledger, source="campaign.csv")
    check_report(report, expected, bad_rows)
    counts = report.summary()
    assert counts["blocked_by"]["OPTED_OUT"] > 50 and counts["blocked_by"]["QUIET_HOURS"] > 100
    assert counts["blocked_by"]["FREQUENCY_CAP"] >= 30 and counts["blocked_by"]["DND_LISTED"] > 20
    assert ledger.recent_sends(datetime(2026, 11, 20, tzinfo=UTC).timestamp()) == []  # an audit sends nothing
    text = report.render()
    assert text.startswith("campaign.csv: REJECT") and "BANNED_INDUSTRY" in text and "MISSING_OPT_OUT" in text


def test_campaign_audit_with_the_shipped_engine(ledger):
    """The same campaign through the real engine (shipped text model, structure rules): same blocks, same reasons."""
    pytest.importorskip("skyshield.text.classify", reason="the shipped text model is not in the tree yet")
    from skyshield.assembly import build_engine

    try:
        engine = build_engine(POLICY)
    except FileNotFoundError as exc:
        pytest.skip(f"the shipped text model is not built yet: {exc}")
    data, expected, bad_rows = build_campaign(ledger)
    report = audit_campaign(data, policy=POLICY, engine=engine, ledger=ledger, source="campaign.csv")
    check_report(report, expected, bad_rows)


def test_live_engine_gives_the_same_blocks(ledger):
    """The same sends through the live engine, in time order, settling each batch as an ingress would."""
    data, expected, _ = build_campaign(ledger, n_cn=600)
    engine, detector = make_engine(POLICY, ledger)
    dry = audit_campaign(data, policy=POLICY, engine=engine, ledger=ledger)
    # Rebuild the messages the audit built and send them live in time order, 500 at a time.
    import csv
    import io

    from skyshield.compliance.campaign import _row_send
    from skyshield.compliance.templates import TemplateRegistry

    reader = list(csv.reader(io.StringIO(data.decode())))
    sends = [_row_send(dict(zip(reader[0], r, strict=True)), n + 2, "default", "CN", TemplateRegistry(ledger, POLICY),
                       {}, ledger) for n, r in enumerate(reader[1:]) if n + 2 in expected]
    sends.sort(key=lambda s: (s.message.time, s.row))
    live = {}
    for start in range(0, len(sends), 500):
        chunk = sends[start:start + 500]
        extra = {"batch": start}
        verdicts = engine.check([s.message for s in chunk], extra)
        detector.settle(BatchContext([s.message for s in chunk], [], [], extra), verdicts)
        live.update({s.row: v for s, v in zip(chunk, verdicts, strict=True)})
    read_as_fraud = 0
    for send in dry.sends:
        verdict = live[send.row]
        if verdict.category == Category.FRAUD and send.action == "block":
            # The campaign file declares the 【快贷】 loan ad a promotion, so the audit applies the consent rules;
            # live traffic carries no declaration and the model reads the ad as loan fraud (the 6-class corpus
            # labels such ads 贷款诈骗), and this compliance-only engine gives it the policy's fraud floor: it
            # leaves the inbox (fold), and the full engine's model signal takes it further (test_engine.py).
            read_as_fraud += 1
            assert verdict.subtype == "loan" and verdict.action.severity >= Action.FOLD.severity, verdict
            continue
        assert verdict.action.value == send.action, (send, verdict.category, [s.name for s in verdict.signals])
        assert {s.name for s in live[send.row].signals} & COMPLIANCE == expected[send.row]
    assert read_as_fraud <= 20, "only the loan-ad template may differ between audit and live"
    delivered = sum(1 for v in live.values() if v.action != Action.BLOCK and v.category != Category.FRAUD)
    # every lawful-looking send that went out, and only those, is in the send log that caps and reply
    # attribution read (a send read as fraud is no sender's traffic to cap)
    assert len(ledger.recent_sends(datetime(2026, 11, 20, tzinfo=UTC).timestamp())) == delivered


def test_cli_audit_and_consent_commands(tmp_path, monkeypatch, capsys, db):
    from skyshield import cli

    ledger = ConsentLedger.from_settings(load_settings(db))
    data, expected, bad_rows = build_campaign(ledger, n_cn=300)
    engine, _ = make_engine(POLICY, ledger)
    monkeypatch.setattr("skyshield.assembly.build_engine", lambda policy=None: engine)
    path = tmp_path / "campaign.csv"
    path.write_bytes(data)
    assert cli.main(["audit", str(path), "--db", db]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: REJECT") and f"{len(bad_rows)} malformed row(s)" in out
    kept = tmp_path / "deliverable.csv"
    assert cli.main(["audit", str(path), "--db", db, "--deliverable", str(kept)]) == 1
    capsys.readouterr()
    import csv

    with kept.open(encoding="utf-8", newline="") as f:
        kept_rows = list(csv.reader(f))
    assert kept_rows[0] == HEADER and len(kept_rows) - 1 == sum(1 for why in expected.values() if not why)
    assert cli.main(["audit", str(path), "--db", db, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["sends"] == len(expected)
    assert {r["row"]: r["action"] == "block" for r in report["send_results"]} == {
        n: bool(why) for n, why in expected.items()}

    assert cli.main(["reply", "ＳＴＯＰ！", "--from", "13900139000", "--to", "10690001", "--signature", "京东",
                     "--db", db]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["opt_out"] and first["confirmation"]
    assert cli.main(["reply", "Don't stop", "--from", "13900139000", "--to", "10690001", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["opt_out"] is False

    imp = tmp_path / "consents.csv"
    imp.write_text("recipient,status,signature,source,disclosure\n13900139001,opt_in,京东,web,同意\n"
                   "13900139002,opt_in,京东,web,\n", encoding="utf-8")
    assert cli.main(["consent", "import", str(imp), "--db", db]) == 1  # one row refused
    captured = capsys.readouterr()
    assert "imported 1 record(s)" in captured.out and "row 3:" in captured.err
    exported = tmp_path / "out.jsonl"
    assert cli.main(["consent", "export", "--format", "jsonl", "--out", str(exported), "--db", db]) == 0
    records = [json.loads(line) for line in exported.read_text("utf-8").splitlines()]
    assert any(r["status"] == "opt_out" and r["evidence"]["keyword"] == "STOP" for r in records)
    assert not any("13900139001" in json.dumps(r) for r in records)  # pseudonymised
    ledger.close()


def test_single_templates_from_text_and_jsonl(tmp_path, monkeypatch, capsys):
    from skyshield import cli

    ledger = ConsentLedger(tmp_path / "t.db", b"k" * 32)
    engine, _ = make_engine(POLICY, ledger)
    monkeypatch.setattr("skyshield.assembly.build_engine", lambda policy=None: engine)
    assert cli.main(["audit", "--text", "【京东】双11全场5折 回T退订"]) == 0
    assert "[pass]" in capsys.readouterr().out
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"text": CODE, "variables": {"code": "code"}}, ensure_ascii=False) + "\n"
                 + json.dumps({"text": "hi", "colour": 1}) + "\n", encoding="utf-8")
    assert cli.main(["audit", str(f)]) == 2
    assert "t.jsonl:2: unknown field(s) colour" in capsys.readouterr().err
    ledger.close()


def test_campaign_file_errors_and_encodings(ledger):
    engine, _ = make_engine(POLICY, ledger)

    def run(data: bytes):
        return audit_campaign(data, policy=POLICY, engine=engine, ledger=ledger, source="f.csv")

    with pytest.raises(CampaignFileError, match="unknown column.*sendat"):
        run(b"recipient,template,sendat\n13800138000,x,2026-01-01\n")
    with pytest.raises(CampaignFileError, match="empty file"):
        run(b"")
    with pytest.raises(CampaignFileError, match="recipient column"):
        run(b"template\nx\n")
    # GB18030 (common from Chinese spreadsheets) is read as such
    gb = f"recipient,template,send_at\n13800138000,{JD.replace('{name}', '张三')},2026-11-25T10:00+08:00\n"
    report = run(gb.encode("gb18030"))
    assert report.encoding == "gb18030" and len(report.sends) == 1 and not report.errors
    # rows with bytes that are neither UTF-8 nor GB18030 are reported; the others still run
    broken = (b"recipient,template,send_at\n" + b"13800138000,\xff\xfe\x80\x80,2026-11-25T10:00+08:00\n"
              + f"13800138001,{JD.replace('{name}', '李四')},2026-11-25T10:00+08:00\n".encode())
    report = run(broken)
    assert [e.split(":")[0] for e in report.errors] == ["row 2"] and "UTF-8" in report.errors[0]
    assert [s.row for s in report.sends] == [3]
    # NUL bytes and a BOM
    report = run("\ufeffrecipient,template\n13800138000,a\x00b\n13800138001,【京东】您的订单已发货\n".encode())
    assert [s.row for s in report.sends] == [3] and report.errors[0].startswith("row 2")
    assert set(COLUMNS) >= set(HEADER)


def test_api_consents_replies_templates_and_campaign(tmp_path, ledger):
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app

    settings = load_settings(f"sqlite:///{tmp_path / 'skyshield.db'}", key_file=tmp_path / "api.key")
    engine, detector = make_engine(POLICY, None)
    with TestClient(create_app(POLICY, settings, engine=engine)) as client:
        r = client.post("/v1/consents", json={"records": [
            {"recipient": "13800138000", "signature": "京东", "source": "web", "disclosure": "同意接收营销短信",
             "time": "2026-06-01T00:00:00Z"},
            {"recipient": "13800138001", "signature": "京东", "source": "web"}]})
        assert r.status_code == 422
        results = r.json()["results"]
        assert results[0]["record"]["status"] == "opt_in" and "disclosure" in results[1]["error"]["message"]
        assert client.post("/v1/consents", json={"records": [{"recipient": "1", "signature": "x", "bogus": 1}]}
                           ).status_code == 422

        promo = {"text": "【京东】双11全场5折 回T退订", "sender": "10690001", "time": "2026-11-25T02:00:00Z"}
        check = client.post("/v1/messages:check", json={"messages": [
            {**promo, "recipient": "13800138000"}, {**promo, "recipient": "13800138002"}]})
        assert check.status_code == 200, check.text
        actions = [res["action"] for res in check.json()["results"]]
        assert actions == ["tag", "block"]

        r = client.post("/v1/replies", json={"text": "退订", "from": "13800138000", "to": "10690001"})
        assert r.status_code == 200 and r.json()["opt_out"] and r.json()["scope"] == "京东"  # from the send above
        assert r.json()["confirmation"].startswith("【京东】")
        again = client.post("/v1/replies", json={"text": "TD", "from": "13800138000", "to": "10690001"}).json()
        assert again["opt_out"] and again["confirmation"] is None
        assert not client.post("/v1/replies", json={"text": "T恤还有吗", "from": "13800138000", "to": "10690001"}
                               ).json()["opt_out"]
        later = client.post("/v1/messages:check", json={"messages": [
            {**promo, "recipient": "13800138000", "time": "2026-11-27T02:00:00Z"}]}).json()["results"][0]
        assert later["action"] == "block" and any("OPTED_OUT" in reason for reason in later["reasons"])

        exported = client.get("/v1/consents", params={"format": "csv"})
        assert exported.status_code == 200 and exported.text.count("opt_out") == 2
        assert "13800138000" not in exported.text

        audit = client.post("/v1/templates:audit", json={"templates": [{"text": "【京东】双11全场5折"}]}).json()
        assert audit["outcome"] == "fix" and audit["templates"][0]["findings"][0]["code"] == "MISSING_OPT_OUT"
        reg = client.post("/v1/templates", json={"text": CODE, "variables": {"code": "code"},
                                                 "category": "verification", "tenant": "bank"})
        assert reg.status_code == 201 and reg.json()["approved"]
        code = client.post("/v1/messages:check", json={"messages": [
            {"text": "【招商银行】您的验证码是123456，5分钟内有效。", "recipient": "13800138009", "tenant": "bank"},
            {"text": "【招商银行】验证码123456，请点 www.x.top", "recipient": "13800138008", "tenant": "bank"}]})
        reasons = [res["reasons"] for res in code.json()["results"]]
        assert any("TEMPLATE_MATCHED" in x for x in reasons[0]) and any("TEMPLATE_UNMATCHED" in x for x in reasons[1])

        campaign = (",".join(HEADER) + "\n" + csv_line({"recipient": "13800138000", "template": JD,
                                                         "variables": "name=张三",
                                                         "send_at": "2026-11-25T10:00:00+08:00"})).encode()
        r = client.post("/v1/templates:audit", content=campaign, headers={"content-type": "text/csv"})
        assert r.status_code == 200 and r.json()["send_results"][0]["action"] == "block"
        bad = client.post("/v1/templates:audit", content=b"recipient,nope\n1,2\n", headers={"content-type": "text/csv"})
        assert bad.status_code == 422 and "nope" in bad.json()["error"]["message"]


def test_consent_ref_is_checked_against_the_ledger(ledger):
    engine, _ = make_engine(POLICY, ledger)
    mine = ledger.record_opt_in("default", "京东", "13800138000", source="web", disclosure="同意",
                                time="2026-06-01T00:00Z")
    other = ledger.record_opt_in("default", "京东", "13800138001", source="web", disclosure="同意",
                                 time="2026-06-01T00:00Z")
    rows = "".join(f"13800138000,【京东】双11全场5折 回T退订,2026-11-25T10:00+08:00,{ref}\n"
                   for ref in (mine.id, other.id, "abc", 999))
    report = audit_campaign(f"recipient,template,send_at,consent_ref\n{rows}".encode(), policy=POLICY,
                            engine=engine, ledger=ledger)
    notes = [s.notes for s in report.sends]
    assert notes[0] == [] and "not a consent record of this recipient" in notes[1][0]
    assert "not a record id" in notes[2][0] and "not a consent record" in notes[3][0]


def test_cli_template_add_registers_and_matching_uses_it(tmp_path, monkeypatch, capsys, db):
    from skyshield import cli

    ledger = ConsentLedger.from_settings(load_settings(db))
    engine, _ = make_engine(POLICY, ledger)
    monkeypatch.setattr("skyshield.assembly.build_engine", lambda policy=None: engine)
    assert cli.main(["template", "add", CODE, "--var", "code=code", "--category", "verification", "--tenant", "bank",
                     "--db", db]) == 0
    assert capsys.readouterr().out.startswith("template 1 approved: verification, signature 招商银行")
    assert cli.main(["template", "add", "【京东】大促 t.cn/x", "--tenant", "bank", "--db", db]) == 1
    assert "not approved (fix)" in capsys.readouterr().out
    assert cli.main(["template", "add", CODE, "--var", "code", "--db", db]) == 2
    assert "NAME=KIND" in capsys.readouterr().err
    from skyshield.compliance.templates import TemplateRegistry

    registry = TemplateRegistry(ledger, POLICY)
    assert registry.match("bank", "【招商银行】您的验证码是 908172，5分钟内有效。").id == 1
    assert registry.count("bank") == 1
    ledger.close()


def test_with_the_shipped_engine(tmp_path, monkeypatch):
    """The real build_engine (shipped text model, structure rules, compliance): a clear promotion to a recipient
    without consent is blocked for it, and with consent it is not blocked by compliance."""
    pytest.importorskip("skyshield.text.classify", reason="the shipped text model is not in the tree yet")
    monkeypatch.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path / 'real.db'}")
    from skyshield.assembly import build_engine
    from skyshield.events import Message

    ConsentLedger.from_settings().close()  # the database exists, as after `skyshield consent import`

    try:
        engine = build_engine(POLICY)
    except FileNotFoundError as exc:
        pytest.skip(f"the shipped text model is not built yet: {exc}")
    detector = next(d for d in engine.detectors if d.name == "compliance")
    assert detector.ledger.path == str(tmp_path / "real.db")
    detector.ledger.record_opt_in("default", "京东", "13800138001", source="web", disclosure="同意接收营销短信",
                                  time="2026-06-01T00:00Z")
    text = "【京东】双11狂欢，全场商品5折起，满299减50，详情 jd.com/sale 回T退订"
    t = datetime(2026, 11, 25, 2, tzinfo=UTC)  # 10:00 in Shanghai
    no, yes, night = engine.check([Message(text, "10690001", "13800138000", t),
                                   Message(text, "10690001", "13800138001", t),
                                   Message(text, "10690001", "13800138001", t + timedelta(hours=13))])
    assert no.category.value == "promotion", no.probabilities
    assert no.action == Action.BLOCK and "NO_CONSENT" in {s.name for s in no.signals}
    assert not COMPLIANCE & {s.name for s in yes.signals} and yes.action != Action.BLOCK
    assert night.action == Action.BLOCK and "QUIET_HOURS" in {s.name for s in night.signals}


def test_an_engine_without_a_database_leaves_no_files(tmp_path, monkeypatch):
    """Scripts and tests that build an engine with no database configured get an in-memory ledger."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKYSHIELD_DB", raising=False)
    monkeypatch.delenv("SKYSHIELD_KEY_FILE", raising=False)
    from compliance_helpers import shipped_model
    from skyshield.compliance.detector import ComplianceDetector
    from skyshield.engine import Engine
    from skyshield.events import Message
    from skyshield.text.extract import analyse_batch

    engine = Engine(POLICY, analyse_batch, shipped_model(), [ComplianceDetector(POLICY)])
    verdict = engine.check_one(Message("【京东】双11全场5折 回T退订", "1069", "13800138000",
                                       datetime(2026, 11, 25, 2, tzinfo=UTC)))
    assert "NO_CONSENT" in {s.name for s in verdict.signals}
    assert list(tmp_path.iterdir()) == []
