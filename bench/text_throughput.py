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


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--messages", type=int, default=50_000, help="messages in the throughput batch")
    ap.add_argument("--latency-samples", type=int, default=2000)
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

    rows = []

    # --- skyshield ---------------------------------------------------------------------------
    model = corpus.fit(np.isin(np.arange(len(raw)), train))
    from skyshield.text.evaluation import fit_calibration, margins_of

    fit_calibration(model, margins_of(model, [corpus.normalised[i] for i in test]), list(cat[test]))
    analysed = analyse_batch(batch)
    model.predict(analysed[:1000])
    t_full = timed(lambda: model.predict(analyse_batch(batch)), 2)
    t_model = timed(lambda: model.predict(analysed))
    t_model_noexp = timed(lambda: model.predict(analysed, explain=False))
    t_analyse = timed(lambda: analyse_batch(batch), 2)
    single = []
    for text in lat:
        t = time.perf_counter()
        model.predict(analyse_batch([text]))
        single.append(time.perf_counter() - t)
    single_model = []
    for a in analysed[: len(lat)]:
        t = time.perf_counter()
        model.predict([a])
        single_model.append(time.perf_counter() - t)

    def sky_acc(idx: list[int]) -> float:
        pred = [p.category for p in model.predict(analyse_batch([raw[i] for i in idx]), explain=False)]
        pred = ["ham" if p in ("personal", "notification", "verification") else p for p in pred]
        return float(np.mean(np.array(pred) == cat[idx]))

    rows.append(("skyshield analyse+predict", len(batch) / t_full, *percentiles(single), sky_acc(list(test)),
                 sky_acc(short)))
    rows.append(("skyshield predict only", len(batch) / t_model, *percentiles(single_model), None, None))
    print(f"skyshield time split per 1k msgs: analyse_batch {1e3 * t_analyse / len(batch) * 1e3:.1f} ms, "
          f"predict {1e3 * t_model / len(batch) * 1e3:.1f} ms (without explanations "
          f"{1e3 * t_model_noexp / len(batch) * 1e3:.1f} ms)", file=sys.stderr)

    # --- fastText ------------------------------------------------------------------------------
    try:
        import fasttext
    except ImportError:
        fasttext = None
        print("fastText not installed (pip install '.[dev]'): skipped", file=sys.stderr)
    if fasttext is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.txt"
            path.write_text("".join(f"__label__{cat[i]} {fasttext_tokens(raw[i])}\n" for i in train), encoding="utf-8")
            ft = fasttext.train_supervised(str(path), epoch=25, lr=0.5, wordNgrams=2, dim=50, minn=0, maxn=0,
                                           bucket=1 << 20, thread=1, verbose=0, seed=1)

        def ft_predict(texts: list[str]) -> list[str]:
            labels, _ = ft.predict([fasttext_tokens(t) for t in texts])
            return [lab[0].removeprefix("__label__") for lab in labels]

        tokens = [fasttext_tokens(t) for t in batch]
        t_ft = timed(lambda: ft_predict(batch), 2)
        t_ft_model = timed(lambda: ft.predict(tokens), 2)
        ft_single = []
        for text in lat:
            t = time.perf_counter()
            ft.predict(fasttext_tokens(text))
            ft_single.append(time.perf_counter() - t)
        rows.append(("fastText (tokenise+predict)", len(batch) / t_ft, *percentiles(ft_single),
                     float(np.mean(np.array(ft_predict([raw[i] for i in test])) == cat[test])),
                     float(np.mean(np.array(ft_predict([raw[i] for i in short])) == cat[short]))))
        rows.append(("fastText predict only", len(batch) / t_ft_model, None, None, None, None))

    # --- scikit-learn TF-IDF + LinearSVC -------------------------------------------------------
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    svc = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2),
                        LinearSVC(C=0.5))
    svc.fit([raw[i] for i in train], cat[train])
    t_svc = timed(lambda: svc.predict(batch), 2)
    svc_single = []
    for text in lat[:500]:
        t = time.perf_counter()
        svc.predict([text])
        svc_single.append(time.perf_counter() - t)
    rows.append(("sklearn TF-IDF+LinearSVC", len(batch) / t_svc, *percentiles(svc_single),
                 float(np.mean(svc.predict([raw[i] for i in test]) == cat[test])),
                 float(np.mean(svc.predict([raw[i] for i in short]) == cat[short]))))

    # --- report --------------------------------------------------------------------------------
    print(f"| {'system':<28} | {'msg/s (batch)':>13} | {'p50 ms':>7} | {'p99 ms':>7} | {'acc (test)':>10} | "
          f"{'acc 40-80':>9} |")
    print(f"|{'-' * 30}|{'-' * 15}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 11}|")

    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"

    for name, rate, p50, p99, acc, acc_s in rows:
        print(f"| {name:<28} | {rate:>13,.0f} | {fmt(p50, '7.3f'):>7} | {fmt(p99, '7.3f'):>7} | "
              f"{fmt(acc, '10.4f'):>10} | {fmt(acc_s, '9.4f'):>9} |")
    by = {r[0]: r for r in rows}
    sky, sky_m = by["skyshield analyse+predict"], by["skyshield predict only"]
    print()
    for other in ("fastText (tokenise+predict)", "sklearn TF-IDF+LinearSVC"):
        if other in by:
            print(f"skyshield analyse+predict vs {other}: {sky[1] / by[other][1]:.2f}x throughput; "
                  f"predict only: {sky_m[1] / by[other][1]:.2f}x")
    print(f"categories: {HEADS}; accuracy = 4-category accuracy on the held-out fold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
