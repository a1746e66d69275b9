"""The words everyone shares: messages, calls, signals and verdicts.

Plain dataclasses with no behaviour beyond (de)serialisation, so every ingress (API, SMPP, SIP,
files), every detector and every store speaks the same language.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Category(StrEnum):
    PERSONAL = "personal"
    NOTIFICATION = "notification"
    VERIFICATION = "verification"
    PROMOTION = "promotion"
    FRAUD = "fraud"
    ILLICIT = "illicit"


#: Categories a recipient did not ask for; their probability mass is the ``unwanted`` score.
UNWANTED_CATEGORIES = frozenset({Category.PROMOTION, Category.FRAUD, Category.ILLICIT})


class FraudSubtype(StrEnum):
    AUTHORITY_IMPERSONATION = "authority_impersonation"  # 冒充公检法
    LOAN = "loan"  # 贷款
    CUSTOMER_SERVICE_IMPERSONATION = "customer_service_impersonation"  # 冒充客服
    ACQUAINTANCE_IMPERSONATION = "acquaintance_impersonation"  # 冒充领导熟人
    PHISHING_LINK = "phishing_link"
    PRIZE = "prize"
    INVESTMENT = "investment"
    OTHER = "other"


class IllicitSubtype(StrEnum):
    GAMBLING = "gambling"
    PORN = "porn"
    FAKE_DOCUMENTS = "fake_documents"  # fake invoices and certificates
    LINK_SPAM = "link_spam"


class Action(StrEnum):
    """What the ingress does with the message, mildest first."""

    DELIVER = "deliver"
    TAG = "tag"
    FOLD = "fold"
    HOLD = "hold"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


#: Action -> its rank, mildest 0 (``Action.severity`` is on every verdict's path: a dict, not a list scan).
_SEVERITY: dict[Action, int] = {a: i for i, a in enumerate(Action)}


class Channel(StrEnum):
    SMS = "sms"
    API = "api"
    SMPP = "smpp"
    FILE = "file"
    REPLY = "reply"  # mobile-originated replies (opt-outs, reports)
    CALL = "call"  # a screened call attempt (SIP): sender = caller, recipient = callee, no text


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Message:
    text: str
    sender: str = ""
    recipient: str = ""
    time: datetime = field(default_factory=utcnow)
    channel: Channel = Channel.API
    tenant: str = "default"
    #: Caller-chosen id (API idempotency key, SMPP message id, input line number).
    external_id: str | None = None


@dataclass(slots=True)
class Call:
    caller: str
    callee: str
    start: datetime = field(default_factory=utcnow)
    duration: float = 0.0
    answered: bool = False
    tenant: str = "default"


@dataclass(slots=True)
class Signal:
    """One named finding of one detector.

    ``score`` is the detector's raw strength (a probability for models, 1.0 for a rule that fired);
    the policy turns it into points. ``evidence`` says what was seen: matched words, the original
    text span, the link, a counter and its window.
    """

    name: str
    score: float = 1.0
    evidence: dict[str, Any] = field(default_factory=dict)
    #: Points the policy gave this signal; set by the engine, not by detectors.
    points: float = 0.0


@dataclass(slots=True)
class Verdict:
    action: Action
    category: Category
    subtype: str | None
    unwanted: float
    score: float
    signals: list[Signal]
    model_version: str
    #: Probability per category from the text model (empty where no model ran).
    probabilities: dict[str, float] = field(default_factory=dict)
    #: Set once the verdict is stored.
    id: int | None = None

    def reasons(self) -> list[str]:
        """Human-readable reasons, strongest first."""
        ordered = sorted(self.signals, key=lambda s: -abs(s.points))
        return [describe_signal(s) for s in ordered if s.points]

    def to_dict(self, top_signals: int | None = None) -> dict[str, Any]:
        signals = sorted(self.signals, key=lambda s: -abs(s.points))
        if top_signals is not None:
            signals = signals[:top_signals]
        return {
            "id": self.id,
            "action": self.action.value,
            "category": self.category.value,
            "subtype": self.subtype,
            "unwanted": round(self.unwanted, 4),
            "score": round(self.score, 3),
            "model_version": self.model_version,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "signals": [asdict(s) for s in signals],
            "reasons": [describe_signal(s) for s in signals if s.points],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            action=Action(data["action"]),
            category=Category(data["category"]),
            subtype=data.get("subtype"),
            unwanted=float(data["unwanted"]),
            score=float(data["score"]),
            signals=[Signal(**s) for s in data.get("signals", [])],
            model_version=data.get("model_version", ""),
            probabilities=dict(data.get("probabilities", {})),
            id=data.get("id"),
        )


def describe_signal(signal: Signal) -> str:
    """One line a person can read: the signal, its points and the evidence that matters."""
    ev = signal.evidence
    listed = ("matched", "terms", "links", "numbers")
    detail = ev.get("why") or ", ".join(
        f"{k}={v}" for k, v in ev.items()
        if k not in {"span", "spans", *listed} and not isinstance(v, (list, dict))
    )
    for key in listed:
        if ev.get(key):
            values = ev[key]
            shown = ", ".join(str(v) for v in (values if isinstance(values, list) else [values])[:5])
            detail = f"{detail}; {key}: {shown}" if detail else f"{key}: {shown}"
    sign = "+" if signal.points >= 0 else ""
    head = f"{signal.name} ({sign}{signal.points:g})"
    return f"{head}: {detail}" if detail else head
