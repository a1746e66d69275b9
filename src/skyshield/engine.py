"""Run the detectors over a batch, hand their signals to the policy, return one verdict each.

The one place where signals meet. Data flows one way: the engine analyses the text once
(normalise + extract), asks the text model once per batch, then every detector reads that shared
context and returns its signals; detectors never call each other and never touch the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from skyshield.events import Category, Message, Signal, Verdict
from skyshield.policy import Policy
from skyshield.text.analysis import TextAnalysis, TextPrediction


@dataclass(slots=True)
class BatchContext:
    """Everything detectors may read about one batch; index ``i`` is ``messages[i]``."""

    messages: Sequence[Message]
    analyses: list[TextAnalysis]
    predictions: list[TextPrediction]
    #: Free room for ingress-specific facts (e.g. the SMPP bind), keyed by name.
    extra: dict[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    """A check that emits named signals. ``detect`` returns one list of signals per message.

    A detector that keeps per-send state may also define ``settle(ctx, verdicts)``; the engine calls it
    with the final verdicts of the batch. ``settle`` may return a callable: work no decision waits for (a
    durable log write), which the engine runs at once in :meth:`Engine.check` and after the answer in
    :meth:`Engine.check_answer_first`. One whose evidence quotes the text model's explanations may define
    ``explained(ctx, verdicts)``, called once they are known.
    """

    name: str

    def detect(self, ctx: BatchContext) -> list[list[Signal]]: ...


class TextModel(Protocol):
    version: str

    def predict(self, analyses: Sequence[TextAnalysis], explain: bool = True) -> list[TextPrediction]: ...

    def predict_explain_later(self, analyses: Sequence[TextAnalysis]
                              ) -> tuple[list[TextPrediction], Callable[[], None]]: ...


class Analyser(Protocol):
    def __call__(self, texts: Sequence[str]) -> list[TextAnalysis]: ...


class Engine:
    def __init__(self, policy: Policy, analyse: Analyser, model: TextModel, detectors: Sequence[Detector]):
        self.policy = policy
        self.analyse = analyse
        self.model = model
        self.detectors = list(detectors)

    def check(self, messages: Sequence[Message], extra: dict[str, Any] | None = None) -> list[Verdict]:
        return self._judge(messages, extra, answer_first=False)[0]

    def check_answer_first(self, messages: Sequence[Message],
                           extra: dict[str, Any] | None = None) -> tuple[list[Verdict], Callable[[], None]]:
        """``check`` with the work no decision depends on left for later: the verdicts are final (actions,
        scores, signals), but the text model's terms in their evidence are filled in, and the detectors'
        deferred writes (the consent ledger's send log) are made, only when the returned function is called,
        which must happen before the verdicts are stored or shown. That work is about a third of a small
        batch's cost: a gateway answers first and finishes before it records."""
        return self._judge(messages, extra, answer_first=True)

    def _judge(self, messages: Sequence[Message], extra: dict[str, Any] | None,
               answer_first: bool) -> tuple[list[Verdict], Callable[[], None]]:
        if not messages:
            return [], nothing_to_finish
        # Bulk traffic repeats one text to many recipients: analyse and predict each distinct text once.
        # The shared TextAnalysis/TextPrediction objects are read-only to detectors.
        position: dict[str, int] = {}
        inverse = [position.setdefault(m.text, len(position)) for m in messages]
        distinct_analyses = self.analyse(list(position))
        if answer_first:
            distinct_predictions, explain = self.model.predict_explain_later(distinct_analyses)
        else:
            distinct_predictions = self.model.predict(distinct_analyses)
        analyses = [distinct_analyses[j] for j in inverse]
        predictions = [distinct_predictions[j] for j in inverse]
        ctx = BatchContext(messages, analyses, predictions, extra or {})
        per_message: list[list[Signal]] = [[] for _ in messages]
        for detector in self.detectors:
            found = detector.detect(ctx)
            if len(found) != len(messages):
                raise RuntimeError(
                    f"detector {detector.name} returned {len(found)} results for {len(messages)} messages"
                )
            for signals, new in zip(per_message, found, strict=True):
                signals.extend(new)
        verdicts = [
            self.policy.decide(
                Category(pred.category), pred.subtype, pred.unwanted, pred.probabilities, signals, self.model.version
            )
            for pred, signals in zip(predictions, per_message, strict=True)
        ]
        # Detectors that keep state about sends (caps, counters) learn the final verdicts, so a message
        # another detector blocked is not counted as sent.
        deferred: list[Callable[[], None]] = []
        for detector in self.detectors:
            settle = getattr(detector, "settle", None)
            if settle is not None:
                later = settle(ctx, verdicts)
                if later is not None:
                    deferred.append(later)
        if not answer_first:
            for work in deferred:
                work()
            return verdicts, nothing_to_finish

        def finish() -> None:
            for work in deferred:
                work()
            explain()  # the shared predictions gain their terms
            for detector in self.detectors:
                explained = getattr(detector, "explained", None)
                if explained is not None:
                    explained(ctx, verdicts)

        return verdicts, finish

    def check_one(self, message: Message) -> Verdict:
        return self.check([message])[0]


def nothing_to_finish() -> None:
    """The finishing step of verdicts that are finished already (or of an engine that finishes inline)."""
