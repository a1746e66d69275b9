"""The structure detector: which signals a message gets, with evidence quoting the original text."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pytest

from skyshield.cli import main
from skyshield.engine import BatchContext, Engine
from skyshield.events import Action, Message, Signal
from skyshield.policy import Policy
from skyshield.text.analysis import TextAnalysis, TextPrediction
from skyshield.text.extract import analyse_batch
from skyshield.text.rules import StructureDetector


def prediction(category: str) -> TextPrediction:
    probs = {c: 0.0 for c in ("personal", "notification", "verification", "promotion", "fraud", "illicit")}
    probs[category] = 1.0
    unwanted = 1.0 if category in ("promotion", "fraud", "illicit") else 0.0
    return TextPrediction(category=category, subtype=None, probabilities=probs, unwanted=unwanted)


def signals_for(texts: Sequence[str], categories: Sequence[str] | None = None, policy: Policy | None = None):
    policy = policy or Policy.load()
    categories = categories or ["personal"] * len(texts)
    ctx = BatchContext(
        messages=[Message(text=t) for t in texts],
        analyses=analyse_batch(texts),
        predictions=[prediction(c) for c in categories],
    )
    return StructureDetector(policy).detect(ctx)


def by_name(signals: list[Signal]) -> dict[str, Signal]:
    return {s.name: s for s in signals}


def test_marketing_message_signals_and_evidence() -> None:
    text = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
    [sigs] = signals_for([text], ["promotion"])
    got = by_name(sigs)
    assert set(got) == {"SIGNATURE", "OPT_OUT_TEXT", "LINK", "SHORT_LINK"}
    assert got["SIGNATURE"].evidence["matched"] == ["某宝"]
    start, end = got["SHORT_LINK"].evidence["span"]
    assert text[start:end] == "t.cn/abc"
    assert got["SHORT_LINK"].evidence["domains"] == ["t.cn"]
    assert got["OPT_OUT_TEXT"].evidence["matched"] == ["回T退订"]
    assert all(s.evidence["why"] for s in sigs)


def test_promotion_without_opt_out() -> None:
    texts = ["【某店】全场5折起，点击 abc.top/x 抢购", "【某店】全场5折起，点击 abc.top/x 抢购，回T退订"]
    first, second = signals_for(texts, ["promotion", "promotion"])
    assert "PROMOTION_WITHOUT_OPT_OUT" in by_name(first)
    assert by_name(first)["PROMOTION_WITHOUT_OPT_OUT"].evidence["signature"] == "某店"
    assert "PROMOTION_WITHOUT_OPT_OUT" not in by_name(second)
    # not a promotion: no such signal even without opt-out text
    [personal] = signals_for(["明天一起吃饭吗"], ["personal"])
    assert personal == []


def test_fraud_style_message() -> None:
    text = "您的账户异常，请加 薇 信：ｘｙ８８８８ 或访问 http://1.2.3.4/login 领取5万元补偿"
    [sigs] = signals_for([text], ["fraud"])
    got = by_name(sigs)
    assert {"CHAT_ID", "IP_LINK", "AMOUNT"} <= set(got)
    assert got["CHAT_ID"].evidence["matched"] == ["加 薇 信：ｘｙ８８８８"]
    assert got["IP_LINK"].evidence["matched"] == ["http://1.2.3.4/login"]
    assert got["AMOUNT"].evidence["matched"] == ["5万元"]
    assert "SHORT_LINK" not in got and "LINK" not in got


def test_bank_alert_phone_kinds_and_code() -> None:
    texts = [
        "【招商银行】您尾号1234的卡消费1,999.00元，如有疑问请致电95555或400-820-5555",
        "【京东】您的验证码为846213，5分钟内有效",
    ]
    bank, code = signals_for(texts, ["notification", "verification"])
    phone = by_name(bank)["PHONE_NUMBER"]
    assert phone.evidence["matched"] == ["95555", "400-820-5555"]
    assert phone.evidence["kinds"] == ["service", "cn_400"]
    assert len(phone.evidence["spans"]) == 2
    assert by_name(code)["ONE_TIME_CODE"].evidence["matched"] == ["846213"]


def test_operator_short_link_list_is_used() -> None:
    policy = Policy.from_text('[detectors.structure]\nshort_link_domains = ["abc.top"]\n')
    [sigs] = signals_for(["点击 abc.top/x 或 t.cn/abc"], policy=policy)
    assert by_name(sigs)["SHORT_LINK"].evidence["matched"] == ["abc.top/x"]


def test_every_signal_has_a_weight_in_the_default_policy() -> None:
    policy = Policy.load()
    names = {"SIGNATURE", "OPT_OUT_TEXT", "LINK", "SHORT_LINK", "IP_LINK", "PHONE_NUMBER", "CHAT_ID", "AMOUNT",
             "ONE_TIME_CODE", "PROMOTION_WITHOUT_OPT_OUT"}
    assert names <= set(policy.section("signals"))


class _FixedModel:
    version = "test"

    def __init__(self, category: str):
        self.category = category

    def predict(self, analyses: Sequence[TextAnalysis]) -> list[TextPrediction]:
        return [prediction(self.category) for _ in analyses]


@pytest.mark.parametrize(
    ("text", "category", "action"),
    [
        # lawful marketing: signature + opt-out, tagged only
        ("【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订", "promotion", Action.TAG),
        # a personal message with no structure is delivered
        ("明天一起吃饭吗", "personal", Action.DELIVER),
    ],
)
def test_structure_signals_reach_a_verdict(text: str, category: str, action: Action) -> None:
    policy = Policy.load()
    engine = Engine(policy, analyse_batch, _FixedModel(category), [StructureDetector(policy)])
    verdict = engine.check_one(Message(text=text))
    assert verdict.action == action
    assert verdict.reasons() or action == Action.DELIVER


def test_analyse_command_prints_entities_and_signals(capsys, monkeypatch, tmp_path) -> None:
    assert main(["analyse", "【某宝】点击 abc.top/x 抢购，回T退订"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["normalised"] == "【某宝】点击 abc.top/x 抢购,回t退订"
    assert out["entities"]["signature"]["text"] == "某宝"
    assert {s["name"] for s in out["signals"]} == {"SIGNATURE", "LINK", "OPT_OUT_TEXT"}

    # one message per stdin line; the global --policy reaches the command
    policy = tmp_path / "policy.toml"
    policy.write_text('[detectors.structure]\nshort_link_domains = ["abc.top"]\n', encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("点击 abc.top/x\nReply STOP to opt out\n"))
    assert main(["--policy", str(policy), "analyse"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "SHORT_LINK" in {s["name"] for s in lines[0]["signals"]}
    assert lines[1]["entities"]["opt_out"]["text"] == "Reply STOP to opt out"


def test_fraud_phrases_fire_through_obfuscation_and_leave_bank_alerts_alone():
    from skyshield.assembly import build_engine
    from skyshield.events import Message

    engine = build_engine()
    texts = ["【某某】您的账户涉嫌洗钱已被冻结，请转入安 全 账 戶",  # spaced and traditional
             "【招商银行】您尾号1234的账户于11月20日转入人民币5,000.00元，余额8,210.55元。",
             "刷单返利，日赚300，加微信详聊"]
    verdicts = engine.check([Message(t) for t in texts])
    phrases = [next((s.evidence["matched"] for s in v.signals if s.name == "FRAUD_PHRASE"), None) for v in verdicts]
    assert phrases == [["安全账户"], None, ["刷单返利"]]
    assert verdicts[1].action.value == "deliver"
