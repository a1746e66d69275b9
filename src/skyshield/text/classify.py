"""The text model: train, save, load, predict and explain; and the detector that turns it into signals.

Two linear heads over hashed n-grams (:mod:`skyshield.text.features`) of the *normalised* text:

* the **category head** scores ham / promotion / fraud / illicit for every message;
* the **subtype head** scores the fraud and illicit subtypes, only for messages whose category is
  fraud or illicit (most traffic is ham, so most messages never pay for it).

Weights are stored as int8 (one scale per class) so the category table is 4 bytes per bucket and
stays in cache: predicting a batch is one gather and one ``np.add.reduceat`` in numpy, with no
scikit-learn call on the hot path. Training uses scikit-learn's ``SGDClassifier``; a softmax with a
temperature and per-class offsets, fitted on out-of-fold scores separately for Chinese and other
text, turns the category margins into calibrated probabilities. Explanations (``top_terms``) are
the phrases whose n-grams pushed the winning unwanted category hardest against ham.

"ham" is split into personal / notification / verification from the entities: a one-time code ->
verification; a 【signature】 or bank / parcel / bill wording -> notification; else personal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skyshield.events import Category, FraudSubtype, IllicitSubtype, Signal, Verdict
from skyshield.text.analysis import Entities, TextAnalysis, TextPrediction
from skyshield.text.extract import _word
from skyshield.text.features import CHAR_ORDERS, COLUMNS, Features, featurise
from skyshield.text.gcpause import paused_gc
from skyshield.text.phrases import phrases_batch

if TYPE_CHECKING:
    from skyshield.engine import BatchContext

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_FILE = "text_model.npz"

#: Category head classes, in weight-column order.
HEADS = ["ham", Category.PROMOTION.value, Category.FRAUD.value, Category.ILLICIT.value]
#: Subtype head classes, in weight-column order.
SUBTYPES = [f"fraud/{s.value}" for s in FraudSubtype] + [f"illicit/{s.value}" for s in IllicitSubtype]
#: Messages whose promotion, fraud or illicit probability reaches this get an explanation.
MATERIAL = 0.05
#: Messages per internal chunk: big enough to amortise numpy calls, small enough to stay in cache.
CHUNK = 4096
#: Explanations look at a message's first this-many characters, and at this many candidate n-grams.
_EXPLAIN_ROWS = 400
_CANDIDATES = 24
_VALUE_MASK = (1 << 31) - 1  # a positive float32's bits
#: Where head k's int8 weight sits in a bucket's packed int32.
_HEAD_SHIFT = np.array([8 * (k if np.little_endian else 3 - k) for k in range(4)], dtype=np.int32)
_PROMOTION, _FRAUD, _ILLICIT = Category.PROMOTION.value, Category.FRAUD.value, Category.ILLICIT.value
_PERSONAL, _NOTIFICATION, _VERIFICATION = (Category.PERSONAL.value, Category.NOTIFICATION.value,
                                           Category.VERIFICATION.value)
_HAM_KINDS = [_PERSONAL, _NOTIFICATION, _VERIFICATION]
_CATEGORIES = [*_HAM_KINDS, _PROMOTION, _FRAUD, _ILLICIT]  # Category's order
_CATEGORY_NAMES = np.array(_CATEGORIES, dtype=object)
_SUB_NAMES = [s.split("/")[1] for s in SUBTYPES]

_NOTIFICATION_WORDS = re.compile(
    r"银行|信用卡|账户|尾号|余额|入账|支出|还款|账单|快递|快件|包裹|驿站|取件|签收|派送|电费|水费|燃气|话费|流量|"
    r"订单|航班|车次|预约|缴费|扣款|"
    # \b(account|...)\b, written so that every alternative starts with a literal (see extract._word)
    + _word(r"account|card ending|balance|bill|statement|payment|package|parcel|delivery|delivered|shipped|order|"
            r"appointment|flight|receipt|invoice|due|autopay|direct debit", before=r"\w", after=r"\b")
)
#: The same, then the rest of the line: over messages joined by newlines, at most one match per message.
_NOTIFICATION_LINE = re.compile(f"(?:{_NOTIFICATION_WORDS.pattern})[^\n]*")


def ham_kind(analysis: TextAnalysis) -> str:
    """Which kind of wanted message this is: verification, notification or personal."""
    ents: Entities = analysis.entities
    if ents.codes:
        return Category.VERIFICATION.value
    if ents.signature is not None or _NOTIFICATION_WORDS.search(analysis.normalised):
        return Category.NOTIFICATION.value
    return Category.PERSONAL.value


def ham_kinds(analyses: Sequence[TextAnalysis]) -> list[str]:
    """:func:`ham_kind` for many messages: one regular-expression pass over the batch."""
    return [_HAM_KINDS[k] for k in _ham_codes(analyses).tolist()]


def _ham_codes(analyses: Sequence[TextAnalysis]) -> np.ndarray:
    """0 (personal), 1 (notification) or 2 (verification) per message, as :func:`ham_kind` decides."""
    joined = "\n".join(a.normalised for a in analyses)
    # a few messages, or a text with its own newline: one at a time
    if len(analyses) < 16 or joined.count("\n") != len(analyses) - 1:
        return np.array([_HAM_KINDS.index(ham_kind(a)) for a in analyses], dtype=np.intp)
    line_starts = np.zeros(len(analyses), dtype=np.int64)
    np.cumsum([len(a.normalised) + 1 for a in analyses[:-1]], out=line_starts[1:])
    codes = np.zeros(len(analyses), dtype=np.intp)
    hits = [m.start() for m in _NOTIFICATION_LINE.finditer(joined)]
    codes[np.searchsorted(line_starts, hits, side="right") - 1] = 1
    signed = [i for i, a in enumerate(analyses) if a.entities.signature is not None]
    codes[signed] = 1
    with_code = [i for i, a in enumerate(analyses) if a.entities.codes]
    codes[with_code] = 2
    return codes


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
    #: Calibration, per script (row 0: other, row 1: Chinese): softmax(temperature * margin + offset).
    temperature: np.ndarray = field(default_factory=lambda: np.ones(2, dtype=np.float32))
    offset: np.ndarray = field(default_factory=lambda: np.zeros((2, 4), dtype=np.float32))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # 4 int8 weights = one int32: gathering a bucket's category row is one 4-byte load.
        self._cat_packed = np.ascontiguousarray(self.cat_q).view(np.int32).ravel()
        self._bucket0_weighted = bool(self.cat_q[0].any())  # never in a trained model; checked once, not per batch

    # ------------------------------------------------------------------ scoring

    def _category_margins(self, feats: Features) -> np.ndarray:
        if feats.n == 0:
            return np.zeros((0, len(HEADS)), dtype=np.float32)
        rows = np.take(self._cat_packed, feats.buckets)             # (rows, COLUMNS) int32 = 4 x int8
        return self._margins_of(rows, feats)

    def _margins_of(self, packed: np.ndarray, feats: Features) -> np.ndarray:
        """Category margins from the packed weight rows of every bucket of ``feats``."""
        acc = np.add.reduceat(packed.view(np.int8).reshape(-1, 4), feats.row_offsets[:-1] * COLUMNS, axis=0,
                              dtype=np.int32)
        return acc * self.cat_scale * feats.scale[:, None] + self.cat_bias

    def _probabilities(self, margins: np.ndarray, han: np.ndarray) -> np.ndarray:
        script = np.asarray(han, dtype=np.intp)
        z = margins * self.temperature[script][:, None] + self.offset[script]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _subtype_margins(self, feats: Features, which: np.ndarray) -> np.ndarray:
        """Subtype-head margins for messages ``which`` only (their rows gathered into one block)."""
        if len(which) == 0:
            return np.zeros((0, len(SUBTYPES)), dtype=np.float32)
        starts = feats.row_offsets[which]
        counts = feats.row_offsets[which + 1] - starts
        offsets = np.zeros(len(which), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        rows = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        w = self.sub_q[feats.buckets[rows].ravel()]                     # (rows * COLUMNS, subtypes) int8
        acc = np.add.reduceat(w, offsets * COLUMNS, axis=0, dtype=np.int32)
        return acc * self.sub_scale * feats.scale[which][:, None] + self.sub_bias

    def category_probabilities(self, normalised: Sequence[str]) -> np.ndarray:
        """P(ham, promotion, fraud, illicit) per text (columns in :data:`HEADS` order)."""
        out = []
        for i in range(0, len(normalised), CHUNK):
            feats = featurise(normalised[i:i + CHUNK], self.bits)
            out.append(self._probabilities(self._category_margins(feats), feats.han))
        return np.concatenate(out) if out else np.zeros((0, 4))

    def raw_margins(self, normalised: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated category margins and the script of each text (for fitting the calibration)."""
        margins, han = [np.zeros((0, 4), dtype=np.float32)], [np.zeros(0, dtype=bool)]
        for i in range(0, len(normalised), CHUNK):
            feats = featurise(normalised[i:i + CHUNK], self.bits)
            margins.append(self._category_margins(feats))
            han.append(feats.han)
        return np.concatenate(margins), np.concatenate(han)

    # ------------------------------------------------------------------ predict

    def predict(self, analyses: Sequence[TextAnalysis], explain: bool = True) -> list[TextPrediction]:
        """One prediction per analysis. ``explain`` adds top n-grams where fraud/illicit/promotion is material."""
        out: list[TextPrediction] = []
        with paused_gc():
            for i in range(0, len(analyses), CHUNK):
                out.extend(self._predict_chunk(analyses[i:i + CHUNK], explain))
        return out

    def predict_explain_later(self, analyses: Sequence[TextAnalysis]
                              ) -> tuple[list[TextPrediction], Callable[[], None]]:
        """:meth:`predict` without ``top_terms``, and a function that fills them in later, in place: the same terms
        ``predict`` gives (a gateway answers first and explains before it records). The function reuses this
        call's scoring (features and gathered weights), so explaining later costs no more than at once."""
        out: list[TextPrediction] = []
        scored: list[tuple[int, tuple[Features, np.ndarray, np.ndarray, np.ndarray]]] = []
        with paused_gc():
            for i in range(0, len(analyses), CHUNK):
                chunk = analyses[i:i + CHUNK]
                scores = self._score_chunk(chunk)
                scored.append((i, scores))
                out.extend(self._predictions_of(chunk, scores, {}))

        def explain() -> None:
            with paused_gc():
                for i, scores in scored:
                    for m, top_terms in self._explain_material(*scores).items():
                        out[i + m].top_terms = top_terms
            scored.clear()  # the features are no longer needed; a second call explains nothing again

        return out, explain

    def _score_chunk(self, analyses: Sequence[TextAnalysis]) -> tuple[Features, np.ndarray, np.ndarray, np.ndarray]:
        feats = featurise([a.normalised for a in analyses], self.bits)
        packed = np.take(self._cat_packed, feats.buckets)           # (rows, COLUMNS) int32 = 4 x int8
        probs = self._probabilities(self._margins_of(packed, feats), feats.han)
        return feats, packed, probs, probs.argmax(axis=1)

    def _explain_material(self, feats: Features, packed: np.ndarray, probs: np.ndarray,
                          best: np.ndarray) -> dict[int, list[tuple[str, float]]]:
        """Top terms for the messages where promotion, fraud or illicit is material, against their category (or,
        for ham, the likeliest unwanted one)."""
        which = np.flatnonzero((probs[:, 1:] >= MATERIAL).any(axis=1))
        targets = np.where(best[which] != 0, best[which], 1 + probs[which, 1:].argmax(axis=1))
        return self._explain_batch(feats, packed, which, targets)

    def _predict_chunk(self, analyses: Sequence[TextAnalysis], explain: bool) -> list[TextPrediction]:
        if not analyses:
            return []
        scores = self._score_chunk(analyses)
        return self._predictions_of(analyses, scores, self._explain_material(*scores) if explain else {})

    def _predictions_of(self, analyses: Sequence[TextAnalysis],
                        scores: tuple[Features, np.ndarray, np.ndarray, np.ndarray],
                        explained: dict[int, list[tuple[str, float]]]) -> list[TextPrediction]:
        feats, _packed, probs, best = scores
        needs_sub = np.flatnonzero(best >= 2)
        subtype_of: dict[int, tuple[str, str]] = {}
        if len(needs_sub):
            sm = self._subtype_margins(feats, needs_sub)
            n_fraud = len(FraudSubtype)
            fraud_best = sm[:, :n_fraud].argmax(axis=1).tolist()
            illicit_best = (n_fraud + sm[:, n_fraud:].argmax(axis=1)).tolist()
            for m, f, i in zip(needs_sub.tolist(), fraud_best, illicit_best, strict=True):
                subtype_of[m] = (_SUB_NAMES[f], _SUB_NAMES[i])
        n = len(analyses)
        ham = _ham_codes(analyses)                        # 0 personal, 1 notification, 2 verification
        # One column per Category, in its order: the ham probability goes to the message's kind of ham.
        full = np.zeros((n, len(_CATEGORIES)))
        full[np.arange(n), ham] = probs[:, 0]
        full[:, 3:] = probs[:, 1:]
        categories = _CATEGORY_NAMES[np.where(best == 0, ham, best + 2)].tolist()
        subtypes: list[str | None] = [None] * n
        for m, (fraud_sub, illicit_sub) in subtype_of.items():
            subtypes[m] = fraud_sub if best[m] == 2 else illicit_sub
        unwanted = (probs[:, 1] + probs[:, 2] + probs[:, 3]).tolist()
        probabilities = [{_PERSONAL: a, _NOTIFICATION: b, _VERIFICATION: c, _PROMOTION: d, _FRAUD: e, _ILLICIT: f}
                         for a, b, c, d, e, f in full.tolist()]
        terms: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        for m, top_terms in explained.items():
            terms[m] = top_terms
        return list(map(TextPrediction, categories, subtypes, probabilities, unwanted, terms))

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

    def _explain_batch(self, feats: Features, packed: np.ndarray, which: np.ndarray, targets: np.ndarray,
                       top: int = 5) -> dict[int, list[tuple[str, float]]]:
        """For each message in ``which``, the n-grams that pushed its ``target`` head (promotion, fraud or
        illicit) hardest against ham, strongest first. ``packed`` is the model's packed weight row for
        every bucket of ``feats`` (as scoring gathered it).

        Vectorised over the batch: every explained message's rows (its first _EXPLAIN_ROWS) form one flat
        block, each positive contribution becomes one int64 sort key (message, value, position), and one
        ``np.sort`` ranks every message's candidates at once; the _CANDIDATES best per message go to
        :func:`~skyshield.text.phrases.phrases_batch`. Equal contributions (digits all read as 0, so "00"
        n-grams repeat) rank by position, so a message gets the same explanation alone or in any batch.
        """
        out: dict[int, list[tuple[str, float]]] = {}
        if len(which) == 0:
            return out
        first = feats.row_offsets[which]
        counts = np.minimum(feats.row_offsets[which + 1] - first, _EXPLAIN_ROWS)
        block = np.zeros(len(which), dtype=np.int64)              # where each message starts in the block
        np.cumsum(counts[:-1], out=block[1:])
        row_msg = np.repeat(np.arange(len(which), dtype=np.int64), counts)
        rows = (first - block)[row_msg] + np.arange(len(row_msg))
        # Column-major (COLUMNS, rows), so each per-row factor below runs along a whole row of the array.
        weights = np.ascontiguousarray(np.take(packed, rows, axis=0).T)
        # Byte k of the packed int32 is head k; the int8 cast keeps the low byte, signed.
        w_target = (weights >> _HEAD_SHIFT[targets][row_msg]).astype(np.int8)
        w_ham = (weights >> _HEAD_SHIFT[0]).astype(np.int8)
        # The same float32 arithmetic, element for element, as scoring the message would do.
        contrib = w_target * self.cat_scale[targets][row_msg] - w_ham * self.cat_scale[0]
        contrib *= (feats.scale[which] * self.temperature[feats.han[which].astype(np.intp)])[row_msg]
        # Only positive contributions are ever shown, and never bucket 0 ("no feature", weight 0 in any
        # trained model). A positive float32's bit pattern orders like its value, so (message, value
        # descending, position ascending) packs into one int64 that sorts ascending: 12 bits of message
        # (< CHUNK), 31 of value, 11 of position (< _EXPLAIN_ROWS * COLUMNS).
        positive = contrib > 0
        if self._bucket0_weighted:
            positive &= np.take(feats.buckets, rows, axis=0).T != 0
        pos = np.flatnonzero(positive)
        col, row = np.divmod(pos, len(rows))
        msg = row_msg[row]
        local = (row - block[msg]) * COLUMNS + col
        bits = contrib.ravel()[pos].view(np.int32).astype(np.int64)
        key = np.sort((msg << 42) | ((_VALUE_MASK - bits) << 11) | local)
        msg = key >> 42
        seg = np.searchsorted(msg, np.arange(len(which) + 1))         # each message's run of candidates
        rank = np.arange(len(key)) - seg[msg]
        key = key[rank < _CANDIDATES]
        msg = key >> 42
        values = (_VALUE_MASK - ((key >> 11) & _VALUE_MASK)).astype(np.int32).view(np.float32)
        local = key & 2047
        # Where each candidate sits in its text: char n-grams start at their row, words and bigrams
        # end there (their start row is kept by featurise).
        n_char = len(CHAR_ORDERS)
        row, col = np.divmod(local, COLUMNS)
        base = first[msg]
        starts = np.where(col < n_char, row, np.where(col == n_char, feats.word_starts[base + row],
                                                      feats.bigram_starts[base + row]) - base)
        ends = np.where(col < n_char, row + np.asarray(CHAR_ORDERS + (1, 1))[col], row + 1)
        explained = phrases_batch(feats.layout, feats.codepoints, first, feats.row_offsets[which + 1], msg,
                                  starts, ends, values, top)
        return dict(zip(which.tolist(), explained, strict=True))

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, cat_q=self.cat_q, cat_scale=self.cat_scale, cat_bias=self.cat_bias, sub_q=self.sub_q,
                 sub_scale=self.sub_scale, sub_bias=self.sub_bias, offset=self.offset,
                 temperature=self.temperature,
                 header=np.array(json.dumps({"version": self.version, "bits": self.bits, "meta": self.meta,
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
                       z["sub_q"], z["sub_scale"], z["sub_bias"], z["temperature"], z["offset"],
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
_MODEL_SIGNALS = frozenset(_SIGNAL_OF.values())


class TextModelDetector:
    """Emits MODEL_PROMOTION / MODEL_FRAUD / MODEL_ILLICIT with the category's probability as score."""

    name = "text_model"

    def __init__(self, threshold: float = MATERIAL):
        self.threshold = threshold

    def detect(self, ctx: BatchContext) -> list[list[Signal]]:
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
                signals.append(Signal(name, round(p, 4), {"probability": round(p, 4), "subtype": subtype,
                                                          "terms": terms, "why": why}))
            out.append(signals)
        return out

    def explained(self, ctx: BatchContext, verdicts: Sequence[Verdict]) -> None:
        """The batch was judged with explanations left for later (``Engine.check_answer_first``); now that the
        predictions have their terms, put them in the evidence, as :meth:`detect` does."""
        for prediction, verdict in zip(ctx.predictions, verdicts, strict=True):
            terms = [t for t, _ in prediction.top_terms]
            for signal in verdict.signals:
                if signal.name in _MODEL_SIGNALS:
                    signal.evidence["terms"] = list(terms)
