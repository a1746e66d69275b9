"""``skyshield train`` and ``skyshield eval``: reproduce the shipped text model and its card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA = Path("../shared/data")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the text model on the public corpora and write it with its card",
                       description="Train the text model (fixed seed) and write text_model.npz, CARD.md, "
                                   "metrics.json and pr.png. Defaults reproduce the shipped model.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default ../shared/data)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the package's models/)")
    p.set_defaults(handler=_train)

    e = sub.add_parser("eval", help="print the text model card (with --data: re-run the evaluation first)",
                       description="Print the model card. With --data, re-run every protocol (5-fold CV per "
                                   "dataset, held-out smishtank, cross-dataset) and print the fresh card.")
    e.add_argument("--data", type=Path, default=None, help="data folder to re-evaluate on")
    e.add_argument("--out", type=Path, default=None, help="with --data: also write the card (not the model) here")
    e.set_defaults(handler=_eval)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_data(data: Path) -> None:
    if not data.is_dir():
        raise FileNotFoundError(f"data folder not found: {data} (pass --data DIR)")


def _train(args: argparse.Namespace) -> int:
    from skyshield.text.classify import MODELS_DIR
    from skyshield.text.evaluation import train_and_write

    _check_data(args.data)
    out = args.out or MODELS_DIR
    model = train_and_write(args.data, out, _log)
    print(f"wrote {out / 'text_model.npz'} ({model.version}), CARD.md, metrics.json, pr.png")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from skyshield.text.classify import MODELS_DIR
    from skyshield.text.evaluation import render_card, run, write_card

    if args.data is None:
        card = MODELS_DIR / "CARD.md"
        if not card.is_file():
            raise FileNotFoundError(f"no model card at {card}; run `skyshield train`")
        print(card.read_text(encoding="utf-8"))
        return 0
    _check_data(args.data)
    _model, metrics, curves = run(args.data, _log)
    if args.out:
        write_card(metrics, curves, args.out)
    print(render_card(metrics))
    return 0
