"""The text model: train, save, load, predict and explain; and the detector that turns it into signals.

Two linear heads over hashed n-grams (:mod:`skyshield.text.features`) of the *normalised* text:

* the **category head** scores ham / promotion / fraud / illicit for every message;
* the **subtype head** scores the fraud and illicit subtypes, only for messages where fraud or
  illicit is material (most traffic is ham, so most messages never pay for it).

Weights are stored as int8 (one scale per class) so the category table is 4 bytes per bucket and
stays in cache: predicting a batch is one gather and one ``np.add.reduceat`` in numpy, with no
scikit-learn call on the hot path. Training uses scikit-learn's ``SGDClassifier``; a softmax with a
temperature and per-class offsets fitted on out-of-fold scores turns the heads' margins into
calibrated probabilities.

"ham" is split into personal / notification / verification from the entities: a one-time code ->
verification; a 【signature】 or bank / parcel / bill wording -> notification; else personal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyshield.events import Category, FraudSubtype, IllicitSubtype, Signal
from skyshield.text.analysis import Entities, TextAnalysis, TextPrediction
from skyshield.text.features import _PAD, CHAR_ORDERS, COLUMNS, Features, featurise

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_FILE = "text_model.npz"

#: Category head classes, in weight-column order.
HEADS = ["ham", Category.PROMOTION.value, Category.FRAUD.value, Category.ILLICIT.value]
#: Subtype head classes, in weight-column order.
SUBTYPES = [f"fraud/{s.value}" for s in FraudSubtype] + [f"illicit/{s.value}" for s in IllicitSubtype]
#: Messages whose fraud or illicit probability reaches this get a subtype and an explanation.
MATERIAL = 0.05
#: Messages per internal chunk: big enough to amortise numpy calls, small enough to stay in cache.
CHUNK = 4096

_NOTIFICATION_WORDS = re.compile(
    r"银行|信用卡|账户|尾号|余额|入账|支出|还款|账单|快递|快件|包裹|驿站|取件|签收|派送|电费|水费|燃气|话费|流量|"
    r"订单|航班|车次|预约|缴费|扣款|"
    r"\b(account|card ending|balance|bill|statement|payment|package|parcel|delivery|delivered|shipped|order|"
    r"appointment|flight|receipt|invoice|due|autopay|direct debit)\b"
)


#: An explanation term must contain a letter, digit or CJK character (punctuation alone explains nothing).
_MEANINGFUL = re.compile(r"[^\W_]")


def ham_kind(analysis: TextAnalysis) -> str:
    """Which kind of wanted message this is: verification, notification or personal."""
    ents: Entities = analysis.entities
    if ents.codes:
        return Category.VERIFICATION.value
    if ents.signature is not None or _NOTIFICATION_WORDS.search(analysis.normalised):
        return Category.NOTIFICATION.value
    return Category.PERSONAL.value


def _quantise(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float (buckets, k) -> int8 weights and a float32 scale per column (clipped at the 99.999th pct)."""
    lim = np.quantile(np.abs(w), 0.99999, axis=0)
    lim = np.maximum(lim, np.abs(w).max(axis=0) * 0.25)
    lim[lim == 0] = 1.0
    scale = (lim / 127.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    q[0] = 0  # bucket 0 is "no feature"
    return q, scale


@dataclass
class TextModel:
    """A trained model. ``predict`` is all the engine needs; the rest is for training and the card."""

    version: str
    bits: int
    cat_q: np.ndarray            # int8 (2**bits, 4)
    cat_scale: np.ndarray        # float32 (4,)
    cat_bias: np.ndarray         # float32 (4,)
    sub_q: np.ndarray            # int8 (2**bits, len(SUBTYPES))
    sub_scale: np.ndarray
    sub_bias: np.ndarray         # float32; -inf-like for subtypes never seen in training
    temperature: float = 1.0     # calibration: softmax(temperature * margin + offset)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # 4 int8 weights = one int32: gathering a bucket's category row is one 4-byte load.
        self._cat_packed = np.ascontiguousarray(self.cat_q).view(np.int32).ravel()

    # ------------------------------------------------------------------ scoring

    def _category_margins(self, feats: Features) -> np.ndarray:
        rows = self._cat_packed[feats.buckets]                     # (rows, COLUMNS) int32
        per_row = rows.view(np.int8).reshape(len(rows), COLUMNS, 4).sum(axis=1, dtype=np.int16)
        acc = np.add.reduceat(per_row, feats.row_offsets[:-1], axis=0, dtype=np.int32)
        return acc * self.cat_scale * feats.scale[:, None] + self.cat_bias

    def _probabilities(self, margins: np.ndarray) -> np.ndarray:
        z = margins * self.temperature + self.offset
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _subtype_margins(self, feats: Features, which: np.ndarray) -> np.ndarray:
        out = np.empty((len(which), len(SUBTYPES)), dtype=np.float32)
        for k, m in enumerate(which):
            a, b = feats.row_offsets[m], feats.row_offsets[m + 1]
            cols = feats.buckets[a:b].ravel()
            out[k] = self.sub_q[cols].sum(axis=0, dtype=np.int32) * self.sub_scale * feats.scale[m] + self.sub_bias
        return out

    def category_probabilities(self, normalised: Sequence[str]) -> np.ndarray:
        """P(ham, promotion, fraud, illicit) per text (columns in :data:`HEADS` order)."""
        out = []
        for i in range(0, len(normalised), CHUNK):
            feats = featurise(normalised[i:i + CHUNK], self.bits)
            out.append(self._probabilities(self._category_margins(feats)))
        return np.concatenate(out) if out else np.zeros((0, 4))

    def raw_margins(self, normalised: Sequence[str]) -> np.ndarray:
        """Uncalibrated category margins (for fitting the calibration)."""
        out = [self._category_margins(featurise(normalised[i:i + CHUNK], self.bits))
               for i in range(0, len(normalised), CHUNK)]
        return np.concatenate(out) if out else np.zeros((0, 4))

    # ------------------------------------------------------------------ predict

    def predict(self, analyses: Sequence[TextAnalysis], explain: bool = True) -> list[TextPrediction]:
        """One prediction per analysis. ``explain`` adds top n-grams where fraud/illicit/promotion is material."""
        out: list[TextPrediction] = []
        for i in range(0, len(analyses), CHUNK):
            out.extend(self._predict_chunk(analyses[i:i + CHUNK], explain))
        return out

    def _predict_chunk(self, analyses: Sequence[TextAnalysis], explain: bool) -> list[TextPrediction]:
        if not analyses:
            return []
        feats = featurise([a.normalised for a in analyses], self.bits)
        probs = self._probabilities(self._category_margins(feats))
        best = probs.argmax(axis=1)
        material = (probs[:, 1:] >= MATERIAL).any(axis=1)
        needs_sub = np.flatnonzero((probs[:, 2] >= MATERIAL) | (probs[:, 3] >= MATERIAL) | (best >= 2))
        subtype_of: dict[int, tuple[str | None, str | None]] = {}
        if len(needs_sub):
            sm = self._subtype_margins(feats, needs_sub)
            n_fraud = len(FraudSubtype)
            for k, m in enumerate(needs_sub):
                fraud_sub = SUBTYPES[int(sm[k, :n_fraud].argmax())].split("/")[1]
                illicit_sub = SUBTYPES[n_fraud + int(sm[k, n_fraud:].argmax())].split("/")[1]
                subtype_of[int(m)] = (fraud_sub, illicit_sub)
        results = []
        for m, analysis in enumerate(analyses):
            p = probs[m]
            kind = ham_kind(analysis)
            probabilities = {c.value: 0.0 for c in Category}
            probabilities[kind] = float(p[0])
            probabilities[Category.PROMOTION.value] = float(p[1])
            probabilities[Category.FRAUD.value] = float(p[2])
            probabilities[Category.ILLICIT.value] = float(p[3])
            b = int(best[m])
            category = kind if b == 0 else HEADS[b]
            subs = subtype_of.get(m, (None, None))
            subtype = subs[0] if b == 2 else subs[1] if b == 3 else None
            terms: list[tuple[str, float]] = []
            if explain and material[m]:
                target = b if b != 0 else 1 + int(p[1:].argmax())
                terms = self._explain(feats, m, target)
            results.append(TextPrediction(category, subtype, probabilities, float(p[1:].sum()), terms))
        return results

    def subtypes_for(self, analyses: Sequence[TextAnalysis]) -> list[tuple[str, str]]:
        """(best fraud subtype, best illicit subtype) per message, whatever its category (for reporting)."""
        out: list[tuple[str, str]] = []
        n_fraud = len(FraudSubtype)
        for i in range(0, len(analyses), CHUNK):
            chunk = analyses[i:i + CHUNK]
            feats = featurise([a.normalised for a in chunk], self.bits)
            sm = self._subtype_margins(feats, np.arange(len(chunk)))
            for row in sm:
                out.append((SUBTYPES[int(row[:n_fraud].argmax())].split("/")[1],
                            SUBTYPES[n_fraud + int(row[n_fraud:].argmax())].split("/")[1]))
        return out

    # ------------------------------------------------------------------ explain

    def _explain(self, feats: Features, m: int, target: int, top: int = 5) -> list[tuple[str, float]]:
        """The n-grams of message ``m`` that pushed ``target`` hardest against ham (or, for ham, the reverse)."""
        a, b = int(feats.row_offsets[m]), int(feats.row_offsets[m + 1])
        cols = feats.buckets[a:b]
        w = self.cat_q[cols].astype(np.float32) * self.cat_scale          # (rows, COLUMNS, 4)
        other = 0 if target != 0 else 1
        contrib = (w[..., target] - w[..., other]) * feats.scale[m] * self.temperature
        text = "\x02" + feats.texts[m] + "\x03" * (_PAD + 1)
        total: dict[str, float] = {}
        n_char = len(CHAR_ORDERS)
        prev_word_start = -1
        for r in range(b - a):
            for j in range(COLUMNS):
                if cols[r, j] == 0:
                    continue
                if j < n_char:
                    gram = text[r:r + CHAR_ORDERS[j]]
                else:
                    start = int(feats.word_starts[a + r]) - a
                    gram = text[start:r + 1] if j == n_char else text[prev_word_start:r + 1]
                gram = gram.strip("\x02\x03 ")
                if _MEANINGFUL.search(gram):
                    total[gram] = total.get(gram, 0.0) + float(contrib[r, j])
            if feats.word_starts[a + r] >= 0:
                prev_word_start = int(feats.word_starts[a + r]) - a
        ranked = sorted(((g, c) for g, c in total.items() if c > 0), key=lambda gc: -gc[1])
        return [(g, round(c, 3)) for g, c in ranked[:top]]

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, cat_q=self.cat_q, cat_scale=self.cat_scale, cat_bias=self.cat_bias, sub_q=self.sub_q,
                 sub_scale=self.sub_scale, sub_bias=self.sub_bias, offset=self.offset,
                 header=np.array(json.dumps({"version": self.version, "bits": self.bits,
                                             "temperature": self.temperature, "meta": self.meta,
                                             "heads": HEADS, "subtypes": SUBTYPES})))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextModel:
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"text model not found: {path} (train one with `skyshield train`)")
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("heads") != HEADS or header.get("subtypes") != SUBTYPES:
                raise ValueError(f"{path}: model classes do not match this version of skyshield; retrain it")
            return cls(header["version"], int(header["bits"]), z["cat_q"], z["cat_scale"], z["cat_bias"],
                       z["sub_q"], z["sub_scale"], z["sub_bias"], float(header["temperature"]), z["offset"],
                       header.get("meta", {}))


