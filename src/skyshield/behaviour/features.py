"""Per-number behaviour features over sliding windows: ONE definition for batch and streaming.

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

:func:`batch_features` computes them with Polars (lazy) for every number at once; ``stream.StreamFeatures``
keeps per-number state updated per event and computes the same names with the same formulas; a test checks
the two agree on simulator output.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

WINDOWS: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
NIGHT_END_HOUR = 6
PER_WINDOW = ("out_calls", "in_calls", "distinct_callees", "answer_rate", "dur_p50", "dur_p90", "out_in_ratio",
              "night_share", "new_callee_share", "gap_cv", "distinct_cells", "msgs_sent")
FEATURE_NAMES: list[str] = [f"{f}_{w}" for w in WINDOWS for f in PER_WINDOW] + ["maturity_days"]
HISTORY = max(WINDOWS.values())


def to_seconds(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6


def prepare_calls(calls: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Calls sorted by time with the per-event facts both paths share: ``ts``, ``night``, ``is_new``."""
    lf = calls.lazy() if isinstance(calls, pl.DataFrame) else calls
    return (
        lf.sort("start", maintain_order=True)
        .with_columns(
            to_seconds("start").alias("ts"),
            (pl.col("start").dt.hour() < NIGHT_END_HOUR).alias("night"),
            # 64-bit hashes of the numbers: group-bys on integers are several times faster than on strings
            # (two numbers sharing a hash, odds ~n²/2⁶⁴, would merge; the stream keeps exact strings)
            pl.col("caller").hash().alias("_ch"),
            pl.col("callee").hash().alias("_eh"),
        )
        .with_columns((pl.col("_ch") ^ (pl.col("_eh") * 0x9E3779B97F4A7C15)).is_first_distinct().alias("is_new"))
    )


def _window_features(calls: pl.LazyFrame, messages: pl.LazyFrame, t_end: float) -> pl.LazyFrame:
    """All windows in one pass per side. Every per-window quantity is first an ordinary column (a flag, or a
    value that is null outside the window) so the group-by only runs Polars' native aggregations."""
    lo = {name: t_end - seconds for name, seconds in WINDOWS.items()}
    win = calls.filter(pl.col("ts") > t_end - HISTORY)
    # the caller's previous call (rows are in time order; a window function is far cheaper than a sort)
    win = win.with_columns(pl.col("ts").shift().over("_ch").alias("_prev"))
    prev = pl.col("_prev")
    cols: list[pl.Expr] = []
    aggs: list[pl.Expr] = []
    finish: list[pl.Expr] = []
    for name in WINDOWS:
        inw = pl.col("ts") > lo[name]
        cols += [
            inw.alias(f"_in_{name}"),
            (inw & pl.col("answered")).alias(f"_ans_{name}"),
            (inw & pl.col("night")).alias(f"_night_{name}"),
            (inw & pl.col("is_new")).alias(f"_new_{name}"),
            pl.when(inw & pl.col("answered")).then(pl.col("duration")).alias(f"_dur_{name}"),
            pl.when(prev > lo[name]).then(pl.col("ts") - prev).alias(f"_gap_{name}"),
        ]
        n = pl.col(f"_in_{name}").sum().cast(pl.Float64)
        safe_n = pl.max_horizontal(n, pl.lit(1.0))
        gap = pl.col(f"_gap_{name}")
        aggs += [
            n.alias(f"out_calls_{name}"),
            (pl.col(f"_ans_{name}").sum() / safe_n).alias(f"answer_rate_{name}"),
            (pl.col(f"_night_{name}").sum() / safe_n).alias(f"night_share_{name}"),
            (pl.col(f"_new_{name}").sum() / safe_n).alias(f"new_callee_share_{name}"),
            pl.col(f"_dur_{name}").quantile(0.5, "linear").alias(f"dur_p50_{name}"),
            pl.col(f"_dur_{name}").quantile(0.9, "linear").alias(f"dur_p90_{name}"),
            gap.mean().alias(f"_gm_{name}"),
            gap.std(ddof=0).alias(f"_gs_{name}"),
            gap.count().alias(f"_gn_{name}"),
        ]
        gm, gs = pl.col(f"_gm_{name}"), pl.col(f"_gs_{name}")
        finish.append(pl.when((pl.col(f"_gn_{name}") >= 2) & (gm > 0)).then(gs / gm).otherwise(0.0)
                      .alias(f"gap_cv_{name}"))
    made = (
        win.with_columns(*cols).group_by("_ch").agg(pl.col("caller").first(), *aggs).drop("_ch")
        .with_columns(*finish).drop([f"_{k}_{name}" for name in WINDOWS for k in ("gm", "gs", "gn")])
    )
    # distinct callees / cells in a window: pairs whose latest call falls inside it
    pairs = win.group_by("_ch", "_eh").agg(pl.col("ts").max().alias("last")).group_by("_ch").agg(
        *[(pl.col("last") > lo[name]).sum().cast(pl.Float64).alias(f"distinct_callees_{name}") for name in WINDOWS])
    cells = (
        win.filter(pl.col("cell").is_not_null()).group_by("_ch", "cell").agg(pl.col("ts").max().alias("last"))
        .group_by("_ch").agg(*[(pl.col("last") > lo[name]).sum().cast(pl.Float64)
                               .alias(f"distinct_cells_{name}") for name in WINDOWS])
    )
    made = made.with_columns(pl.col("caller").hash().alias("_ch"))
    received = win.group_by("_eh").agg(pl.col("callee").first(), *[
        (pl.col("ts") > lo[name]).sum().cast(pl.Float64).alias(f"in_calls_{name}") for name in WINDOWS]).drop("_eh")
    sent = messages.filter(pl.col("ts") > t_end - HISTORY).group_by("sender").agg(
        *[(pl.col("ts") > lo[name]).sum().cast(pl.Float64).alias(f"msgs_sent_{name}") for name in WINDOWS])
    joined = (
        made.join(pairs, on="_ch", how="left").join(cells, on="_ch", how="left").drop("_ch")
        .rename({"caller": "number"})
        .join(received.rename({"callee": "number"}), on="number", how="full", coalesce=True)
        .join(sent.rename({"sender": "number"}), on="number", how="full", coalesce=True)
        .with_columns(pl.exclude("number").fill_null(0.0))
    )
    return joined.with_columns(
        *[(pl.col(f"out_calls_{name}") / (pl.col(f"in_calls_{name}") + 1.0)).alias(f"out_in_ratio_{name}")
          for name in WINDOWS])


