"""Text model throughput and accuracy: skyshield vs fastText vs scikit-learn TF-IDF + LinearSVC.

All three learn the same 4 categories (ham / promotion / fraud / illicit) from the same training
split of the pooled public corpora (fold 1 of the card's 5-fold split is the test set), and are
timed in one run, on one core, on the same held-out messages of 40-80 characters (~60 on average).

    .venv/bin/python bench/text_throughput.py [--data ../shared/data] [--messages 50000]

skyshield is timed three ways: the whole text path (``analyse_batch`` = normalise + extract, then
``predict``), ``predict`` alone on analysed messages, and one message per call (p50/p99 latency).
fastText and scikit-learn get the raw text (fastText with CJK characters split by spaces, its usual
setup for Chinese; that preprocessing is timed too).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from skyshield.text import datasets as ds  # noqa: E402
from skyshield.text.classify import HEADS  # noqa: E402
from skyshield.text.evaluation import assign_folds, load_corpus  # noqa: E402
from skyshield.text.extract import analyse_batch  # noqa: E402

_CJK = re.compile(r"([\u3000-\u303f\u3400-\u9fff\uff00-\uffef])")


def fasttext_tokens(text: str) -> str:
    return " ".join(_CJK.sub(r" \1 ", text.replace("\n", " ")).split())


def percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.array(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--messages", type=int, default=50_000, help="messages in the throughput batch")
    ap.add_argument("--latency-samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (the best of each is kept)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for everyone

    corpus = load_corpus(args.data, log=lambda m: print(m, file=sys.stderr))
    folds = assign_folds(corpus)
    train = np.flatnonzero(corpus.trainable & (folds != 0))
    test = np.flatnonzero(folds == 0)
    cat = np.array([ds.split_class(c)[0] for c in corpus.classes])
    raw = [i.text for i in corpus.items]
    short = [i for i in test if 40 <= len(raw[i]) <= 80]
    batch = [raw[short[k % len(short)]] for k in range(args.messages)]
    lat = [raw[short[k % len(short)]] for k in range(args.latency_samples)]
    print(f"train {len(train)} texts; test {len(test)} (of which {len(short)} are 40-80 chars, mean "
          f"{np.mean([len(raw[i]) for i in short]):.0f}); throughput batch {len(batch)} messages, 1 core\n")

    # --- train all three on the same split ------------------------------------------------------
    from skyshield.text.evaluation import fit_calibration, margins_of

    model = corpus.fit(np.isin(np.arange(len(raw)), train))
    fit_calibration(model, margins_of(model, [corpus.normalised[i] for i in test]), list(cat[test]))

    try:
        import fasttext
    except ImportError:
        fasttext = None
        print("fastText not installed (pip install '.[dev]'): skipped", file=sys.stderr)
    ft = None
    if fasttext is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.txt"
            path.write_text("".join(f"__label__{cat[i]} {fasttext_tokens(raw[i])}\n" for i in train), encoding="utf-8")
            ft = fasttext.train_supervised(str(path), epoch=25, lr=0.5, wordNgrams=2, dim=50, minn=0, maxn=0,
                                           bucket=1 << 20, thread=1, verbose=0, seed=1)

    def ft_predict(texts: list[str]) -> list[str]:
        labels, _ = ft.predict([fasttext_tokens(t) for t in texts])
        return [lab[0].removeprefix("__label__") for lab in labels]

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    svc = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2),
                        LinearSVC(C=0.5))
    svc.fit([raw[i] for i in train], cat[train])

    # --- time them round-robin (the machine is shared: a load spike then hits everyone alike) ------
    analysed = analyse_batch(batch)
    tokens = [fasttext_tokens(t) for t in batch]
    model.predict(analysed[:1000])
    batch_runs = {
        "skyshield analyse+predict": lambda: model.predict(analyse_batch(batch)),
        "skyshield predict only": lambda: model.predict(analysed),
        "skyshield predict, no explanations": lambda: model.predict(analysed, explain=False),
        "skyshield analyse_batch only": lambda: analyse_batch(batch),
        "sklearn TF-IDF+LinearSVC": lambda: svc.predict(batch),
    }
    if ft is not None:
        batch_runs["fastText (tokenise+predict)"] = lambda: ft_predict(batch)
        batch_runs["fastText predict only"] = lambda: ft.predict(tokens)
    best = {name: float("inf") for name in batch_runs}
    for _ in range(args.rounds):
        for name, fn in batch_runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    rate = {name: len(batch) / t for name, t in best.items()}

    single: dict[str, list[float]] = {"skyshield analyse+predict": [], "skyshield predict only": [],
                                      "sklearn TF-IDF+LinearSVC": []}
    if ft is not None:
        single["fastText (tokenise+predict)"] = []
    for k, text in enumerate(lat):
        t = time.perf_counter()
        model.predict(analyse_batch([text]))
        t1 = time.perf_counter()
        model.predict([analysed[k]])
        t2 = time.perf_counter()
        single["skyshield analyse+predict"].append(t1 - t)
        single["skyshield predict only"].append(t2 - t1)
        if ft is not None:
            t = time.perf_counter()
            ft.predict(fasttext_tokens(text))
            single["fastText (tokenise+predict)"].append(time.perf_counter() - t)
        if k < 500:
            t = time.perf_counter()
            svc.predict([text])
            single["sklearn TF-IDF+LinearSVC"].append(time.perf_counter() - t)

    def sky_acc(idx: list[int]) -> float:
        pred = [p.category for p in model.predict(analyse_batch([raw[i] for i in idx]), explain=False)]
        pred = ["ham" if p in ("personal", "notification", "verification") else p for p in pred]
        return float(np.mean(np.array(pred) == cat[idx]))

    acc = {"skyshield analyse+predict": (sky_acc(list(test)), sky_acc(short)),
           "sklearn TF-IDF+LinearSVC": (float(np.mean(svc.predict([raw[i] for i in test]) == cat[test])),
                                        float(np.mean(svc.predict([raw[i] for i in short]) == cat[short])))}
    if ft is not None:
        acc["fastText (tokenise+predict)"] = (
            float(np.mean(np.array(ft_predict([raw[i] for i in test])) == cat[test])),
            float(np.mean(np.array(ft_predict([raw[i] for i in short])) == cat[short])))
    rows = []
    for name in batch_runs:
        p50, p99 = percentiles(single[name]) if name in single else (None, None)
        a, a_s = acc.get(name, (None, None))
        rows.append((name, rate[name], p50, p99, a, a_s))

    # --- report --------------------------------------------------------------------------------
    print(f"| {'system':<34} | {'msg/s (batch)':>13} | {'p50 ms':>7} | {'p99 ms':>7} | {'acc (test)':>10} | "
          f"{'acc 40-80':>9} |")
    print(f"|{'-' * 36}|{'-' * 15}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 11}|")

    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"

    for name, msgs, p50, p99, acc, acc_s in rows:
        print(f"| {name:<34} | {msgs:>13,.0f} | {fmt(p50, '7.3f'):>7} | {fmt(p99, '7.3f'):>7} | "
              f"{fmt(acc, '10.4f'):>10} | {fmt(acc_s, '9.4f'):>9} |")
    print()
    pairs = [("skyshield analyse+predict", "fastText (tokenise+predict)"),
             ("skyshield analyse+predict", "sklearn TF-IDF+LinearSVC"),
             ("skyshield predict only", "fastText predict only"),
             ("skyshield predict, no explanations", "fastText predict only")]
    for mine, other in pairs:
        if other in rate:
            print(f"{mine} / {other}: {rate[mine] / rate[other]:.2f}x messages/s")
    us = {name: 1e6 / r for name, r in rate.items()}
    print(f"where skyshield's time goes: analyse_batch (normalise + extract) {us['skyshield analyse_batch only']:.1f} "
          f"us/msg, predict {us['skyshield predict only']:.1f} us/msg "
          f"({us['skyshield predict, no explanations']:.1f} without explanations); analyse is "
          f"~{us['skyshield analyse_batch only'] / us['skyshield analyse+predict']:.0%} of the full path")
    print(f"categories: {HEADS}; accuracy = 4-category accuracy on the held-out fold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
