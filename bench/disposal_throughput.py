"""Disposal throughput, each figure beside a baseline measured in the same run:

1. campaign clustering (``Disposal.refresh``: analyse + slot + MinHash + LSH + write) in messages/s, beside
   exact-template grouping (analyse + slot + hash, no MinHash/LSH) on the same texts;
2. the engine with active blocks of every kind (number, signature, domain, template, campaign) beside the
   same engine with no block, in messages/s, batches of 500.

    .venv/bin/python bench/disposal_throughput.py [--data ../shared/data] [--messages 20000]

Texts: the Chinese 800k subset (ham and spam) when --data has it, else synthetic waves.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def texts(data: Path, n: int) -> list[str]:
    rng = random.Random(1)
    try:
        from skyshield.text.datasets import read_zh800k

        pool = [r.text for r in read_zh800k(data)]
        print(f"texts: {len(pool)} from the 800k subset; sampling {n}", file=sys.stderr)
    except (FileNotFoundError, OSError):
        pool = [f"【店{i % 50}】尊敬的客户，您的额度已提升至{i}元，点击 http://a{i}.cn 领取，回T退订"
                for i in range(500)]
        print("texts: synthetic waves (no corpora)", file=sys.stderr)
    return [rng.choice(pool) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--messages", type=int, default=20000)
    args = ap.parse_args()

    from skyshield.assembly import build_engine
    from skyshield.config import load_settings
    from skyshield.disposal.campaigns import templates
    from skyshield.disposal.service import Disposal
    from skyshield.events import Message
    from skyshield.policy import Policy
    from skyshield.text.extract import analyse_batch

    sample = texts(args.data, args.messages)
    tmp = tempfile.mkdtemp()
    settings = load_settings(f"sqlite:///{tmp}/bench.db")
    import os

    os.environ["SKYSHIELD_DB"] = settings.db_url
    policy = Policy.load(None)
    engine = build_engine(policy, settings)
    disposal = Disposal.open(policy, settings)
    msgs = [Message(t, sender=f"170{i % 5000:08d}", recipient=f"138{i:08d}") for i, t in enumerate(sample)]
    for start in range(0, len(msgs), 1000):
        batch = msgs[start:start + 1000]
        disposal.db.store.save(list(zip(batch, engine.check(batch), strict=True)))

    t = time.perf_counter()
    for start in range(0, len(sample), 2000):
        templates(analyse_batch(sample[start:start + 2000]))
    exact = len(sample) / (time.perf_counter() - t)
    t = time.perf_counter()
    done = disposal.refresh()
    cluster = done["verdicts"] / (time.perf_counter() - t)
    n_campaigns = len(disposal.campaigns.top(min_size=2, limit=100000))
    print(f"clustering: {cluster:,.0f} msg/s (MinHash+LSH+store) vs baseline exact-template grouping "
          f"{exact:,.0f} msg/s; {n_campaigns} campaigns of 2+ messages in {done['verdicts']} messages")

    def rate() -> float:
        t = time.perf_counter()
        for start in range(0, len(msgs), 500):
            engine.check(msgs[start:start + 500])
        return len(msgs) / (time.perf_counter() - t)

    baseline = rate()
    top = disposal.campaigns.top(min_size=2, limit=1)
    blocks = disposal.blocks
    blocks.create("number", "17000000001", reason="bench", decided_by="bench")
    blocks.create("signature", "【某某银行】", reason="bench", decided_by="bench")
    blocks.create("link_domain", "evil.cn", reason="bench", decided_by="bench")
    blocks.create("template", "【X】您的额度已提升至1元，点击 http://a.cn 领取", reason="bench", decided_by="bench")
    if top:
        blocks.create("campaign", str(top[0]["id"]), reason="bench", decided_by="bench")
    for d in engine.detectors:
        if d.name == "blocklist":
            d.invalidate()
    blocked = rate()
    print(f"engine: {blocked:,.0f} msg/s with {len(blocks.active())} active blocks of every kind vs baseline "
          f"{baseline:,.0f} msg/s with none ({100 * (1 - blocked / baseline):.0f}% slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
