"""Streaming per-number features: state updated per event, features read on demand.

The names, windows and night hours come from :mod:`skyshield.behaviour.definitions` (see its table); this
module evaluates each aggregate of that table incrementally (``COMPUTED`` lists the features it has a
formula for, and a test checks that is all of them). Each number keeps the
events of the last 7 days in time order (older ones are dropped as new ones arrive) plus the set of
numbers it ever called; an update is O(1) amortised, a read is one pass over that number's window.
Events must arrive in time order (as from a switch); late events are accepted but windows then trust
the arrival order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable

import numpy as np

from skyshield.behaviour.definitions import FEATURE_NAMES, HISTORY, NIGHT_END_HOUR, PER_WINDOW, WINDOWS

_NIGHT_S = NIGHT_END_HOUR * 3600
#: The per-window features :meth:`StreamFeatures.features` has a formula for (must be all of ``PER_WINDOW``).
COMPUTED = ("out_calls", "in_calls", "distinct_callees", "answer_rate", "dur_p50", "dur_p90", "out_in_ratio",
            "night_share", "new_callee_share", "gap_cv", "distinct_cells", "msgs_sent")


class NumberState:
    __slots__ = ("out", "inc", "sent", "contacts", "first", "codes_in", "devices")

    def __init__(self, first: float):
        # (ts, callee, answered, duration, night, is_new, cell)
        self.out: deque[tuple[float, str, bool, float, bool, bool, str | None]] = deque()
        self.inc: deque[float] = deque()
        self.sent: deque[float] = deque()
        self.contacts: set[str] = set()
        self.first = first
        self.codes_in = 0
        self.devices: set[str] = set()


class StreamFeatures:
    """Per-number state for every number seen; ``features(number, at)`` returns the feature dict."""

    def __init__(self, activation: dict[str, float] | None = None):
        self.numbers: dict[str, NumberState] = {}
        #: number -> activation time (epoch seconds), when the operator's subscriber table is known.
        self.activation = activation or {}
        self.last_ts = 0.0

    def _state(self, number: str, ts: float) -> NumberState:
        st = self.numbers.get(number)
        if st is None:
            st = self.numbers[number] = NumberState(ts)
        return st

    def add_call(self, caller: str, callee: str, ts: float, duration: float = 0.0, answered: bool = False,
                 cell: str | None = None, device: str | None = None) -> NumberState:
        """Record one call made at ``ts`` (epoch seconds); returns the caller's state."""
        horizon = ts - HISTORY
        st = self.numbers.get(caller)
        if st is None:
            st = self.numbers[caller] = NumberState(ts)
        contacts = st.contacts
        is_new = callee not in contacts
        if is_new:
            contacts.add(callee)
        out = st.out
        out.append((ts, callee, answered, duration, ts % 86_400 < _NIGHT_S, is_new, cell))
        while out[0][0] <= horizon:
            out.popleft()
        if device is not None:
            st.devices.add(device)
        other = self.numbers.get(callee)
        if other is None:
            other = self.numbers[callee] = NumberState(ts)
        inc = other.inc
        inc.append(ts)
        while inc[0] <= horizon:
            inc.popleft()
        if ts > self.last_ts:
            self.last_ts = ts
        return st

    def complete_call(self, caller: str, callee: str, ts: float, duration: float, answered: bool) -> bool:
        """Fill in the outcome of a call recorded at set-up time (e.g. from the SIP path); False if not found."""
        st = self.numbers.get(caller)
        if st is None:
            return False
        out = st.out
        for i in range(len(out) - 1, -1, -1):
            e = out[i]
            if e[0] < ts:
                break
            if e[0] == ts and e[1] == callee:
                out[i] = (e[0], e[1], answered, duration, e[4], e[5], e[6])
                return True
        return False

    def add_message(self, sender: str, recipient: str, ts: float) -> NumberState:
        """Record one message sent at ``ts``; returns the sender's state."""
        st = self._state(sender, ts)
        sent = st.sent
        sent.append(ts)
        horizon = ts - HISTORY
        while sent[0] <= horizon:
            sent.popleft()
        if recipient and recipient not in self.numbers:
            self.numbers[recipient] = NumberState(ts)
        if ts > self.last_ts:
            self.last_ts = ts
        return st

    def add_calls(self, rows: Iterable[tuple]) -> None:
        """Bulk feed ``(caller, callee, ts, duration, answered, cell, device)`` tuples."""
        add = self.add_call
        for r in rows:
            add(*r)

    def features(self, number: str, at: float | None = None) -> dict[str, float]:
        """The feature dict of ``number`` at time ``at`` (default: the latest event seen)."""
        return dict(zip(FEATURE_NAMES, self._values(number, at), strict=True))

    def _values(self, number: str, at: float | None) -> list[float]:
        """The features of ``number`` at ``at``, in :data:`FEATURE_NAMES` order."""
        at = self.last_ts if at is None else at
        st = self.numbers.get(number)
        if st is None:
            return [0.0] * len(FEATURE_NAMES)
        result: list[float] = []
        out = [e for e in st.out if e[0] <= at] if st.out else []
        ts = np.fromiter((e[0] for e in out), float, len(out))
        los = [at - seconds for seconds in WINDOWS.values()]
        # events inside each window at once (times need not be sorted: late events count where they fall)
        n_in = _count_after(st.inc, at, los)
        n_sent = _count_after(st.sent, at, los)
        firsts = np.searchsorted(ts, los, side="right").tolist() if out else [0] * len(WINDOWS)
        for w in range(len(WINDOWS)):
            first = firsts[w]
            n = len(out) - first
            vals = dict.fromkeys(COMPUTED, 0.0)
            vals["in_calls"] = n_in[w]
            vals["msgs_sent"] = n_sent[w]
            if n:
                window = out[first:]
                answered = [e[3] for e in window if e[2]]
                vals["out_calls"] = float(n)
                vals["distinct_callees"] = float(len({e[1] for e in window}))
                vals["answer_rate"] = len(answered) / n
                if answered:
                    vals["dur_p50"], vals["dur_p90"] = (float(q) for q in np.quantile(answered, (0.5, 0.9)))
                vals["night_share"] = sum(e[4] for e in window) / n
                vals["new_callee_share"] = sum(e[5] for e in window) / n
                if n >= 3:
                    gaps = np.diff(ts[first:])
                    mean = gaps.mean()
                    vals["gap_cv"] = float(gaps.std() / mean) if mean > 0 else 0.0
                vals["distinct_cells"] = float(len({e[6] for e in window if e[6] is not None}))
            vals["out_in_ratio"] = vals["out_calls"] / (n_in[w] + 1.0)
            result += [vals[f] for f in PER_WINDOW]
        first_seen = self.activation.get(number, st.first)
        result.append(max(0.0, (at - first_seen) / 86_400))  # maturity_days
        return result

    def prune(self, now: float) -> int:
        """Forget numbers with no event in the last 7 days (their ``contacts`` go too); returns how many."""
        horizon = now - HISTORY
        idle = [n for n, st in self.numbers.items()
                if not (st.out and st.out[-1][0] > horizon) and not (st.inc and st.inc[-1] > horizon)
                and not (st.sent and st.sent[-1] > horizon) and st.first <= horizon]
        for n in idle:
            del self.numbers[n]
        return len(idle)

    def vector(self, number: str, at: float | None = None) -> np.ndarray:
        return np.array(self._values(number, at), dtype=float)


def _count_after(times: deque[float], at: float, los: list[float]) -> list[float]:
    """Per window bound ``lo`` in ``los``: how many of ``times`` lie in ``(lo, at]``."""
    if not times:
        return [0.0] * len(los)
    ordered = sorted(times)  # already in order (linear), unless events came late
    hi = bisect_right(ordered, at)
    return [float(hi - bisect_right(ordered, lo, 0, hi)) for lo in los]