def batch_features(
    calls: pl.DataFrame | pl.LazyFrame,
    messages: pl.DataFrame | pl.LazyFrame | None = None,
    at: datetime | None = None,
    activation: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features of every number active in the last 7 days before ``at`` (default: the last event).

    ``activation`` (columns ``number``, ``activated``) gives number ages; without it a number's age counts
    from its first appearance in ``calls``/``messages``.
    """
    c = prepare_calls(calls)
    m_lf = (messages.lazy() if isinstance(messages, pl.DataFrame) else messages) if messages is not None else None
    if m_lf is None:
        m_lf = pl.LazyFrame(schema={"sender": pl.String, "recipient": pl.String, "time": pl.Datetime("us")})
    m = m_lf.with_columns(to_seconds("time").alias("ts"))
    if at is None:
        last = pl.concat([c.select(pl.col("ts").max()), m.select(pl.col("ts").max())]).max().collect().item()
        t_end = float(last) if last is not None else 0.0
    else:
        t_end = at.timestamp() if at.tzinfo else (at - datetime(1970, 1, 1)).total_seconds()
    c = c.filter(pl.col("ts") <= t_end)  # ``is_new`` was computed over all history first, as a stream sees it
    m = m.filter(pl.col("ts") <= t_end)
    result = _window_features(c, m, t_end)
    if activation is not None:
        act = activation.lazy().select(pl.col("number").hash().alias("_h"), to_seconds("activated").alias("first"))
    else:  # first appearance anywhere, grouped on the numbers' hashes (cheaper than on strings)
        act = pl.concat([
            c.select(pl.col("_ch").alias("_h"), "ts"), c.select(pl.col("_eh").alias("_h"), "ts"),
            m.select(pl.col("sender").hash().alias("_h"), "ts"), m.select(pl.col("recipient").hash().alias("_h"), "ts"),
        ]).group_by("_h").agg(pl.col("ts").min().alias("first"))
    result = (
        result.with_columns(pl.col("number").hash().alias("_h")).join(act, on="_h", how="left").drop("_h")
        .with_columns(((t_end - pl.col("first").fill_null(t_end)) / 86_400).clip(lower_bound=0).alias("maturity_days"))
        .with_columns(pl.exclude("number").fill_null(0.0))
        .select("number", *FEATURE_NAMES)
    )
    return result.collect().sort("number")
