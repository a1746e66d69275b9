"""The engine: one batch in, one explained verdict per message out, through the real detectors."""

from __future__ import annotations

import pytest

from skyshield.assembly import build_engine
from skyshield.engine import BatchContext, Engine
from skyshield.events import Message, Signal
from skyshield.policy import Policy


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine()


def test_repeated_texts_in_a_batch_get_the_verdicts_they_would_get_alone(engine):
    promo = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
    code = "【京东】您的验证码是 482913，5分钟内有效，请勿泄露。"
    batch = [Message(promo, recipient="13800138000"), Message(code), Message(promo, recipient="13900139000")]
    together = engine.check(batch)
    alone = [engine.check([m])[0] for m in (Message(promo), Message(code))]
    assert [v.category for v in together] == [alone[0].category, alone[1].category, alone[0].category]
    assert together[0].signals is not together[2].signals  # each message keeps its own signals
    names = {s.name for s in together[0].signals}
    assert {"SIGNATURE", "OPT_OUT_TEXT", "SHORT_LINK"} <= names


def test_empty_batch_gives_no_verdicts(engine):
    assert engine.check([]) == []


class _Counting:
    """A real detector shape that records what it was shown and the verdicts it is settled with."""

    name = "counting"

    def __init__(self, results: int | None = None):
        self.results = results
        self.settled: list[str] = []

    def detect(self, ctx: BatchContext) -> list[list[Signal]]:
        n = len(ctx.messages) if self.results is None else self.results
        return [[Signal("LINK", 1.0, {"why": "test"})] for _ in range(n)]

    def settle(self, ctx: BatchContext, verdicts) -> None:
        self.settled = [v.action.value for v in verdicts]


def test_stateful_detectors_are_settled_with_the_final_verdicts(engine):
    counting = _Counting()
    custom = Engine(Policy.load(), engine.analyse, engine.model, [*engine.detectors, counting])
    fraud = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"
    verdicts = custom.check([Message(fraud), Message("晚上一起吃饭吗")])
    assert counting.settled == [v.action.value for v in verdicts]


def test_a_detector_that_loses_messages_is_an_error_not_a_silent_drop(engine):
    custom = Engine(Policy.load(), engine.analyse, engine.model, [_Counting(results=1)])
    with pytest.raises(RuntimeError, match="counting returned 1 results for 2 messages"):
        custom.check([Message("a"), Message("b")])


def test_verdicts_explained_later_are_the_verdicts_explained_at_once():
    texts = ["您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即将资金转入安全账户配合调查",
             "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订",
             "WINNER!! You have been selected to receive a prize reward! Call 09061701461",
             "【招商银行】您尾号1234的卡于11月20日消费人民币1,999.00元，如有疑问请致电95555",
             "晚上一起吃饭吗"]
    batch = [Message(t, sender="10690001", recipient="13800138000") for t in texts + texts[:2]]
    at_once = build_engine().check(batch)  # two engines with the same (empty) state: same verdicts
    later, finish = build_engine().check_answer_first(batch)
    assert [v.action for v in later] == [v.action for v in at_once]
    assert [v.score for v in later] == [v.score for v in at_once]
    model_terms = [[s.evidence["terms"] for s in v.signals if s.name.startswith("MODEL_")] for v in later]
    assert all(t == [] for terms in model_terms for t in terms) and any(model_terms)  # not explained yet
    finish()
    assert [v.to_dict() for v in later] == [v.to_dict() for v in at_once]
    fraud_terms = next(s.evidence["terms"] for s in later[0].signals if s.name == "MODEL_FRAUD")
    assert fraud_terms and all(term in texts[0] or term.lower() in texts[0].lower() for term in fraud_terms[:1])
