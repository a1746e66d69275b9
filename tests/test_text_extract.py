"""Entity extraction on real-looking Chinese and English SMS; every span quotes the original text."""

from __future__ import annotations

import pytest

from skyshield.text.analysis import Entities, Span
from skyshield.text.extract import analyse, analyse_batch, phone_kind, registered_domain


def texts(spans: list[Span]) -> list[str]:
    return [s.text for s in spans]


def check_spans(original: str, ent: Entities) -> None:
    """Every span's text is exactly the original text at its offsets."""
    spans = ent.links + ent.ip_links + ent.phones + ent.chat_ids + ent.amounts + ent.codes
    spans += [s for s in (ent.signature, ent.opt_out) if s is not None]
    for s in spans:
        assert original[s.start : s.end] == s.text, s


def test_marketing_with_signature_short_link_and_opt_out() -> None:
    text = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
    a = analyse(text)
    e = a.entities
    assert e.signature is not None and e.signature.text == "某宝"
    assert texts(e.links) == ["t.cn/abc"]
    assert e.link_domains == ["t.cn"]
    assert e.opt_out is not None and e.opt_out.text == "回T退订"
    assert e.phones == [] and e.codes == []
    check_spans(text, e)


def test_police_impersonation_has_no_structure() -> None:
    a = analyse("您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查")
    e = a.entities
    assert e == Entities()
    assert a.normalised == "您好,这里是市公安局,您的银行卡涉嫌洗钱,请立即下载会议app配合调查"


def test_bank_alert() -> None:
    text = "【招商银行】您尾号1234的卡于11月20日消费人民币1,999.00元，如有疑问请致电95555"
    e = analyse(text).entities
    assert e.signature is not None and e.signature.text == "招商银行"
    assert texts(e.phones) == ["95555"] and e.phone_kinds == ["service"]
    assert texts(e.amounts) == ["1,999.00元"]
    assert e.codes == []  # the card's last four digits are not a code
    check_spans(text, e)


def test_parcel_notice_with_400_number() -> None:
    text = "【顺丰速运】您的快递已到达小区驿站，取件码8-3-2045，请凭码取件。详询400-811-1111"
    e = analyse(text).entities
    assert e.signature is not None and e.signature.text == "顺丰速运"
    assert texts(e.phones) == ["400-811-1111"] and e.phone_kinds == ["cn_400"]
    check_spans(text, e)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("【京东】您的验证码为846213，5分钟内有效，请勿泄露给他人。", "846213"),
        ("846213是您的登录验证码，请勿告诉他人", "846213"),
        ("您的动态码：A7K9，10分钟内有效", "A7K9"),
        ("Your Amazon verification code is 482913. Don't share it.", "482913"),
        ("G-582013 is your Google verification code.", "582013"),
        ("Your OTP: 9931", "9931"),
    ],
)
def test_one_time_codes(text: str, code: str) -> None:
    e = analyse(text).entities
    assert texts(e.codes) == [code]
    check_spans(text, e)


def test_promo_code_word_is_not_an_otp() -> None:
    assert analyse("Use promo code SAVE20 at checkout").entities.codes == []


@pytest.mark.parametrize(
    ("text", "opt_out"),
    [
        ("Reply STOP to opt out", "Reply STOP to opt out"),
        ("Txt STOP to 87239 to end", "Txt STOP to 87239"),
        ("To unsubscribe click here", "unsubscribe"),
        ("点击https://u.10010.cn/qAE9U立即参与，回复TD退订。", "回复TD退订"),
        ("新品上架 拒收请回复R", "拒收请回复R"),
        ("全场包邮，退订回Ｔ", "退订回Ｔ"),
        ("STOP", "STOP"),
        ("ＳＴＯＰ", "ＳＴＯＰ"),
    ],
)
def test_opt_out_text(text: str, opt_out: str) -> None:
    e = analyse(text).entities
    assert e.opt_out is not None and e.opt_out.text == opt_out
    check_spans(text, e)


def test_lowercase_stop_in_a_sentence_is_not_an_opt_out() -> None:
    assert analyse("please stop calling me, ok?").entities.opt_out is None


