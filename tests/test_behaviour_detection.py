"""SMS bombing, number rotation, SIM-box and reputation lists, on hand-made traffic and on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyshield.behaviour import bombing, rotation
from skyshield.behaviour.bombing import BombingConfig, BombingDetector
from skyshield.behaviour.lists import ReputationLists, import_file, normalise_number
from skyshield.behaviour.rotation import RotationIndex
from skyshield.behaviour.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def city():
    return simulate(SimConfig(subscribers=4000, days=2, seed=9))


def test_bombing_fires_on_the_fifth_distinct_sender_and_picks_a_level() -> None:
    det = BombingDetector(BombingConfig(window=600, min_senders=5, source_repeat=3))
    found = [det.observe(f"site{i}", "victim", 100.0 + i, True) for i in range(4)]
    assert found == [None] * 4
    hit = det.observe("site4", "victim", 110.0, True, code_used=False)
    assert hit is not None and hit.distinct_senders == 5 and hit.level == "recipient"
    assert det.observe("site9", "other", 111.0, True) is None  # other recipients unaffected
    assert det.observe("site4", "victim", 112.0, False) is None  # not a code
    det.observe("site4", "victim", 113.0, True)
    assert det.observe("site4", "victim", 114.0, True).level == "source"  # one site hammering the victim
    # one site sending codes to three victims under attack is abused at scale; three such sites share a prefix
    scale = BombingDetector(BombingConfig(window=600, min_senders=3, source_victims=3, prefix_senders=3))
    found = [scale.observe(f"1069000{i}", f"victim{v}", 10.0 * v + i, True) for v in range(3) for i in range(3)]
    assert [f.level if f else None for f in found[:3]] == [None, None, "recipient"]
    assert found[-1].level == "prefix" and found[-1].target == "1069000" and found[-1].source_victims == 3
    # codes that get used are a person signing up, not an attack
    signup = BombingDetector(BombingConfig(window=600, min_senders=5))
    assert all(signup.observe(f"site{i}", "me", 10.0 * i, True, code_used=True) is None for i in range(6))
    # the same five sites spread over hours are ordinary sign-ups
    slow = BombingDetector(BombingConfig(window=600, min_senders=5))
    assert all(slow.observe(f"site{i}", "v", i * 3600.0, True) is None for i in range(6))


def test_bombing_on_simulator(city) -> None:
    _, messages, _, attacks = city
    r = bombing.evaluate(messages, attacks)
    assert r["attacks_detected"] == r["attacks"] >= 2
    assert r["precision"] >= 0.95 and r["recall"] >= 0.8
    assert r["median_seconds_to_detect"] < 300


def test_rotation_links_by_callees_and_device_with_evidence() -> None:
    idx = RotationIndex(rotation.RotationConfig(min_callees=6, containment=0.5))
    victims = [f"v{i}" for i in range(100)]
    idx.block("old", victims, ["imei1"], ["tpl9"], "reported fraud", 0.0)
    for v in victims[:4] + ["x1"]:
        idx.observe_callee("new", v)
    idx.observe_callee("new", "x1")  # a repeat does not count twice
    assert idx.check("new") is None  # 4 of 5 callees shared, but fewer than min_callees seen
    idx.observe_callee("new", victims[10])
    link = idx.check("new")
    assert link and link.blocked == "old" and link.evidence["shared_callees"] == 5
    assert "5 of its 6 callees" in link.why()
    for i in range(10):
        idx.observe_callee("innocent", f"friend{i}")
    assert idx.check("innocent") is None
    assert idx.check("other", devices=["imei1"]).evidence["device"] == "imei1"
    assert idx.check("other", templates=["tpl9"]).blocked == "old"


def test_rotation_on_simulator(city) -> None:
    calls, messages, labels, _ = city
    r = rotation.evaluate(calls, messages, labels, use_devices=False)
    assert r["replacement_numbers"] >= 3
    assert r["precision"] >= 0.9 and r["recall"] >= 0.7


def test_lists_import_and_lookup(tmp_path: Path) -> None:
    src = tmp_path / "reported.csv"
    src.write_text("pattern\r\n2025550123\r\n2025550123\r\n(202) 555-0199\r\n12\r\nnot a number\r\n")
    db = tmp_path / "s.db"
    report = import_file(src, "ftc-test", db)
    assert (report.rows, report.numbers, report.rejected) == (5, 2, 2)
    assert [r for r, _ in report.examples_rejected] == [4, 5]
    lists = ReputationLists.load(db)
    assert lists.lookup("+1 202-555-0123") == {"ftc-test": 2}
    assert lists.lookup("2025550199") == {"ftc-test": 1}
    assert lists.lookup("13800000000") == {}
    assert normalise_number("+86 138 0013 8000") == "13800138000"
    # re-import replaces the source's rows instead of doubling them
    import_file(src, "ftc-test", db)
    assert len(ReputationLists.load(db)) == 2
    with pytest.raises(ValueError, match="source name"):
        import_file(src, "bad name!", db)


def test_ftc_file_imports(data_dir: Path, tmp_path: Path) -> None:
    report = import_file(data_dir / "ftc_dnc_reported_numbers" / "90days_2025-12-11.csv", "ftc-dnc", tmp_path / "f.db")
    assert report.rows == 337_810
    assert 298_000 < report.numbers <= 298_948
    assert len(ReputationLists.load(tmp_path / "f.db")) == report.numbers


def test_simbox_rule_on_simulator(city) -> None:
    from skyshield.behaviour import simbox

    calls, _, labels, _ = city
    r = simbox.evaluate(calls, labels, days=2)
    assert r["recall"] == 1.0 and r["simbox_numbers"] == 16
    # whatever else fires is fraud too (rotating rings share devices), never an ordinary subscriber or courier
    assert set(r["false_positives_by_kind"]) <= {"fraud"}
    rule = simbox.SimboxRule(min_calls_24h=40, min_numbers_per_device=4)
    assert not rule.fires(100, 1, 1, 16)  # one call back is enough to pass
    assert not rule.fires(100, 0, 1, 1)  # a call-centre phone: one number on the device
    assert rule.fires(100, 0, 1, None)  # without device ids the rule cannot tell
    assert not rule.fires(100, 0, 0, None)  # without cells, "never moves" is unknown
