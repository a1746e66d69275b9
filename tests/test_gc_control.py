"""The incremental collector: small young-generation collections when the server chooses, and a periodic full one."""

from __future__ import annotations

import gc
import weakref

from skyshield.gc_control import IncrementalCollector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_young_cycles_are_collected_when_due_and_frozen_ones_at_the_full_collection():
    was_enabled = gc.isenabled()
    try:
        collector = IncrementalCollector()
        assert not gc.isenabled()  # never on its own, in the middle of work
        young = _Cycle()
        young_ref = weakref.ref(young)
        del young
        assert not collector.collect_if_due()  # few new objects: nothing to do yet
        keep = [[] for _ in range(2 * collector.YOUNG)]
        assert collector.collect_if_due() and young_ref() is None  # idle, young generation full: collected
        assert gc.get_count()[0] < 100 and keep
        old = _Cycle()
        collector._young()  # survives, frozen
        old_ref = weakref.ref(old)
        del old
        collector.collect_if_overdue()
        assert old_ref() is not None  # frozen garbage waits for the periodic full collection
        collector.last_full -= collector.FULL_EVERY
        assert collector.collect_if_due() and old_ref() is None
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