def test_english_signature_and_shortcode() -> None:
    text = "[Amazon] Your package has shipped. Text STOP to 12345"
    e = analyse(text).entities
    assert e.signature is not None and e.signature.text == "Amazon"
    assert e.opt_out is not None and e.opt_out.text == "Text STOP to 12345"


def test_signature_at_the_end() -> None:
    e = analyse("您的话费余额不足10元，请及时充值。【中国移动】").entities
    assert e.signature is not None and e.signature.text == "中国移动"


def test_links_domains_and_ip_links() -> None:
    text = "详情 http://1.2.3.4:8080/a 或 abc.top/x 或 www.shop-abc.top，官网https://u.10010.cn/qAE9U立即参与"
    e = analyse(text).entities
    assert texts(e.links) == ["abc.top/x", "www.shop-abc.top", "https://u.10010.cn/qAE9U"]
    assert e.link_domains == ["abc.top", "shop-abc.top", "10010.cn"]
    assert texts(e.ip_links) == ["http://1.2.3.4:8080/a"]
    check_spans(text, e)


def test_scheme_makes_any_host_a_link() -> None:
    e = analyse("查询详情请点击：http://xxx。回复TD退订 [http://www.1234567890abcxyz/antivirus]").entities
    assert texts(e.links) == ["http://xxx", "http://www.1234567890abcxyz/antivirus"]
    assert e.link_domains == ["xxx", "www.1234567890abcxyz"]


def test_not_links() -> None:
    # a missing space after a full stop, a file name, an e-mail address, a version number
    e = analyse("ok.no hi.how me.so report.pdf 邮箱 abc@qq.com version 1.2.3.999").entities
    assert e.links == [] and e.ip_links == []


def test_obfuscated_link_is_found_in_original_form() -> None:
    text = "点击ｔ．ｃｎ／ａｂｃ领取"
    e = analyse(text).entities
    assert texts(e.links) == ["ｔ．ｃｎ／ａｂｃ"]
    assert e.link_domains == ["t.cn"]


def test_phones() -> None:
    text = "联系电话：0755-12345678，手机13800138000，+44 20 7946 0958，热线 800-820-8820"
    e = analyse(text).entities
    assert texts(e.phones) == ["0755-12345678", "13800138000", "+44 20 7946 0958", "800-820-8820"]
    assert e.phone_kinds == ["cn_landline", "cn_mobile", "international", "cn_800"]
    check_spans(text, e)


def test_uk_premium_number_in_english_text() -> None:
    e = analyse("WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461").entities
    assert texts(e.phones) == ["09061701461"] and e.phone_kinds == ["international"]
    assert texts(e.amounts) == ["£900"]


def test_masked_digits_and_chat_ids() -> None:
    text = "请联系 xxxxxxxxxxx 或QQ：123456789 vx:abc_123，加 薇 信 ：ｘｙ８８８８"
    e = analyse(text).entities
    assert texts(e.phones) == ["xxxxxxxxxxx"] and e.phone_kinds == ["masked"]
    assert texts(e.chat_ids) == ["QQ：123456789", "vx:abc_123", "加 薇 信 ：ｘｙ８８８８"]
    check_spans(text, e)


def test_amounts() -> None:
    text = "￥1,999 RMB500 5万元 三千元 $20 €15 100 pounds，贷款5万"
    e = analyse(text).entities
    assert texts(e.amounts) == ["￥1,999", "RMB500", "5万元", "三千元", "$20", "€15", "100 pounds", "5万"]


def test_dates_and_short_numbers_are_not_phones() -> None:
    e = analyse("2019-11-11 到 2023年，订单号 1234，验证码 846213").entities
    assert e.phones == []


def test_empty_long_and_broken_input() -> None:
    out = analyse_batch(["", "a" * 100_000, "abc\ud800\x00\x07测试", "1" * 100_000, "回复" * 50_000])
    assert [a.original for a in out][:1] == [""]
    assert out[0].normalised == "" and out[0].entities == Entities()
    assert out[1].entities.links == []
    assert out[2].normalised == "abc测试"
    assert out[3].entities.phones == []


