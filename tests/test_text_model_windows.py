"""Sentence windows: the short pieces of long texts that teach the model SMS-length fraud (and ham)."""

from __future__ import annotations

from skyshield.text import datasets as ds
from skyshield.text.evaluation import build_windows
from skyshield.text.windows import sentence_windows, sentences

NARRATIVE = ("您好，这里是市公安局刑侦支队。您的身份证被他人冒用开设银行账户，涉嫌一起洗钱案件！"
             "为配合调查，请将名下资金转入我们提供的安全账户进行核查；核查结束后资金会原路退回。\n谢谢配合")


def test_sentences_split_on_chinese_and_latin_ends_and_newlines():
    assert sentences("第一句。第二句！第三句？第四句；five! six?\n七") == [
        "第一句。", "第二句！", "第三句？", "第四句；", "five!", "six?", "七"]


def test_windows_are_one_or_two_sentences_never_the_whole_text():
    windows = sentence_windows(NARRATIVE, cap=10)
    assert windows, "a four-sentence narrative has windows"
    assert "您好，这里是市公安局刑侦支队。" in windows
    assert "您好，这里是市公安局刑侦支队。您的身份证被他人冒用开设银行账户，涉嫌一起洗钱案件！" in windows
    assert all(len(w) >= 10 for w in windows)          # "谢谢配合" alone is too short
    assert NARRATIVE.replace("\n", "") not in windows
    assert len(windows) == len(set(windows))


def test_cap_spreads_windows_over_the_text():
    all_windows = sentence_windows(NARRATIVE, cap=10)
    two = sentence_windows(NARRATIVE, cap=2)
    assert two == [all_windows[0], all_windows[-1]]
    assert sentence_windows(NARRATIVE, cap=0) == []
    assert sentence_windows("只有一句话没有句号", cap=4) == []


def test_windows_keep_their_source_class_and_belong_to_one_source():
    fraud_item = ds.Item("k1", NARRATIVE, "fraud/authority_impersonation", {"telecom_fraud_texts_5": "1"})
    # the same first sentence in a legitimate text: a conflict, dropped rather than given either class
    ham_item = ds.Item("k2", "您好，这里是市公安局刑侦支队。本周六上午在社区开展反诈宣传活动，欢迎居民参加。",
                       "ham", {"telecom_fraud_texts_5": "0"})
    smish = ds.Item("k3", NARRATIVE + "再见。", "fraud/phishing_link", {"smishtank": "smishing"})
    sentence = "为配合调查，请将名下资金转入我们提供的安全账户进行核查；"
    short = ds.Item(ds.dedup_key(sentence), sentence, "fraud/other",
                    {"zh_spam_6class": "bank_impersonation_transfer_fraud"})
    texts, classes, sources, kinds = build_windows([fraud_item, ham_item, smish, short])
    assert "您好，这里是市公安局刑侦支队。" not in texts            # conflicting classes
    assert sentence not in texts                                    # equals a corpus text
    assert 2 not in sources                                         # never cut from smishtank
    assert len(texts) == len({ds.dedup_key(t) for t in texts})
    for cls, src, kind in zip(classes, sources, kinds, strict=True):
        assert cls == [fraud_item, ham_item][src].cls
        assert kind == ("fraud" if src == 0 else "ham")
