"""The in-process sliding-window counter behind the frequency caps."""

from __future__ import annotations

from skyshield.compliance.caps import SlidingCounter


def test_pruning_forgets_old_sends_without_changing_any_count_in_the_window():
    counter = SlidingCounter()
    for t in range(0, 10_000, 10):  # one send every 10 s for ~2.8 h, on two keys
        counter.add("a", float(t))
        counter.add("b", float(t) + 5)
    before = counter.count("a", 9_990.0, 600)
    counter.prune(5_000.0)
    assert counter.count("a", 9_990.0, 600) == before == 60
    assert counter.count("a", 4_990.0, 600) == 0, "sends before the prune point are forgotten"
    assert counter.count("b", 9_995.0, 3_600) == 360


def test_pruning_is_amortised_but_still_happens_as_time_moves_on():
    counter = SlidingCounter()
    counter.add("old", 0.0)
    counter.prune(10.0)
    counter.add("recent", 100.0)
    counter.prune(200.0)  # less than PRUNE_EVERY_S since the last prune: skipped, the walk is not repeated
    assert counter.count("recent", 100.0, 50) == 1
    counter.prune(10.0 + SlidingCounter.PRUNE_EVERY_S)
    assert counter.count("recent", 100.0, 50) == 0 and counter.count("old", 0.0, 50) == 0
