"""Behaviour feature throughput: Polars batch and streaming updates, beside a naive pandas groupby baseline.

    .venv/bin/python bench/behaviour_features.py [--subscribers 100000] [--days 7] [--stream-events 1000000]

Prints records/s for each, all measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import polars as pl

from skyshield.behaviour.features import WINDOWS, batch_features, prepare_calls
from skyshield.behaviour.simulate import SimConfig, simulate
from skyshield.behaviour.stream import StreamFeatures


def pandas_baseline(calls: pl.DataFrame, messages: pl.DataFrame) -> pd.DataFrame:
    """The obvious pandas version of (most of) the same features: filter per window, groupby, agg, join."""
    c = calls.to_pandas()
    m = messages.to_pandas()
    c["ts"] = c["start"].astype("int64") / 1e6
    m["ts"] = m["time"].astype("int64") / 1e6
    end = max(c["ts"].max(), m["ts"].max())
    c = c.sort_values("ts", kind="stable")
    c["is_new"] = c.groupby(["caller", "callee"]).cumcount() == 0
    c["night"] = c["start"].dt.hour < 6
    out = None
    for name, seconds in WINDOWS.items():
        w = c[c["ts"] > end - seconds]
        answered = w[w["answered"]]
        g = w.groupby("caller").agg(out_calls=("callee", "size"), distinct_callees=("callee", "nunique"),
                                    answer_rate=("answered", "mean"), night_share=("night", "mean"),
                                    new_callee_share=("is_new", "mean"), distinct_cells=("cell", "nunique"))
        g["dur_p50"] = answered.groupby("caller")["duration"].quantile(0.5)
        g["dur_p90"] = answered.groupby("caller")["duration"].quantile(0.9)
        gaps = w.groupby("caller")["ts"].diff()
        gs = gaps.groupby(w["caller"]).agg(["mean", "std"])
        g["gap_cv"] = gs["std"] / gs["mean"]
        g["in_calls"] = w.groupby("callee").size()
        g["msgs_sent"] = m[m["ts"] > end - seconds].groupby("sender").size()
        g = g.fillna(0).add_suffix(f"_{name}")
        out = g if out is None else out.join(g, how="outer")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--stream-events", type=int, default=1_000_000)
    ap.add_argument("--screen-calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved batch runs (Polars, pandas) per figure")
    args = ap.parse_args()

    t = time.perf_counter()
    calls, messages, labels, _ = simulate(SimConfig(subscribers=args.subscribers, days=args.days, seed=1))
    sim_s = time.perf_counter() - t
    records = calls.height + messages.height
    print(f"simulator: {calls.height:,} calls + {messages.height:,} messages in {sim_s:.1f}s "
          f"({records / sim_s:,.0f} records/s)")

    # Interleaved repeats: on a shared machine the load moves; compare medians measured side by side.
    polars_s, pandas_s = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        f = batch_features(calls, messages)
        polars_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        pdf = pandas_baseline(calls, messages)
        pandas_s.append(time.perf_counter() - t)
    batch_s, base_s = float(np.median(polars_s)), float(np.median(pandas_s))
    print(f"batch features (Polars lazy): {f.height:,} numbers x {f.width - 1} features, median {batch_s:.2f}s "
          f"= {records / batch_s:,.0f} records/s (runs: {', '.join(f'{x:.2f}s' for x in polars_s)})")
    print(f"baseline (pandas groupby, same windows): {len(pdf):,} numbers, median {base_s:.2f}s "
          f"= {records / base_s:,.0f} records/s (runs: {', '.join(f'{x:.2f}s' for x in pandas_s)})"
          f"  -> Polars/pandas speed ratio {base_s / batch_s:.2f}")

    ev = prepare_calls(calls.head(args.stream_events)).collect()
    rows = list(ev.select("caller", "callee", "ts", "duration", "answered", "cell", "device").iter_rows())
    s = StreamFeatures()
    t = time.perf_counter()
    s.add_calls(rows)
    stream_s = time.perf_counter() - t
    print(f"streaming updates (per event, one thread): {len(rows):,} calls in {stream_s:.2f}s "
          f"= {len(rows) / stream_s:,.0f} events/s")

    numbers = list(np.random.default_rng(0).choice(f["number"].to_numpy(), size=min(20_000, f.height), replace=False))
    t = time.perf_counter()
    for n in numbers:
        s.features(n)
    read_s = time.perf_counter() - t
    print(f"streaming feature reads: {len(numbers):,} numbers in {read_s:.2f}s = {len(numbers) / read_s:,.0f} reads/s")

    from datetime import datetime

    from skyshield.behaviour.calls import CallScreener
    from skyshield.behaviour.lists import ReputationLists
    from skyshield.behaviour.service import BehaviourService
    from skyshield.events import Call
    from skyshield.policy import Policy

    policy = Policy.load()
    screener = CallScreener(policy, BehaviourService(policy, lists=ReputationLists()))
    sample = calls.head(args.screen_calls)
    attempts = [Call(a, b, t, d, ok) for a, b, t, d, ok in
                sample.select("caller", "callee", "start", "duration", "answered").iter_rows()]
    cells = sample["cell"].to_list()
    devices = sample["device"].to_list()
    assert isinstance(attempts[0].start, datetime)
    t = time.perf_counter()
    blocked = sum(screener.screen(c, cell, dev).action.value == "block"
                  for c, cell, dev in zip(attempts, cells, devices, strict=True))
    screen_s = time.perf_counter() - t
    print(f"call screening (CallScreener.screen: state + rules + model): {len(attempts):,} calls in {screen_s:.2f}s "
          f"= {len(attempts) / screen_s:,.0f} calls/s, {screen_s / len(attempts) * 1e6:.0f} us/call; {blocked} blocked")


if __name__ == "__main__":
    main()
