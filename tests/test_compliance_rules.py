"""Consent, DND, quiet hours and frequency caps as the engine applies them to live sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance_helpers import make_engine, open_ledger
from skyshield.compliance.quiet_hours import QuietHours, zones_for_number
from skyshield.engine import BatchContext
from skyshield.events import Action, Message
from skyshield.policy import Policy

POLICY = Policy.load()
PROMO = "【京东】双11大促，全场5折起 回T退订"
CODE = "【招商银行】您的验证码是{}，5分钟内有效。"
SH = timedelta(hours=8)  # Asia/Shanghai has no DST


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    with open_ledger(request.param, tmp_path) as led:
        yield led


def names(verdict):
    return {s.name for s in verdict.signals}


def consent(ledger, number, signature="京东", when=datetime(2026, 1, 1, tzinfo=UTC)):
    return ledger.record_opt_in("default", signature, number, source="web", disclosure="同意接收营销短信", time=when)


def test_marketing_without_consent_is_refused_and_with_consent_is_tagged(ledger):
    engine, _ = make_engine(POLICY, ledger)
    record = consent(ledger, "13800138001")
    t = datetime(2026, 11, 23, 10, 0, tzinfo=UTC) - SH
    no, yes = engine.check([Message(PROMO, "1069", "13800138000", t), Message(PROMO, "1069", "13800138001", t)])
    assert no.action == Action.BLOCK and "NO_CONSENT" in names(no)
    assert "no clear consent counts as refusal" in " ".join(no.reasons())
    assert yes.action == Action.TAG and "CONSENT_ON_RECORD" in names(yes)
    assert next(s for s in yes.signals if s.name == "CONSENT_ON_RECORD").evidence["record"] == record.id


def test_consent_for_one_signature_does_not_cover_another(ledger):
    engine, _ = make_engine(POLICY, ledger)
    consent(ledger, "13800138000", "淘宝")
    v = engine.check_one(Message(PROMO, "1069", "13800138000", datetime(2026, 11, 23, 2, tzinfo=UTC)))
    assert "NO_CONSENT" in names(v)


def test_opted_out_and_dnd_listed_recipients_are_blocked_with_the_record(ledger):
    engine, _ = make_engine(POLICY, ledger)
    consent(ledger, "13800138000")
    consent(ledger, "13800138002")
    out, _ = ledger.record_opt_out("default", "京东", "13800138000", time=datetime(2026, 2, 1, tzinfo=UTC),
                                   evidence={"keyword": "TD"})
    ledger.add_dnd(["+86 138 0013 8002"])
    t = datetime(2026, 11, 23, 3, tzinfo=UTC)
    a, b = engine.check([Message(PROMO, "1069", "13800138000", t), Message(PROMO, "1069", "13800138002", t)])
    assert a.action == Action.BLOCK
    opted = next(s for s in a.signals if s.name == "OPTED_OUT")
    assert opted.evidence["record"] == out.id and opted.evidence["keyword"] == "TD"
    assert b.action == Action.BLOCK and "DND_LISTED" in names(b)


def test_opt_out_under_the_sending_number_blocks_until_newer_consent(ledger):
    engine, _ = make_engine(POLICY, ledger)
    ledger.record_opt_out("default", "sender:1069", "13800138000", time=datetime(2026, 3, 1, tzinfo=UTC))
    t = datetime(2026, 11, 23, 3, tzinfo=UTC)
    assert "OPTED_OUT" in names(engine.check_one(Message(PROMO, "1069", "13800138000", t)))
    consent(ledger, "13800138000", when=datetime(2026, 4, 1, tzinfo=UTC))
    assert "OPTED_OUT" not in names(engine.check_one(Message(PROMO, "1069", "13800138000", t + timedelta(days=2))))


@pytest.mark.parametrize(("local", "quiet"), [("07:59", True), ("08:00", False), ("20:59", False), ("21:00", True),
                                              ("23:30", True), ("03:00", True)])
def test_quiet_hours_edges_in_shanghai(ledger, local, quiet):
    engine, _ = make_engine(POLICY, ledger)
    consent(ledger, "13800138000")
    h, m = map(int, local.split(":"))
    t = datetime(2026, 11, 23, h, m, tzinfo=UTC) - SH
    v = engine.check_one(Message(PROMO, "1069", "13800138000", t))
    assert ("QUIET_HOURS" in names(v)) is quiet
    if quiet:
        ev = next(s for s in v.signals if s.name == "QUIET_HOURS").evidence
        assert ev["zone"] == "Asia/Shanghai" and ev["local_time"] == local and ev["allowed"] == "08:00-21:00"


def test_quiet_hours_for_a_uk_recipient_follow_london_time_and_its_summer_time(ledger):
    engine, _ = make_engine(POLICY, ledger)
    uk = "+447911123456"
    consent(ledger, uk)
    # November: London is UTC+0. 20:59 UTC is fine in London, though 04:59 next day in Shanghai.
    winter = [engine.check_one(Message(PROMO, "1069", uk, datetime(2026, 11, 23, 20, m, tzinfo=UTC))) for m in (59,)]
    assert "QUIET_HOURS" not in names(winter[0])
    v = engine.check_one(Message(PROMO, "1069", uk, datetime(2026, 11, 23, 21, 0, tzinfo=UTC)))
    assert "QUIET_HOURS" in names(v)
    assert next(s for s in v.signals if s.name == "QUIET_HOURS").evidence["zone"] == "Europe/London"
    # July: London is UTC+1, so 20:00 UTC is already 21:00 there.
    summer = engine.check_one(Message(PROMO, "1069", uk, datetime(2026, 7, 1, 20, 0, tzinfo=UTC)))
    assert "QUIET_HOURS" in names(summer)


def test_zone_given_with_the_send_overrides_the_number():
    quiet = QuietHours()
    t = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 Shanghai, 09:00 New York
    assert not quiet.check(t, "13800138000").allowed
    assert quiet.check(t, "13800138000", "America/New_York").allowed
    with pytest.raises(ValueError, match="unknown time zone"):
        quiet.check(t, "13800138000", "Mars/Olympus")
    assert zones_for_number("13800138000") == ("Asia/Shanghai",)
    assert zones_for_number("+18005551234") == ("America/New_York",)  # toll-free: the region's main zone


def test_one_time_code_caps_slide(ledger):
    engine, detector = make_engine(POLICY, ledger)
    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

    def send(seconds, recipient="13800138000"):
        msgs = [Message(CODE.format(100000 + seconds), "95555", recipient, t0 + timedelta(seconds=seconds))]
        extra = {"x": 1}
        v = engine.check(msgs, extra)
        detector.settle(BatchContext(msgs, [], [], extra), v)
        return v[0]

    assert send(0).action == Action.DELIVER
    blocked = send(59)  # 1 / 1m: the window is (t-60s, t]
    assert blocked.action == Action.BLOCK
    ev = next(s for s in blocked.signals if s.name == "FREQUENCY_CAP").evidence
    assert (ev["rate"], ev["count"], ev["limit"], ev["window"]) == ("1 / 1m", 1, 1, "1m")
    assert send(60).action == Action.DELIVER  # the blocked one did not count
    for k in range(2, 5):
        assert send(60 * k).action == Action.DELIVER
    sixth = send(300)  # 5 sends in the hour already
    assert next(s for s in sixth.signals if s.name == "FREQUENCY_CAP").evidence["rate"] == "5 / 1h"
    assert send(3600).action == Action.DELIVER  # the 00:00 send left the hour window: 5 / 1h holds again
    assert send(0, "13800138009").action == Action.DELIVER  # another recipient has their own counter


def test_platform_cap_counts_every_signature(ledger):
    engine, detector = make_engine(POLICY, ledger)
    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    msgs = [Message(f"【商户{n}】您的验证码是{100000 + n}。", f"106{n}", "13800138000", t0 + timedelta(minutes=n))
            for n in range(41)]
    verdicts = engine.check(msgs)
    assert all(v.action == Action.DELIVER for v in verdicts[:40])
    ev = next(s for s in verdicts[40].signals if s.name == "FREQUENCY_CAP").evidence
    assert ev["rate"] == "40 / 1d" and "platform" in ev["rule"]


def test_counters_survive_a_restart_from_the_ledger(ledger):
    engine, detector = make_engine(POLICY, ledger)
    now = datetime.now(UTC)
    msgs = [Message(CODE.format(123456), "95555", "13800138000", now)]
    extra = {"x": 1}
    detector.settle(BatchContext(msgs, [], [], extra), engine.check(msgs, extra))
    restarted, _ = make_engine(POLICY, ledger)
    again = restarted.check_one(Message(CODE.format(654321), "95555", "13800138000", now + timedelta(seconds=10)))
    assert "FREQUENCY_CAP" in names(again)


def test_only_sends_that_go_out_are_logged(ledger):
    engine, _ = make_engine(POLICY, ledger)
    t0 = datetime.now(UTC)
    msgs = [Message(CODE.format(100000 + n), "95555", "13800138000", t0 + timedelta(seconds=n)) for n in (0, 30)]
    verdicts = engine.check(msgs)  # the engine settles: the capped second send is not logged
    assert [v.action for v in verdicts] == [Action.DELIVER, Action.BLOCK]
    assert [row[5] for row in ledger.recent_sends(0)] == [msgs[0].time.timestamp()]


def test_answer_first_logs_the_sends_when_finished_and_still_caps_at_once(ledger):
    engine, _ = make_engine(POLICY, ledger)
    t0 = datetime.now(UTC)
    first, finish_first = engine.check_answer_first([Message(CODE.format(100000), "95555", "13800138000", t0)])
    assert first[0].action == Action.DELIVER and ledger.recent_sends(0) == []  # answered; the log waits
    # The cap counts the unlogged send already: the next code within the minute is blocked.
    second, finish_second = engine.check_answer_first(
        [Message(CODE.format(100001), "95555", "13800138000", t0 + timedelta(seconds=30))])
    assert second[0].action == Action.BLOCK
    finish_first()
    finish_second()
    assert [row[5] for row in ledger.recent_sends(0)] == [t0.timestamp()]


def test_dry_run_writes_nothing(ledger):
    engine, _ = make_engine(POLICY, ledger, dry_run=True)
    engine.check_one(Message(CODE.format(123456), "95555", "13800138000", datetime.now(UTC)))
    assert ledger.recent_sends(0) == []


def test_operator_policy_moves_the_window_and_the_caps(ledger):
    from skyshield.compliance.detector import ComplianceDetector
    from skyshield.policy import PolicyError

    policy = Policy.from_text('[detectors.compliance.quiet_hours]\nallowed = "09:00-20:00"\n'
                              '[detectors.compliance.caps]\nverification = ["2 / 1m"]\n'
                              '[detectors.compliance.consent]\nmissing = "allow"\n')
    engine, _ = make_engine(policy, ledger)
    t = datetime(2026, 11, 23, 8, 30, tzinfo=UTC) - SH
    promo = engine.check_one(Message(PROMO, "1069", "13800138000", t))
    assert names(promo) == {"QUIET_HOURS"}  # 08:30 is now too early; no consent is allowed by this operator
    codes = engine.check([Message(CODE.format(482910 + n), "95555", "13800138001", t) for n in range(3)])
    assert ["FREQUENCY_CAP" in names(v) for v in codes] == [False, False, True]
    for bad, match in (('allowed = "9-20"', "time window"), ('default_timezone = "Mars/Base"', "time zone")):
        with pytest.raises(PolicyError, match=match):
            ComplianceDetector(Policy.from_text(f"[detectors.compliance.quiet_hours]\n{bad}\n"), ledger)
    with pytest.raises(PolicyError, match="rate"):
        ComplianceDetector(Policy.from_text('[detectors.compliance.caps]\npromotion = ["lots"]\n'), ledger)
    with pytest.raises(PolicyError, match="unknown key"):
        Policy.from_text("[detectors.compliance.caps]\npersonal = []\n")
