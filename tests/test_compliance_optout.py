"""Opt-out replies: what counts (in any width, case and punctuation), what only looks like one, and what follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance_helpers import open_ledger
from skyshield.compliance.ledger import ConsentError
from skyshield.compliance.optout import handle_reply, parse_reply
from skyshield.policy import Policy

OPT_OUTS = ["退订", "TD", "td", "T", "t", "R", "N", "拒收", "取消", "STOP", "stop", "Stop.", "QUIT", "END",
            "REVOKE", "OPT OUT", "opt-out", "CANCEL", "UNSUBSCRIBE", "ARRET", "Arrêt", "ＴＤ", "ｓｔｏｐ！",
            "退订！！", "【退订】", " 退订。 ", "请退订，谢谢", "我要退订", "T退订", "STOP ALL", "Stop please",
            "退订🙏"]
NOT_OPT_OUTS = ["不要退订", "how do I stop my card being charged", "T恤还有吗", "Don't stop", "TEND", "取消订单",
                "谢谢", "stop 123", "no", "", "   ", "退订了吗?", "怎么退订", "do not unsubscribe me", "TD是什么意思",
                "STOPPED", "Tea", "好的"]


@pytest.mark.parametrize("text", OPT_OUTS)
def test_opt_out_keywords_in_any_width_case_and_punctuation(text):
    assert parse_reply(text).opt_out, text


@pytest.mark.parametrize("text", NOT_OPT_OUTS)
def test_replies_that_only_look_like_opt_outs_are_not(text):
    parsed = parse_reply(text)
    assert not parsed.opt_out, (text, parsed)
    assert parsed.why


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    with open_ledger(request.param, tmp_path) as led:
        yield led


POLICY = Policy.load()


def test_one_confirmation_per_opt_out_in_the_reply_language(ledger):
    first = handle_reply(ledger, POLICY, text="退订", recipient="13800138000", sender="10690001", signature="【京东】")
    assert first.opt_out and first.new
    assert first.confirmation.startswith("【京东】") and "退订" in first.confirmation
    again = handle_reply(ledger, POLICY, text="TD", recipient="+86 138 0013 8000", sender="10690001", signature="京东")
    assert again.opt_out and not again.new and again.confirmation is None
    english = handle_reply(ledger, POLICY, text="STOP", recipient="+447911123456", sender="TESCO", signature="Tesco")
    assert "unsubscribed" in english.confirmation


def test_not_an_opt_out_records_nothing(ledger):
    outcome = handle_reply(ledger, POLICY, text="不要退订", recipient="13800138000", sender="10690001",
                           signature="京东")
    assert not outcome.opt_out and outcome.record_id is None and outcome.confirmation is None
    assert list(ledger.records()) == []


def test_reply_is_attributed_to_the_signature_of_the_last_send_from_that_number(ledger):
    pseudo = ledger.pseudonym("13800138000")
    now = datetime.now(UTC).timestamp()
    ledger.record_sends([("default", "京东", "10690001", pseudo, "promotion", now - 60),
                         ("default", "淘宝", "10690002", pseudo, "promotion", now - 30)])
    outcome = handle_reply(ledger, POLICY, text="T", recipient="13800138000", sender="10690001")
    assert outcome.scope == "京东"
    unknown = handle_reply(ledger, POLICY, text="T", recipient="13800138000", sender="10699999")
    assert unknown.scope == "sender:10699999"  # no send known: filed under the number replied to


def test_re_consent_after_opt_out_needs_new_explicit_evidence(ledger):
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    ledger.record_opt_in("default", "京东", "13800138000", source="web:jd.com/signup", disclosure="同意接收营销短信",
                         time=t0)
    handle_reply(ledger, POLICY, text="退订", recipient="13800138000", sender="1069", signature="京东",
                 time=t0 + timedelta(days=10))
    with pytest.raises(ConsentError, match="opted out"):  # the old consent, re-submitted, does not undo it
        ledger.record_opt_in("default", "京东", "13800138000", source="web:jd.com/signup",
                             disclosure="同意接收营销短信", time=t0)
    with pytest.raises(ConsentError, match="disclosure"):
        ledger.record_opt_in("default", "京东", "13800138000", source="app", disclosure="",
                             time=t0 + timedelta(days=20))
    renewed = ledger.record_opt_in("default", "京东", "13800138000", source="app:settings",
                                   disclosure="重新订阅营销短信", time=t0 + timedelta(days=20))
    state = ledger.state("default", ["京东"], "13800138000")
    assert state.id == renewed.id and state.status == "opt_in"
