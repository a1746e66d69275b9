"""Behaviour window features: Spark ``local[2]`` against Polars on the same simulated call records.

Simulates a city (``skyshield simulate``), writes it as day-partitioned Parquet, then times, on the same
records: the feature table (``behaviour.definitions``) compiled to Polars (``batch_features``, the baseline)
and compiled to Spark reading the Parquet folders (session start-up reported apart). Prints call records per
second per engine and checks both agree.

    .venv/bin/python bench/spark_features.py [--subscribers 10000] [--days 7] [--master local[2]]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    from skyshield.behaviour.features import FEATURE_NAMES, batch_features
    from skyshield.behaviour.simulate import SimConfig, simulate, write

    calls, messages, labels, attacks = simulate(SimConfig(subscribers=args.subscribers, days=args.days, seed=3))
    n = calls.height + messages.height
    with tempfile.TemporaryDirectory(prefix="skyshield-spark-") as tmp:
        records = Path(tmp) / "records"
        write(records, calls, messages, labels, attacks)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        expected = batch_features(calls, messages)
        timings["Polars batch_features (baseline)"] = time.perf_counter() - t0
        try:
            from skyshield.spark.job import read_records, spark_features, spark_session
        except ImportError:
            sys.exit("pyspark is not installed: pip install -e '.[spark]'")
        t0 = time.perf_counter()
        spark = spark_session(args.master)
        startup = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            c, m = read_records(spark, records)
            out = Path(tmp) / "profiles"
            spark_features(c, m).write.mode("overwrite").parquet(str(out))
            timings[f"Spark {args.master}, shared definition (Parquet in and out)"] = time.perf_counter() - t0
        finally:
            spark.stop()
        import polars as pl

        got = pl.read_parquet(str(out / "*.parquet")).sort("number")
    agree = all(np.allclose(expected[f].to_numpy(), other[f].to_numpy(), rtol=1e-9, atol=1e-9)
                for other in (got,) for f in FEATURE_NAMES) and got.height == expected.height
    print(f"{calls.height:,} calls + {messages.height:,} messages ({args.subscribers:,} subscribers x {args.days} days)"
          f" -> {expected.height:,} number profiles x {len(FEATURE_NAMES)} features (cpus: {os.cpu_count()})")
    print(f"{'engine':<62} {'seconds':>8} {'records/s':>11}")
    for name, seconds in timings.items():
        print(f"{name:<62} {seconds:>8.2f} {n / seconds:>11,.0f}")
    print(f"{'Spark session start-up (once per job, not counted above)':<62} {startup:>8.2f}")
    print("Polars and Spark agree:", "yes" if agree else "NO")
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
