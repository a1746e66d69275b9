"""`skyshield train` / `skyshield eval` end to end on a small synthetic data folder (no shared data needed):
writes the model and its card, is reproducible, leaves out absent corpora, fails clearly on bad input."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from skyshield.cli import main
from skyshield.text.classify import load_model
from skyshield.text.extract import analyse_batch

HAM = ["Ok see you at {h} then", "Can you call me when you get home", "Running late, {h} mins", "Dinner at {h}?",
       "Thanks for today, it was great", "Where are you now", "I'll be there by {h}", "Did you get my email"]
SPAM = ["FREE entry! Win a prize of £{h}00, text WIN to 8{h}21", "Cheap loans approved today, call 0800{h}11",
        "Congratulations you won a holiday, claim at 09{h}7",
        "Get 50% off all items this weekend, reply STOP to opt out"]


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(7)
    (root / "uci_sms_spam").mkdir()
    lines = []
    words = ["ok", "pls", "now", "later", "today", "tomorrow", "mate", "love", "soon", "asap", "lol", "hey"]
    for i in range(240):
        label, tpl = ("spam", rng.choice(SPAM)) if i % 4 == 0 else ("ham", rng.choice(HAM))
        lines.append(f"{label}\t{tpl.format(h=i)} {' '.join(rng.sample(words, 3))}")
    (root / "uci_sms_spam" / "SMSSpamCollection").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "smishtank").mkdir()
    with (root / "smishtank" / "smishtank.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["messageid", "MainText"])
        for i, brand in enumerate(["USPS", "FedEx", "DHL", "UPS", "Evri", "DPD", "Royal Mail", "Hermes"]):
            w.writerow([i, f"{brand}: your parcel is on hold, pay the fee at {brand.lower()}-fee.com"])
    return root


def test_train_writes_model_and_card_and_is_reproducible(mini_data, tmp_path, capsys):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--data", str(mini_data), "--out", str(out1)]) == 0
    assert main(["train", "--data", str(mini_data), "--out", str(out2)]) == 0
    for name in ("text_model.npz", "CARD.md", "metrics.json", "pr.png"):
        assert (out1 / name).stat().st_size > 0
    m1, m2 = load_model(out1), load_model(out2)
    assert m1.version == m2.version  # fixed seed: same data, same weights, same version
    card = (out1 / "CARD.md").read_text(encoding="utf-8")
    assert "uci_sms_spam" in card and "Label mapping" in card
    assert "Research use only" not in card  # no research-only corpus in this folder
    metrics = json.loads((out1 / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["model"]["trained_on"] == ["uci_sms_spam", "seed"]
    assert metrics["cv"]["uci_sms_spam"]["n"] > 100
    assert metrics["smishtank"]["n"] == 8
    preds = m1.predict(analyse_batch(["FREE entry! Win a prize of £500, text WIN to 80021", "Where are you now"]))
    assert preds[0].unwanted > preds[1].unwanted


def test_eval_prints_the_shipped_card(capsys):
    assert main(["eval"]) == 0
    assert "skyshield text model card" in capsys.readouterr().out


def test_train_on_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no known corpus" in capsys.readouterr().err
