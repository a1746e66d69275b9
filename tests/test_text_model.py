"""The shipped text model: loads, gets the reference examples right, leaves legitimate traffic alone,
survives hostile input, and explains itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyshield.engine import BatchContext
from skyshield.events import Category, Message
from skyshield.text.classify import HEADS, TextModel, TextModelDetector, load_model
from skyshield.text.extract import analyse_batch
from skyshield.text.features import featurise

UNWANTED = {Category.PROMOTION.value, Category.FRAUD.value, Category.ILLICIT.value}

#: Written for this test (not in the seed file): real-looking alerts, receipts, parcel notices and codes.
LEGIT = [
    "【招商银行】您尾号6610的储蓄卡11月08日12:31消费支出人民币89.00元，活期余额3,502.17元。",
    "【中国银行】您的账户9932于11月07日收到转账2,600.00元，付款人王芳。",
    "【光大银行】您的信用卡11月账单已出，应还金额1,280.55元，最低还款128.06元，到期日12月3日。",
    "【兴业银行】您尾号0087的卡片于11月9日在星巴克消费42.00元。",
    "【圆通速递】您的快件YT8812345678901已到达杭州转运中心，正在发往下一站。",
    "【申通快递】您好，您的包裹已放至小区北门快递柜，取件码 603221，请及时领取。",
    "【丰巢】凭取件码 7722 到万科城丰巢柜取件，超时将收取保管费。",
    "【国家电网】尊敬的客户，您户号3300112233上月电量210度，电费115.50元，请及时缴纳。",
    "【中国联通】您好，您11月套餐费用已扣除39元，当前余额12.60元。",
    "【腾讯】验证码 620114，用于QQ登录，5分钟内有效。",
    "【12306】您的验证码是 885210，请在页面中输入完成验证。",
    "【建设银行】您正在进行网银转账，验证码为 417726，请勿向任何人透露。",
    "【饿了么】您的订单正在配送中，骑手预计12:40送达。",
    "【航旅纵横】您乘坐的CA1501航班预计准点起飞，登机口C21，请提前30分钟到达。",
    "【华西医院】您预约的11月15日下午皮肤科门诊已成功，请携带身份证就诊。",
    "【自来水公司】您户本期应缴水费32.40元，缴费截止日期11月30日。",
    "妈，我周末回家，帮我把被子晒一下。",
    "明天的会议改到下午两点，记得带上季度报表。",
    "Santander: You have made a payment of £76.00 to BRITISH GAS from your account ending 2291.",
    "Capital One: A purchase of $23.17 at WHOLE FOODS was made on your card ending 4419.",
    "Your statement for the Discover card ending 1184 is now available. Minimum payment due 12/05.",
    "Your order #112-4490021 has shipped and will arrive Thursday. Track it in Your Orders.",
    "FedEx: Your package 7712 3345 9012 was delivered at 10:42 AM, left at front door.",
    "Parcelforce: your parcel EB123456789GB will be delivered tomorrow between 8am and 6pm.",
    "Your Microsoft security code is 301944.",
    "Your Lloyds one-time code is 558120. We will never call you to ask for it.",
    "Twitter: 402117 is your verification code.",
    "Reminder: your car's MOT is booked for Tuesday 14 Nov at 08:30 at Kwik Fit.",
    "Hey, are we still on for football tonight? I'll bring the ball.",
    "Can you send me the photos from the wedding when you get a chance?",
]


@pytest.fixture(scope="module")
def model() -> TextModel:
    return load_model(None)


def predict(model: TextModel, texts: list[str]):
    return model.predict(analyse_batch(texts))


def test_shipped_model_loads_with_version(model):
    assert model.version.startswith("skyshield-text-")
    assert model.cat_q.shape == (1 << model.bits, len(HEADS))


def test_reference_promotion(model):
    p = predict(model, ["【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"])[0]
    assert p.category == "promotion"
    assert p.unwanted > 0.5
    assert p.top_terms, "an unwanted verdict must say which words pushed it"


def test_reference_authority_fraud(model):
    p = predict(model, ["您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"])[0]
    assert (p.category, p.subtype) == ("fraud", "authority_impersonation")


def test_legitimate_traffic_is_left_alone(model):
    preds = predict(model, LEGIT)
    flagged = [(t, p.category, round(p.unwanted, 2))
               for t, p in zip(LEGIT, preds, strict=True) if p.category in UNWANTED]
    # The model may be unsure about one or two, but most real alerts/receipts/codes must pass.
    assert len(flagged) <= 2, flagged


def test_ham_is_split_into_kinds(model):
    preds = predict(model, ["Your Microsoft security code is 301944.",
                            "【兴业银行】您尾号0087的卡片于11月9日在星巴克消费42.00元。",
                            "Hey, are we still on for football tonight?"])
    assert [p.category for p in preds] == ["verification", "notification", "personal"]


def test_probabilities_are_a_distribution(model):
    for p in predict(model, LEGIT[:5] + ["点击领取大奖 http://x.cn", ""]):
        assert set(p.probabilities) == {c.value for c in Category}
        assert math.isclose(sum(p.probabilities.values()), 1.0, rel_tol=1e-6)
        assert math.isclose(p.unwanted, sum(p.probabilities[c] for c in UNWANTED), rel_tol=1e-6)
        assert p.category == max(p.probabilities, key=p.probabilities.get)


@pytest.mark.parametrize("text", [
    "",
    " ",
    "x" * 100_000,
    "贷款" * 50_000,
    "\x00\x01\x02\x03\x7f",
    "\ud800 lone surrogate",
    "🤑🤑🤑 💰💰 👉 http://bit.ly/x",
    "\u202etxet desrever\u202c",
    "z\u0351\u0352\u0353algo t\u0300e\u0301xt",
    "\U0010ffff\U000e0001",
])
def test_hostile_input_gets_a_prediction(model, text):
    p = model.predict(analyse_batch([text]))[0]
    assert p.category in {c.value for c in Category}
    assert 0.0 <= p.unwanted <= 1.0


def test_prediction_does_not_depend_on_batch_neighbours(model):
    texts = ["免费领取", "Your code is 123456", "", "加微信 abc123 领红包", "hello"]
    alone = [model.predict(analyse_batch([t]))[0].probabilities for t in texts]
    together = [p.probabilities for p in model.predict(analyse_batch(texts))]
    for a, b in zip(alone, together, strict=True):
        assert a == pytest.approx(b)


def test_explanation_does_not_depend_on_batch_neighbours(model):
    # Every digit reads as 0, so number-heavy texts have many equally strong n-grams; which of them
    # a message's reasons name must not depend on what else was in its batch.
    texts = ["07732584351 - Rodger Burns - MSG = We tried to call you re your reply to our sms for a free phone",
             "PRIVATE! Your 2004 Account Statement for 07742676969 shows 786 unredeemed Bonus Points. Call 08719180248",
             "Text & meet someone sexy today. U can find a date or even flirt its up to U. Join 4 just 10p",
             "澳门娱乐城首存送彩金，百家乐真人荷官 www.am88.vip", "晚上一起吃饭吗？", "免费领取 " * 20]
    alone = [model.predict(analyse_batch([t]))[0].top_terms for t in texts]
    together = [p.top_terms for p in model.predict(analyse_batch(texts))]
    assert any(alone)
    assert alone == together


def test_explaining_later_gives_the_terms_predict_gives(model):
    texts = ["澳门娱乐城首存送彩金，百家乐真人荷官 www.am88.vip", "晚上一起吃饭吗？",
             "【某宝】双11狂欢，全场5折起，回T退订",
             "WINNER!! You have been selected to receive a prize reward! Call 09061701461"] * 3
    analyses = analyse_batch(texts)
    at_once = model.predict(analyses)
    later, explain = model.predict_explain_later(analyses)
    assert [p.probabilities for p in later] == [p.probabilities for p in at_once]
    assert all(p.top_terms == [] for p in later)  # the answer goes out before the explanation
    explain()
    assert [p.top_terms for p in later] == [p.top_terms for p in at_once]
    assert sum(bool(p.top_terms) for p in later) >= 9
    explain()  # a second call changes nothing
    assert [p.top_terms for p in later] == [p.top_terms for p in at_once]


def test_empty_batch(model):
    assert model.predict([]) == []


def test_featurise_groups_features_per_message():
    feats = featurise(["ab", "", "hello world"], 16)
    rows = np.diff(feats.row_offsets)
    assert rows.tolist() == [2 + 2 + 4, 0 + 2 + 4, 11 + 2 + 4]
    # "hello world": two words and one bigram land in the word columns
    block = feats.buckets[feats.row_offsets[2]:feats.row_offsets[3]]
    assert (block[:, -2] != 0).sum() == 2 and (block[:, -1] != 0).sum() == 1
    # n-grams made only of start/end markers carry no information (only length): they are dropped;
    # the start marker's slot holds the script instead
    empty = feats.buckets[feats.row_offsets[1]:feats.row_offsets[2], :3]
    assert (empty != 0).sum() == 3  # script, "\x02\x03" and "\x02\x03\x03"
    assert feats.han.tolist() == [False, False, False]
    assert featurise(["中文"], 16).han.tolist() == [True]


def test_case_and_digits_do_not_change_features():
    a = featurise(["Call 0800 123 456 NOW"], 18)
    b = featurise(["call 0911 987 654 now"], 18)
    assert (a.buckets == b.buckets).all()


def test_detector_emits_signals_with_evidence(model):
    texts = ["您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查", "晚上一起吃饭吗"]
    analyses = analyse_batch(texts)
    ctx = BatchContext([Message(t) for t in texts], analyses, model.predict(analyses))
    signals = TextModelDetector().detect(ctx)
    fraud = [s for s in signals[0] if s.name == "MODEL_FRAUD"]
    assert fraud and fraud[0].score >= 0.5
    assert fraud[0].evidence["subtype"] == "authority_impersonation"
    assert fraud[0].evidence["terms"] and "why" in fraud[0].evidence
    assert not [s for s in signals[1] if s.score >= 0.5]


def test_save_load_roundtrip(model, tmp_path):
    path = model.save(tmp_path)
    again = load_model(path)
    texts = ["【某宝】双11狂欢，全场5折起", "hello"]
    assert [p.probabilities for p in again.predict(analyse_batch(texts))] == \
        [p.probabilities for p in model.predict(analyse_batch(texts))]


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="skyshield train"):
        load_model(tmp_path / "nope.npz")
