"""Frequency caps: at most N sends in a sliding window, per (signature, recipient) and per recipient.

Counters live in memory (sorted send times per key) so a check costs no I/O; the detector
persists delivered sends to the ledger and warms the counters from it on start. A window counts
the sends in ``(t - window, t]``: with ``1 / 1m`` a send at 10:00:00 allows the next at 10:01:00.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from skyshield.policy import parse_rate


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    window_s: int
    text: str  # as the policy wrote it, for evidence


def parse_rates(texts: Sequence[str]) -> list[Rate]:
    rates = []
    for text in texts:
        limit, window = parse_rate(text)
        rates.append(Rate(limit, window, " ".join(text.split())))
    return rates


@dataclass(frozen=True, slots=True)
class CapHit:
    """A cap this send goes over: which one, the sends already in its window, and the limit."""

    rule: str
    rate: str
    window_s: int
    count: int
    limit: int


#: One cap check: (key, send time, rates, rule name for the evidence, whether to count the send).
CapCheck = tuple[Hashable, float, Sequence[Rate], str, bool]


class SlidingCounter:
    """Sorted event times per key; thread-safe. Times are unix seconds (the message's own time).

    The in-process :class:`skyshield.shared_state.WindowCounter`; ``[state] url`` swaps in a Redis one.
    """

    shared = False

    #: A prune walks every key, so it runs at most once per this much event time (callers already keep a
    #: day beyond the longest window, so an hour's delay costs memory, never a count).
    PRUNE_EVERY_S = 3600.0

    def __init__(self) -> None:
        self._events: dict[Hashable, list[float]] = {}
        self._lock = threading.Lock()
        self._pruned_before = float("-inf")

    def count(self, key: Hashable, t: float, window_s: int) -> int:
        events = self._events.get(key)
        if not events:
            return 0
        return bisect.bisect_right(events, t) - bisect.bisect_right(events, t - window_s)

    def check_and_add(
        self, key: Hashable, t: float, rates: Sequence[Rate], rule: str, add: bool = True
    ) -> list[CapHit]:
        """The caps ``t`` breaks given the sends so far; the send is then counted (reserved) when ``add``."""
        with self._lock:
            hits = []
            for rate in rates:
                n = self.count(key, t, rate.window_s)
                if n >= rate.limit:
                    hits.append(CapHit(rule, rate.text, rate.window_s, n, rate.limit))
            if add:
                bisect.insort(self._events.setdefault(key, []), t)
            return hits

    def check_and_add_many(self, checks: Sequence[CapCheck]) -> list[list[CapHit]]:
        """``check_and_add`` for each (key, t, rates, rule, add), in order: later ones see earlier ones."""
        return [self.check_and_add(key, t, rates, rule, add) for key, t, rates, rule, add in checks]

    def add(self, key: Hashable, t: float) -> None:
        with self._lock:
            bisect.insort(self._events.setdefault(key, []), t)

    def add_and_count(self, key: Hashable, t: float, window_s: float) -> int:
        with self._lock:
            bisect.insort(self._events.setdefault(key, []), t)
            return self.count(key, t, window_s)

    def remove(self, key: Hashable, t: float) -> None:
        """Un-count one send (a reservation whose message was blocked)."""
        with self._lock:
            events = self._events.get(key)
            if events:
                i = bisect.bisect_left(events, t)
                if i < len(events) and events[i] == t:
                    del events[i]

    def warm(self, events: Iterable[tuple[Hashable, float]]) -> None:
        """Load past events (a restarted process's send log)."""
        for key, t in events:
            self.add(key, t)

    def prune(self, before: float) -> None:
        if before - self._pruned_before < self.PRUNE_EVERY_S:
            return
        with self._lock:
            self._pruned_before = before
            for key in list(self._events):
                events = self._events[key]
                del events[: bisect.bisect_left(events, before)]
                if not events:
                    del self._events[key]
