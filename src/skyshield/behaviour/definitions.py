"""The behaviour window features, defined once as data; every engine that computes them reads this module.

For a number ``x`` at reference time ``T`` and each window ``w`` (1 h, 24 h, 7 d) the features read the
events with ``T - w < t <= T``:

==================== =====================================================================================
out_calls_w          calls made by ``x``
in_calls_w           calls received by ``x``
distinct_callees_w   different numbers ``x`` called
answer_rate_w        answered / made (0 with no calls)
dur_p50_w, dur_p90_w duration percentiles (linear interpolation) of ``x``'s answered calls (0 if none)
out_in_ratio_w       out_calls / (in_calls + 1)
night_share_w        share of made calls starting 00:00-05:59 (record clock)
new_callee_share_w   share of made calls that were ``x``'s first ever call to that callee
gap_cv_w             regularity: std / mean of the gaps between consecutive made calls (0 with < 2 gaps);
                     dialers are regular (low), people are bursty (high)
distinct_cells_w     different cells ``x`` called from (SIM-boxes never move)
msgs_sent_w          messages sent by ``x``
maturity_days        days since the number was activated (or first seen, without an activation table)
==================== =====================================================================================

Each per-window feature is a :class:`WindowFeature`: which side of an event it belongs to (the number that
*made* a call, *received* one, or *sent* a message), the aggregate (count, share of a flag, quantile of a
value, coefficient of variation of the gaps, distinct values, or a ratio of two other features) and the
event columns it reads. The per-event facts are defined here too, once:

* ``ts``: event time, epoch seconds; ``night``: the record-clock hour is before :data:`NIGHT_END_HOUR`;
* ``is_new``: the first call ever (over all history, not only the window) from this caller to this callee;
* ``prev``: the caller's previous call time; ``gap = ts - prev``, counted in a window when ``prev`` is in it.

Three engines compute the table: :func:`skyshield.behaviour.features.batch_features` compiles it to Polars
(one machine), :func:`skyshield.spark.job.spark_features` compiles it to Spark (a cluster), and
:class:`skyshield.behaviour.stream.StreamFeatures` keeps per-number state and evaluates each aggregate
incrementally. The tests check all three agree on simulated records.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Window name -> length in seconds.
WINDOWS: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
#: A call starting before this hour of the record clock is a night call.
NIGHT_END_HOUR = 6
#: The longest window: events older than this never matter.
HISTORY = max(WINDOWS.values())

MADE, RECEIVED, SENT, DERIVED = "made", "received", "sent", "derived"
#: Which event column holds the number each side groups by.
SIDE_KEY = {MADE: "caller", RECEIVED: "callee", SENT: "sender"}
#: The gap's own window test: the previous call must lie inside the window too.
GAP_FROM = "prev"


@dataclass(frozen=True, slots=True)
class WindowFeature:
    """One per-window feature. ``agg``: count | share | quantile | cv | distinct | ratio."""

    name: str
    side: str  # made | received | sent | derived (ratio of two features)
    agg: str
    of: str | None = None  # the event column it reads (a flag, a value, a key), or for ratio the numerator
    when: str | None = None  # an event flag that must also hold (answered, for durations)
    q: float = 0.0  # quantile
    denominator: str | None = None  # ratio: of / (denominator + 1)


FEATURES: tuple[WindowFeature, ...] = (
    WindowFeature("out_calls", MADE, "count"),
    WindowFeature("in_calls", RECEIVED, "count"),
    WindowFeature("distinct_callees", MADE, "distinct", of="callee"),
    WindowFeature("answer_rate", MADE, "share", of="answered"),
    WindowFeature("dur_p50", MADE, "quantile", of="duration", when="answered", q=0.5),
    WindowFeature("dur_p90", MADE, "quantile", of="duration", when="answered", q=0.9),
    WindowFeature("out_in_ratio", DERIVED, "ratio", of="out_calls", denominator="in_calls"),
    WindowFeature("night_share", MADE, "share", of="night"),
    WindowFeature("new_callee_share", MADE, "share", of="is_new"),
    WindowFeature("gap_cv", MADE, "cv", of="gap"),
    WindowFeature("distinct_cells", MADE, "distinct", of="cell"),
    WindowFeature("msgs_sent", SENT, "count"),
)
#: The per-window feature names, in table order.
PER_WINDOW: tuple[str, ...] = tuple(f.name for f in FEATURES)
#: The model's input columns: every per-window feature for every window, then the number's age.
FEATURE_NAMES: list[str] = [f"{f}_{w}" for w in WINDOWS for f in PER_WINDOW] + ["maturity_days"]
#: Features by name (the streaming path looks up its formulas' parameters here).
BY_NAME: dict[str, WindowFeature] = {f.name: f for f in FEATURES}


def window_bounds(t_end: float) -> dict[str, float]:
    """The exclusive lower bound of every window: an event at ``t`` is inside when ``lo < t <= t_end``."""
    return {name: t_end - seconds for name, seconds in WINDOWS.items()}
