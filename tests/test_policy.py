"""The operator's policy file: merged over the defaults, every mistake named with its line."""

from __future__ import annotations

import pytest

from skyshield.events import Action, Category, Signal
from skyshield.policy import Policy, PolicyError, parse_duration, parse_rate


def test_operator_file_merges_over_defaults_key_by_key(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("[actions]\nblock = 12.0\n\n[signals]\nSHORT_LINK = 5.0\n", encoding="utf-8")
    policy = Policy.load(path)
    assert policy.data["actions"]["block"] == 12.0
    assert policy.data["actions"]["fold"] == Policy.load().data["actions"]["fold"]  # untouched default kept
    assert policy.weight("SHORT_LINK") == 5.0
    assert policy.weight("OPT_OUT_TEXT") == Policy.load().weight("OPT_OUT_TEXT")


def test_unknown_key_is_an_error_naming_file_line_and_key(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("# my policy\n[actions]\nblock = 12.0\nblok = 3.0\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        Policy.load(path)
    message = str(err.value)
    assert f"{path}:4" in message and "actions.blok" in message


def test_unknown_section_and_wrong_type_are_errors(tmp_path):
    with pytest.raises(PolicyError, match=r"<policy>:2: unknown key 'detectors.structur'"):
        Policy.from_text("\n[detectors.structur]\nenabled = false\n")
    with pytest.raises(PolicyError, match=r"<policy>:3: 'actions.tag' must be a number, got string"):
        Policy.from_text("[actions]\n\ntag = \"four\"\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.from_text("[actions\nblock = 1")


def test_replace_true_replaces_a_section_outright():
    policy = Policy.from_text("[actions]\nreplace = true\nblock = 10.0\n")
    assert policy.data["actions"] == {"block": 10.0}


def test_category_floor_and_thresholds_decide_the_action():
    policy = Policy.from_text("[actions]\nreplace = true\nblock = 10.0\nfold = 5.0\n")
    fraud = policy.decide(Category.FRAUD, "loan", 0.9, {}, [Signal("MODEL_FRAUD", 0.9)], "m")
    assert fraud.action is Action.BLOCK and fraud.score == pytest.approx(16.0 * 0.9)
    mild = policy.decide(Category.PROMOTION, None, 0.6, {}, [Signal("OPT_OUT_TEXT", 1.0)], "m")
    assert mild.action is Action.TAG  # below every threshold, but promotion is at least tagged
    assert mild.signals[0].points == -1.0


def test_a_wanted_looking_text_blocked_for_its_content_is_reported_as_that_content():
    policy = Policy.load()
    # A bank-alert look-alike: the model reads a notification, the fraud phrase and the model's fraud share block it.
    fake_alert = policy.decide(Category.NOTIFICATION, None, 0.41, {}, [
        Signal("FRAUD_PHRASE", 1.0), Signal("MODEL_FRAUD", 0.41), Signal("SIGNATURE", 1.0)], "m")
    assert fake_alert.action is Action.BLOCK and fake_alert.category is Category.FRAUD
    # Marketing by its promotion probability, refused for want of consent: promotion, not "personal".
    unsolicited = policy.decide(Category.PERSONAL, None, 0.45, {}, [
        Signal("MODEL_PROMOTION", 0.45), Signal("NO_CONSENT", 1.0)], "m")
    assert unsolicited.action is Action.BLOCK and unsolicited.category is Category.PROMOTION
    # Held for what the sender does, not what the text says: a one-time code stays a verification message.
    bombed = policy.decide(Category.VERIFICATION, None, 0.01, {}, [Signal("SMS_BOMBING", 1.0)], "m")
    assert bombed.action is Action.HOLD and bombed.category is Category.VERIFICATION
    # Delivered: the model's reading stands, whatever weak content signals fired.
    alert = policy.decide(Category.NOTIFICATION, None, 0.2, {}, [Signal("MODEL_FRAUD", 0.2)], "m")
    assert alert.action is Action.DELIVER and alert.category is Category.NOTIFICATION


def test_rates_and_durations_read_as_people_write_them():
    assert parse_rate("5 / 1h") == (5, 3600)
    assert parse_rate("40/1d") == (40, 86400)
    assert parse_duration("90s") == 90 and parse_duration("7d") == 7 * 86400
    with pytest.raises(PolicyError):
        parse_rate("five per hour")