def test_adversarial_100k_inputs_return_correct_results() -> None:
    # each of these made an earlier draft of the patterns backtrack for tens of seconds
    for text in (
        "x" * 100_000,
        "a-" * 50_000 + ".com",
        "http://" + "a" * 100_000,
        "http://" + "a." * 50_000,
        ("a" * 62 + ".") * 1600,
        "1." * 50_000,
        "回复" * 50_000,
    ):
        a = analyse(text)
        assert a.entities.phones == [] and a.entities.codes == []
    many = "t.cn/abc " * 10_000
    assert len(analyse(many).entities.links) == 10_000


def test_batch_matches_one_by_one() -> None:
    batch = [
        "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订",
        "加 薇 信 ：ｘｙ８８８８ 领取 ５ 万 元 贷 款😀😀",
        "Your code is 482913",
        "",
    ]
    assert analyse_batch(batch) == [analyse(t) for t in batch]


def test_library_helpers() -> None:
    assert registered_domain("u.10010.cn") == "10010.cn"
    assert registered_domain("www.win-now.co.uk") == "win-now.co.uk"
    assert registered_domain("report.notatld") == ""
    assert phone_kind("95588") == "service"
    assert phone_kind("12306") == "service"
    assert phone_kind("13800138000") == "cn_mobile"
    assert phone_kind("+8613800138000") == "cn_mobile"
    assert phone_kind("4008208820") == "cn_400"
    assert phone_kind("846213") == ""


@pytest.mark.data
def test_real_corpus_signatures_opt_outs_and_spans(data_dir) -> None:
    import csv

    with (data_dir / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv").open(encoding="utf-8", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    analyses = analyse_batch(texts)
    for a in analyses:
        check_spans(a.original, a.entities)
    with_tuiding = [a for a in analyses if "退订" in a.original]
    share_opt = sum(a.entities.opt_out is not None for a in with_tuiding) / len(with_tuiding)
    signed = [a for a in analyses if a.original.startswith("【") and "】" in a.original[:20]]
    share_sig = sum(a.entities.signature is not None for a in signed) / len(signed)
    with_url = [a for a in analyses if "http" in a.original]
    share_link = sum(bool(a.entities.links or a.entities.ip_links) for a in with_url) / len(with_url)
    print(f"opt-out found in {share_opt:.1%} of {len(with_tuiding)} texts with 退订; signature in {share_sig:.1%} "
          f"of {len(signed)} 【…】 texts; link in {share_link:.1%} of {len(with_url)} texts with http")
    assert share_opt >= 0.97 and share_sig >= 0.97 and share_link >= 0.97


def test_code_before_is_your_code_is_a_one_time_code():
    texts = ["100004 is your code", "482913 is your Instagram code. Don't share it.", "your code is ready",
             "The total is 120, your code 5"]
    found = [[c.text for c in a.entities.codes] for a in analyse_batch(texts)]
    assert found == [["100004"], ["482913"], [], []]


def test_chinese_mobile_shortcut_agrees_with_the_full_phonenumbers_parse():
    import random

    import phonenumbers
    from phonenumbers import PhoneNumberType

    from skyshield.text.extract import _cn_mobile_pattern

    rng = random.Random(11)
    numbers = [f"1{rng.randint(0, 9)}{rng.randint(0, 10**9 - 1):09d}" for _ in range(20000)]
    edges = ("79", "11", "12", "61", "74", "41", "45")  # carrier prefixes, and ranges the pattern splits finely
    numbers += [f"1{p}{rng.randint(0, 10**8 - 1):08d}" for p in edges for _ in range(300)]
    taken = 0
    for number in numbers:
        try:
            parsed = phonenumbers.parse(number, "CN")
        except phonenumbers.NumberParseException:  # a carrier prefix stripped, too little left
            parsed = None
        mobile = parsed is not None and phonenumbers.is_valid_number(parsed) and \
            phonenumbers.number_type(parsed) == PhoneNumberType.MOBILE
        assert (_cn_mobile_pattern().fullmatch(number) is not None) == mobile, number
        taken += mobile
    assert taken > 10000  # most 13x-19x numbers are mobiles
