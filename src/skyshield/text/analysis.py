"""What the text side knows about one message: its normalised form and the entities in it.

Computed once per message by :func:`skyshield.text.extract.analyse_batch` and shared by every
detector through the engine's batch context, so no detector normalises or extracts twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Span:
    """A piece of the *original* text, so evidence can quote what the sender really wrote."""

    start: int
    end: int
    text: str


@dataclass(slots=True)
class Entities:
    links: list[Span] = field(default_factory=list)          # URLs and bare domains
    link_domains: list[str] = field(default_factory=list)    # registered domain of each link
    ip_links: list[Span] = field(default_factory=list)       # links to a bare IP address
    phones: list[Span] = field(default_factory=list)         # phone numbers as written
    #: per phone: cn_mobile, cn_landline, cn_400, cn_800, international, service, masked (digits shown as x)
    phone_kinds: list[str] = field(default_factory=list)
    chat_ids: list[Span] = field(default_factory=list)       # 加V / QQ / WeChat ids
    amounts: list[Span] = field(default_factory=list)        # money amounts with currency
    codes: list[Span] = field(default_factory=list)          # one-time codes
    signature: Span | None = None                            # 【签名】 / [Brand]
    opt_out: Span | None = None                              # 回T退订, reply STOP, ...


@dataclass(slots=True)
class TextAnalysis:
    original: str
    normalised: str
    entities: Entities


@dataclass(slots=True)
class TextPrediction:
    """The text model's view of one message."""

    category: str                        # a Category value
    subtype: str | None                  # a FraudSubtype / IllicitSubtype value, or None
    probabilities: dict[str, float]      # Category value -> probability; sums to 1
    unwanted: float                      # calibrated P(promotion or fraud or illicit)
    #: n-grams that pushed the score most, with their contribution, strongest first.
    top_terms: list[tuple[str, float]] = field(default_factory=list)
