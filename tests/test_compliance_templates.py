"""Template pre-audit findings, and matching live sends to approved templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compliance_helpers import make_engine, open_ledger, shipped_model
from skyshield.compliance.templates import Auditor, TemplateRegistry, compile_template
from skyshield.events import Message
from skyshield.policy import Policy
from skyshield.text.extract import analyse_batch

POLICY = Policy.load()
AUDITOR = Auditor(POLICY, analyse_batch, shipped_model())


def audit(text, **kw):
    return AUDITOR.audit([{"text": text, **kw}])[0]


def codes(result):
    return {f.code: f.severity for f in result.findings}


@pytest.mark.parametrize(("text", "kw", "outcome", "expected"), [
    ("【京东】双11大促，全场5折起，详情 jd.com/s 回T退订", {}, "pass", {}),
    ("【招商银行】您的验证码是${code}，5分钟内有效。", {"variables": {"code": "code"}}, "pass", {}),
    ("双11大促，全场5折起 回T退订", {}, "fix", {"MISSING_SIGNATURE": "fix"}),
    ("【京东】双11大促，全场5折起", {}, "fix", {"MISSING_OPT_OUT": "fix"}),
    ("【京东】双11大促，全场5折 t.cn/Ab12 回T退订", {}, "fix", {"SHORT_LINK": "fix"}),
    ("【某银行】您的验证码是${code}，登录 https://bank-verify.com 查看", {"variables": {"code": "code"}}, "reject",
     {"LINK_IN_CODE_TEMPLATE": "reject"}),
    ("【某某】您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查", {}, "reject",
     {"FRAUD_LIKE": "reject"}),
    # The model reads this short one as a bank alert (see the model card); the fraud-phrase rule catches it.
    ("【某某】您的账户涉嫌洗钱已被冻结，请转入安全账户", {}, "reject", {"FRAUD_PHRASE": "reject"}),
    ("【某某】刷 单 返 利，日赚三百", {}, "reject", {"FRAUD_PHRASE": "reject"}),
    ("【快贷】无抵押贷款，当天下款，优惠利率 回T退订", {}, "reject", {"BANNED_INDUSTRY": "reject"}),
    ("【京东】{name}您好，双11专属优惠 回T退订", {}, "fix", {"VARIABLE_UNDECLARED": "fix"}),
    ("【京东】双11专属{offer}优惠 回T退订", {"variables": {"offer": "text"}}, "fix", {"VARIABLE_NOT_ALLOWED": "fix"}),
    ("【京东】会员日优惠 https://jd.com/${path} 回T退订", {"variables": {"path": "name"}}, "reject",
     {"VARIABLE_IN_LINK": "reject"}),
    ("【京东】${body}", {"variables": {"body": "text"}, "category": "notification"}, "reject",
     {"TEMPLATE_TOO_OPEN": "reject"}),
    ("【京东】您的订单已发货", {"category": "notification", "variables": {"x": "code"}}, "fix",
     {"VARIABLE_UNUSED": "fix"}),
    ("【京东】会员日全场5折 回T退订", {"category": "notification"}, "fix", {"CATEGORY_MISMATCH": "fix"}),
])
def test_audit_findings(text, kw, outcome, expected):
    result = audit(text, **kw)
    assert result.outcome == outcome, result.findings
    for code, severity in expected.items():
        assert codes(result).get(code) == severity, result.findings


def test_english_template_with_reply_stop_passes():
    assert audit("[Tesco] Big sale today, 20% off everything. Reply STOP to opt out").outcome == "pass"


def test_signature_filed_must_match_the_one_written():
    assert "SIGNATURE_MISMATCH" in codes(audit("【淘宝】您的订单已发货", signature="京东", category="notification"))


def test_compiled_template_matches_filled_variables_only():
    rx = compile_template("【招商银行】您的验证码是${code}，{name}请在{n}分钟内使用。", {"code": "code", "name": "name",
                                                                                 "n": "number"})
    assert rx.fullmatch("【招商银行】您的验证码是482913,张三请在5分钟内使用。")  # full-width comma compares equal
    assert not rx.fullmatch("【招商银行】您的验证码是48 29 13，张三请在5分钟内使用。")
    assert not rx.fullmatch("【招商银行】您的验证码是482913，张三请在五分钟内使用。")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    with open_ledger(request.param, tmp_path) as led:
        yield led


def test_live_sends_are_matched_to_approved_templates(ledger):
    registry = TemplateRegistry(ledger, POLICY)
    ok = audit("【招商银行】您的验证码是${code}，5分钟内有效。", variables={"code": "code"})
    bad = audit("【招商银行】验证码${code}，点击 https://x.top 登录", variables={"code": "code"})
    ok_id = registry.register("bank", ok)
    registry.register("bank", bad)  # registered, not approved
    engine, _ = make_engine(POLICY, ledger, templates=registry)
    t = datetime(2026, 11, 23, 2, tzinfo=UTC)
    matched, unmatched, other_tenant = engine.check([
        Message("【招商银行】您的验证码是 482913，5分钟内有效。", "95555", "13800138000", t, tenant="bank"),
        Message("【招商银行】验证码482914，点击 https://x.top 登录", "95555", "13800138001", t, tenant="bank"),
        Message("【招商银行】您的验证码是482915", "95555", "13800138002", t, tenant="shop"),
    ])
    sig = {s.name: s for s in matched.signals}
    assert sig["TEMPLATE_MATCHED"].evidence["template"] == ok_id
    assert "TEMPLATE_UNMATCHED" in {s.name for s in unmatched.signals}
    assert not {"TEMPLATE_MATCHED", "TEMPLATE_UNMATCHED"} & {s.name for s in other_tenant.signals}
    # a variable filled with a link or with too much text does not match
    assert registry.match("bank", "【招商银行】您的验证码是abcd1234，5分钟内有效。") is not None
    assert registry.match("bank", "【招商银行】您的验证码是www.x，5分钟内有效。") is None
