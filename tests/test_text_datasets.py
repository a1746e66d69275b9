"""Corpus readers, the label mapping onto skyshield classes, deduplication and fold assignment."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from skyshield.text import datasets as ds


def test_every_mapped_class_is_a_model_class():
    for name, table in ds.LABEL_MAP.items():
        if name == "seed":
            continue
        for native, (cls, how) in table.items():
            assert cls in ds.CLASSES, (name, native, cls)
            assert how


def test_english_spam_relabelling():
    assert ds.en_spam_class("URGENT! You have WON a £1000 prize, call 09061701461 to claim") == "fraud/prize"
    assert ds.en_spam_class("Text SEXY to 69888 for naughty chat") == "illicit/porn"
    assert ds.en_spam_class("Get 2 months free line rental, text YES to 80082") == "promotion"


def test_chinese_spam_relabelling():
    assert ds.zh_spam_class("本公司代开各类发票，联系王经理", "promotion") == "illicit/fake_documents"
    assert ds.zh_spam_class("澳门娱乐城首存送彩金", "promotion") == "illicit/gambling"
    assert ds.zh_spam_class("新店开业全场八折", "promotion") == "promotion"


def test_digit_masks_become_digits_but_words_survive():
    assert ds.unmask_digits("电话xxxxxxxxxxx，x月x日") == "电话00000000000，0月0日"
    assert ds.unmask_digits("next taxi box") == "next taxi box"


def test_telecom_placeholders_are_neutralised():
    out = ds.clean_telecom("NAME先生您好，请拨打CELLPHONE，金额DIGIT元，XX贷款公司")
    assert "NAME" not in out and "CELLPHONE" not in out and "DIGIT" not in out and "XX" not in out
    assert out.startswith("先生您好")


def test_dedup_key_ignores_case_digits_spacing_and_punctuation():
    assert ds.dedup_key("Call 0800-123 NOW!!") == ds.dedup_key("call 0911 999 now")
    assert ds.dedup_key("ａｂｃ") == ds.dedup_key("ABC")
    assert ds.dedup_key("free prize") != ds.dedup_key("free price")


def test_pool_merges_copies_and_prefers_the_finer_label():
    recs = [
        ds.Record("You won a prize! Claim now", "uci_sms_spam", "spam", "fraud/prize"),
        ds.Record("you won a prize claim now", "mendeley_smishing", "smishing", "fraud/phishing_link"),
        ds.Record("see you at 5", "uci_sms_spam", "ham", "ham"),
        ds.Record("兼职刷单", "zh_spam_6class", "recruitment", "promotion", testable=False),
    ]
    items = ds.pool(recs)
    assert len(items) == 3
    merged = items[0]
    assert merged.cls == "fraud/phishing_link"
    assert merged.natives == {"uci_sms_spam": "spam", "mendeley_smishing": "smishing"}
    assert items[2].testable_in == set()


def test_seed_file_parses_and_covers_illicit():
    recs = ds.read_seed()
    kinds = Counter(r.native for r in recs)
    for sub in ("gambling", "porn", "fake_documents", "link_spam"):
        assert kinds[f"illicit/{sub}"] >= 5
    assert kinds["verification"] >= 5 and kinds["notification"] >= 10
    assert all(r.cls in ds.CLASSES for r in recs)


def test_bad_seed_line_is_a_clear_error(tmp_path):
    bad = tmp_path / "seed.tsv"
    bad.write_text("promotion\tok\nnot_a_class\tsomething\n", encoding="utf-8")
    with pytest.raises(ValueError, match="seed.tsv:2"):
        ds.read_seed(bad)


# --- with the real corpora -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(data_dir):
    return ds.load_all(data_dir)


def test_readers_match_the_data_readme(records):
    by = Counter((r.dataset, r.native) for r in records)
    assert by[("uci_sms_spam", "ham")] == 4827 and by[("uci_sms_spam", "spam")] == 747
    # Mendeley label case is inconsistent in the file; lower-cased here
    assert by[("mendeley_smishing", "smishing")] == 638 and by[("mendeley_smishing", "spam")] == 489
    assert sum(v for (d, _), v in by.items() if d == "telecom_fraud_texts_5") == 11773
    assert by[("telecom_fraud_texts_5", "1")] == 1000
    zh = [r for r in records if r.dataset == "zh_sms_800k"]
    assert sum(r.testable for r in zh) == 10000  # only lines 1-10,000 keep the true prior
    assert sum(1 for r in zh if r.testable and r.native == "1") == 966
    assert sum(1 for r in records if r.dataset == "smishtank") >= 1000


def test_telecom_normal_marketing_is_promotion(records):
    normal = [r for r in records if r.dataset == "telecom_fraud_texts_5" and r.native == "0"]
    promo = [r for r in normal if r.cls == "promotion"]
    assert len(promo) > 1736  # the README counts 1,736 texts with 退订; offer wording adds more
    assert all(ds.ZH_MARKETING_CUE.search(r.text) or ds.ZH_OFFER_CUE.search(r.text) for r in promo)
    assert any("中国银行" in r.text for r in normal if r.cls == "ham")  # a bank notice stays ham


def test_no_text_in_two_folds_and_smishtank_never_trains(data_dir, records):
    from skyshield.text.evaluation import assign_folds, load_corpus

    corpus = load_corpus(data_dir, log=lambda _: None)
    folds = assign_folds(corpus)
    keys = [i.key for i in corpus.items]
    assert len(set(keys)) == len(keys)  # pooled: every dedup key once, so no text (or near-copy) in two folds
    smish = np.array(["smishtank" in i.natives for i in corpus.items])
    assert not corpus.trainable[smish].any() and (folds[smish] == -1).all()
    seed = np.array(["seed" in i.natives for i in corpus.items])
    assert (folds[seed] == -1).all()  # training-only
    # UCI/Mendeley copies share one item: the overlap README describes is collapsed
    both = sum(1 for i in corpus.items if {"uci_sms_spam", "mendeley_smishing"} <= set(i.natives))
    assert both > 4000
    counts = Counter(folds[folds >= 0].tolist())
    assert len(counts) == 5 and max(counts.values()) - min(counts.values()) < 50
