"""Full engine throughput (every detector, policy, verdicts) beside the text path alone, in one run.

Batches of 1,000 realistic mixed messages (40-80 characters, Chinese telecom texts and UCI SMS, with a
sender from a pool of a few hundred, a recipient from several countries and a time across one day) go
through ``build_engine().check``. The text path alone (``analyse_batch`` + ``model.predict`` on each
batch's distinct texts, as the engine does) is the baseline, timed on the same batches in the same run.
Then each part of the engine is timed per message: analysis, text model, every detector's ``detect`` and
``settle``, ``policy.decide`` and the engine's own bookkeeping (the rest).

    .venv/bin/python bench/engine_throughput.py [--data ../shared/data] [--batches 20] [--span 86400]

With the default span (255 senders over one day) almost every message is its sender's first in a minute, so the
behaviour model rescores it: the heavy case. ``--span 60`` is a busier minute (the model reruns once per sender).
The full engine runs twice, with CPython's default garbage-collector settings and tuned as ``skyshield serve``,
the gateways and ``classify`` run it (``assembly.tune_gc_for_serving``).

The consent ledger and block database live in a temporary folder (``SKYSHIELD_DB``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from skyshield.events import Message  # noqa: E402


def load_texts(data: Path) -> list[str]:
    texts: list[str] = []
    with open(data / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv", encoding="utf-8", newline="") as fh:
        texts += [row["text"] for row in csv.DictReader(fh)]
    with open(data / "uci_sms_spam" / "SMSSpamCollection", encoding="utf-8") as fh:
        texts += [line.split("\t", 1)[1].strip() for line in fh if "\t" in line]
    return [t for t in texts if 40 <= len(t) <= 80]


def make_batches(texts: list[str], batches: int, size: int, span: int = 86_400, seed: int = 7) -> list[list[Message]]:
    rng = random.Random(seed)
    senders = ([f"+8613{rng.randrange(10**8, 10**9)}" for _ in range(150)]
               + [f"+4477{rng.randrange(10**7, 10**8)}" for _ in range(100)]
               + ["BANKCO", "SHOPNOW", "95588", "10086", "ACME"])
    prefixes = ["+86138", "+86139", "+4477", "+1415", "+1212", "+3361", "+4915"]
    start = datetime(2026, 3, 2, tzinfo=UTC)
    out = []
    for b in range(batches):
        batch = []
        for i in range(size):
            t = start + timedelta(seconds=(b * size + i) * span / (batches * size))
            recipient = rng.choice(prefixes) + str(rng.randrange(10**7, 10**8))
            batch.append(Message(rng.choice(texts), sender=rng.choice(senders), recipient=recipient, time=t))
        out.append(batch)
    return out


class Timer:
    """Accumulates seconds per named part; ``wrap`` returns a timed version of a callable."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
        return timed


def clear_caches() -> None:
    """Empty every ``lru_cache`` in skyshield, so each run starts cold (same recipients and texts each run)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("skyshield"):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


class TimedModel:
    def __init__(self, model: Any, timer: Timer):
        self.version = model.version
        self.predict = timer.wrap("text model (predict)", model.predict)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--span", type=int, default=86_400, help="seconds of traffic the messages cover (default one day)")
    ap.add_argument("--profile", type=Path, help="also write a cProfile of the tuned full-engine run here")
    args = ap.parse_args()
    if not (args.data / "uci_sms_spam").is_dir():
        sys.exit(f"{args.data}: public corpora not found (see shared/data/README.md)")
    tmp = tempfile.TemporaryDirectory(prefix="skyshield-engine-bench-")
    os.environ["SKYSHIELD_DB"] = f"sqlite:///{tmp.name}/bench.db"

    from skyshield.assembly import build_engine, tune_gc_for_serving
    from skyshield.text.extract import analyse_batch

    batches = make_batches(load_texts(args.data), args.batches, args.batch_size, args.span)
    n = sum(len(b) for b in batches)
    engine = build_engine()
    engine.check(batches[0][:50])  # open databases, load the model, warm caches of the first call

    # baseline: the text path alone, as the engine runs it (each batch's distinct texts once)
    clear_caches()
    t0 = time.perf_counter()
    for batch in batches:
        engine.model.predict(analyse_batch(list(dict.fromkeys(m.text for m in batch))))
    text_s = time.perf_counter() - t0

    import cProfile

    def run_all(label: str) -> float:
        clear_caches()
        engine = build_engine()
        engine.check(batches[0][:50])
        if label == "tuned":
            tune_gc_for_serving()
        prof = cProfile.Profile() if args.profile and label == "tuned" else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        for batch in batches:
            engine.check(batch)
        if prof:
            prof.disable()
            prof.dump_stats(str(args.profile))
        return time.perf_counter() - t0

    full_s = run_all("default")  # CPython's default garbage collector settings
    tuned_s = run_all("tuned")  # as `serve`, the gateways and `classify` run it (assembly.tune_gc_for_serving)

    # the breakdown: a fresh engine with every part wrapped in a timer (the timers cost a little)
    timer = Timer()
    clear_caches()
    engine = build_engine()
    engine.check(batches[0][:50])
    engine.analyse = timer.wrap("text analysis (normalise + extract)", engine.analyse)
    engine.model = TimedModel(engine.model, timer)
    for d in engine.detectors:
        d.detect = timer.wrap(f"detector {d.name}: detect", d.detect)
        if getattr(d, "settle", None) is not None:
            d.settle = timer.wrap(f"detector {d.name}: settle", d.settle)
    engine.policy.decide = timer.wrap("policy.decide (points, action, Verdict)", engine.policy.decide)
    t0 = time.perf_counter()
    for batch in batches:
        engine.check(batch)
    timed_s = time.perf_counter() - t0
    timer.seconds["engine bookkeeping (the rest)"] = timed_s - sum(timer.seconds.values())

    chars = sum(len(m.text) for b in batches for m in b) / n
    distinct = len({m.text for b in batches for m in b})
    print(f"{n:,} messages in batches of {args.batch_size:,}, mean {chars:.0f} chars, {distinct:,} distinct texts, "
          f"{args.span:,}s of traffic (cpus: {os.cpu_count()}, load {os.getloadavg()[0]:.1f})")
    rows = [("full engine (build_engine().check), default gc", full_s),
            ("full engine, gc tuned as servers run it", tuned_s),
            ("baseline: text path alone (analyse + predict)", text_s)]
    for name, s in rows:
        print(f"{name:<50} {n / s:>9,.0f} msg/s {s / n * 1e6:>8.1f} us/msg")
    outside = (tuned_s - text_s) / n * 1e6
    print(f"{'outside the text path (full, tuned gc - baseline)':<50} {'':>15} {outside:>8.1f} us/msg")
    print(f"per part (timed run, tuned gc, {n / timed_s:,.0f} msg/s):")
    for name, s in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<52} {s / n * 1e6:>8.1f} us/msg")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