_SHIPPED: TextModel | None = None


def load_model(path: str | Path | None = None) -> TextModel:
    """Load a model file (or directory); ``None`` loads the one shipped in ``skyshield/models`` (cached)."""
    global _SHIPPED
    if path:
        return TextModel.load(path)
    if _SHIPPED is None:
        _SHIPPED = TextModel.load(MODELS_DIR / MODEL_FILE)
    return _SHIPPED


# ---------------------------------------------------------------------- detector

_SIGNAL_OF = {
    Category.PROMOTION.value: "MODEL_PROMOTION",
    Category.FRAUD.value: "MODEL_FRAUD",
    Category.ILLICIT.value: "MODEL_ILLICIT",
}


class TextModelDetector:
    """Emits MODEL_PROMOTION / MODEL_FRAUD / MODEL_ILLICIT with the category's probability as score."""

    name = "text_model"

    def __init__(self, threshold: float = MATERIAL):
        self.threshold = threshold

    def detect(self, ctx: Any) -> list[list[Signal]]:
        out: list[list[Signal]] = []
        for pred in ctx.predictions:
            signals = []
            for category, name in _SIGNAL_OF.items():
                p = pred.probabilities.get(category, 0.0)
                if p < self.threshold:
                    continue
                subtype = pred.subtype if pred.category == category else None
                terms = [t for t, _ in pred.top_terms]
                why = f"text model: {category} {p:.0%}" + (f" ({subtype})" if subtype else "")
                if terms:
                    why += "; words: " + ", ".join(terms[:3])
                signals.append(Signal(name, round(p, 4), {"probability": round(p, 4), "subtype": subtype,
                                                          "terms": terms, "why": why}))
            out.append(signals)
        return out
