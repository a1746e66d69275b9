"""Normalisation: evasive spellings read the same as the plain ones; ordinary text, URLs and numbers survive."""

from __future__ import annotations

import pytest

from skyshield.text.normalise import normalise, normalise_batch, normalise_with_offsets, original_span


@pytest.mark.parametrize(
    ("evasive", "plain"),
    [
        ("加 微 信", "加微信"),
        ("加-微-信", "加微信"),
        ("加*微*信 领红包", "加微信领红包"),
        ("v❤x", "vx"),
        ("\u200b加\u200d微\ufeff信", "加微信"),
        ("😀加😀微😀信", "加微信"),
        ("薇信号：abc123", "微信号:abc123"),
        ("威信 abc123", "微信 abc123"),
        ("徾信", "微信"),
        ("扣扣 12345678", "qq 12345678"),
        ("QQ 12345678", "qq 12345678"),
        ("➕V 领取", "加微信领取"),
        ("+v 领取", "加微信领取"),
        ("加v：abc123", "加微信:abc123"),
        ("加 V X 好友", "加微信好友"),
        ("加微 abc123", "加微信 abc123"),
        ("ＡＢＣ１２３", "abc123"),
        ("這是繁體中文，請聯繫客服", "这是繁体中文,请联系客服"),
        ("ｐаypal", "paypal"),  # Cyrillic а
        ("Аpple ID", "apple id"),
        ("①③⑧⓪⓪①③⑧⓪⓪⓪", "13800138000"),
        ("❶❸❽", "138"),
        ("Call 138O0l38000", "call 13800138000"),
        ("电话 1 3 8 0 0 1 3 8 0 0 0", "电话13800138000"),
        ("f r e e  m o n e y", "freemoney"),
        ("2〇23年", "2023年"),
        ("1️⃣2️⃣3️⃣", "123"),
        ("baidu.c○m", "baidu.com"),
        ("点击 t . cn/abc 领取", "点击 t.cn/abc 领取"),
        ("访问abc。top/x", "访问abc.top/x"),
        ("www. baidu. com", "www.baidu.com"),
        ("号码:x x x x x x", "号码:xxxxxx"),  # digits masked as x, spaced out
    ],
)
def test_evasive_spellings_are_undone(evasive: str, plain: str) -> None:
    assert normalise(evasive) == plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URLs keep their path and dots; only case folds
        ("点击 https://u.10010.cn/qAE9U 参与", "点击 https://u.10010.cn/qae9u 参与"),
        ("访问 http://1.2.3.4:8080/login", "访问 http://1.2.3.4:8080/login"),
        ("version 1.2.3.4 and 3.14", "version 1.2.3.4 and 3.14"),
        # numbers and amounts stay whole
        ("消费人民币1,999.00元", "消费人民币1,999.00元"),
        ("Call 09061701461 now", "call 09061701461 now"),
        # Chinese numerals in dates are words, not digits
        ("二〇二〇年", "二〇二〇年"),
        # ordinary English keeps its spaces (SMS-speak is not a spaced-out word)
        ("r u ok? i m fine", "r u ok? i m fine"),
        ("Hello, how are you?", "hello, how are you?"),
        # a Russian word is not a homoglyph attack
        ("привет мир", "привет мир"),
        # 微博 is not 微信
        ("加微博关注", "加微博关注"),
        ("25℃ 晴", "25°c 晴"),
        ("二○二○年", "二〇二〇年"),
        ("love nicky x x x x", "love nicky x x x x"),  # kisses, not a masked number
        ("that\x92s ok", "that's ok"),  # a Windows-1252 apostrophe
        ("条消息∶“昨日", "条消息:“昨日"),
        ("150p/msg. cc: 08708800282", "150p/msg. cc: 08708800282"),
        ("ok. me too", "ok. me too"),
        ("【招商银行】您尾号1234的卡", "【招商银行】您尾号1234的卡"),
    ],
)
def test_ordinary_text_survives(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_spaces_collapse_and_trim() -> None:
    assert normalise("  hello \t\n  world  ") == "hello world"
    assert normalise("您好 ， 这里 是 客服") == "您好 , 这里是客服"


def test_empty_and_noise_only() -> None:
    assert normalise("") == ""
    assert normalise("😀😀\u200b\ufeff   ") == ""
    assert normalise_batch([]) == []
    assert normalise_with_offsets("") == ("", [])


def test_bad_characters_do_not_crash() -> None:
    text = "abc\ud800\udfff\x00\x07\x1b[31m测试\uffff\U0010ffff"
    out = normalise(text)
    assert out == "abc[31m测试"
    assert normalise_with_offsets(text)[0] == out


def test_wrong_types_are_clear_errors() -> None:
    with pytest.raises(TypeError):
        normalise_batch("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        normalise_batch(["ok", None])  # type: ignore[list-item]


def test_batch_equals_one_by_one_and_offsets_path() -> None:
    texts = [
        "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订",
        "加 薇 信 ：ｘｙ８８８８ 领取 ５ 万 元 贷 款，無抵押秒到賬😀😀",
        "Your Amazon verification code is 482913. Reply STOP to opt out",
        "……好的\n明天见",
        "",
        "乾隆皇帝的頭髮",
    ]
    batch = normalise_batch(texts)
    assert batch == [normalise(t) for t in texts]
    assert batch == [normalise_with_offsets(t)[0] for t in texts]


def test_offsets_quote_the_original() -> None:
    text = "请加 薇 信：ＡＢＣ１２３😀，回T退订"
    norm, offsets = normalise_with_offsets(text)
    assert norm == "请加微信:abc123,回t退订"
    assert len(offsets) == len(norm)
    start = norm.index("微信")
    s, e = original_span(offsets, start, start + 2)
    assert text[s:e] == "薇 信"
    start = norm.index("abc123")
    s, e = original_span(offsets, start, start + 6)
    assert text[s:e] == "ＡＢＣ１２３"
    start = norm.index("回t退订")
    s, e = original_span(offsets, start, start + 4)
    assert text[s:e] == "回T退订"
    with pytest.raises(ValueError):
        original_span(offsets, 3, 3)


def test_expansions_map_back_to_one_character() -> None:
    text = "㈱公司……"
    norm, offsets = normalise_with_offsets(text)
    assert norm == "(株)公司......"
    s, e = original_span(offsets, 0, 3)
    assert text[s:e] == "㈱"


def test_long_adversarial_inputs_finish_and_keep_content() -> None:
    # Patterns that would backtrack catastrophically on these (a run of letters, a spaced-out run)
    assert normalise("x" * 100_000) == "x" * 100_000
    assert normalise("a-" * 50_000) == "a" * 50_000 + "-"
    assert normalise("http://" + "a" * 100_000) == "http://" + "a" * 100_000
    assert normalise("加 " * 50_000) == "加" * 50_000


@pytest.mark.data
def test_batch_and_offsets_paths_agree_on_real_corpora(data_dir) -> None:
    """The fast batch path and the offsets path must give the same text, or evidence spans drift."""
    import csv
    import random

    texts: list[str] = []
    with (data_dir / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv").open(encoding="utf-8", newline="") as f:
        texts += [r["text"] for r in csv.DictReader(f)]
    with (data_dir / "zh_sms_spam_800k_subset" / "zh_sms_800k_subset.tsv").open(encoding="utf-8") as f:
        texts += [p[2] for p in (line.rstrip("\n").split("\t") for line in f) if len(p) > 2][1:]
    with (data_dir / "smishtank" / "smishtank.csv").open(encoding="utf-8", newline="") as f:
        texts += [r["MainText"] for r in csv.DictReader(f)]
    sample = random.Random(3).sample(texts, 4000)
    batch = normalise_batch(sample)
    for text, norm in zip(sample, batch, strict=True):
        slow, offsets = normalise_with_offsets(text)
        assert slow == norm, text
        assert len(offsets) == len(norm)
        assert all(0 <= o < len(text) for o in offsets)
        assert offsets == sorted(offsets)
