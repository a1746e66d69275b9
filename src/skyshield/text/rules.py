"""The structure detector: turns the entities found in each message into named signals.

One signal per kind per message (all the links of a message make one LINK signal), each with
evidence that quotes the original text: ``matched`` (the spans as written), ``span`` (the first
one, ``[start, end]`` in the original message), ``spans`` (all of them) and ``why``.
"""

from __future__ import annotations

import re
from typing import Any

from skyshield.engine import BatchContext
from skyshield.events import Category, Signal
from skyshield.policy import Policy
from skyshield.text.analysis import Entities, Span

__all__ = ["StructureDetector", "structure_signals"]


def _evidence(spans: list[Span], why: str, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "matched": [s.text for s in spans],
        "span": [spans[0].start, spans[0].end],
        "why": why,
    }
    if len(spans) > 1:
        ev["spans"] = [[s.start, s.end] for s in spans]
    ev.update(extra)
    return ev


def fraud_phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    """One alternation over the policy's fraud phrases (already normalised: simplified, lower case)."""
    cleaned = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in cleaned)) if cleaned else None


def structure_signals(ent: Entities, category: str | None, short_link_domains: frozenset[str],
                      fraud_phrases: list[str] | None = None) -> list[Signal]:
    """The structure signals of one message, given its entities, the text model's category and the fraud
    phrases found in its normalised text."""
    out: list[Signal] = []
    if fraud_phrases:
        out.append(Signal("FRAUD_PHRASE", 1.0, {"matched": sorted(set(fraud_phrases)),
                                                "why": "uses a phrase only fraud scripts use"}))
    if ent.signature is not None:
        out.append(Signal("SIGNATURE", 1.0, _evidence([ent.signature], "sender signature 【…】 present")))
    if ent.opt_out is not None:
        out.append(Signal("OPT_OUT_TEXT", 1.0, _evidence([ent.opt_out], "says how to unsubscribe")))
    if ent.links:
        out.append(Signal("LINK", 1.0, _evidence(ent.links, "contains a link", domains=list(ent.link_domains))))
        short = [(s, d) for s, d in zip(ent.links, ent.link_domains, strict=True) if d in short_link_domains]
        if short:
            out.append(Signal(
                "SHORT_LINK", 1.0,
                _evidence([s for s, _ in short], "link shortener hides the destination", domains=[d for _, d in short]),
            ))
    if ent.ip_links:
        out.append(Signal("IP_LINK", 1.0, _evidence(ent.ip_links, "link to a bare IP address")))
    if ent.phones:
        ev = _evidence(ent.phones, "contains a phone number", kinds=list(ent.phone_kinds))
        out.append(Signal("PHONE_NUMBER", 1.0, ev))
    if ent.chat_ids:
        out.append(Signal("CHAT_ID", 1.0, _evidence(ent.chat_ids, "asks to move to WeChat/QQ/another chat app")))
    if ent.amounts:
        out.append(Signal("AMOUNT", 1.0, _evidence(ent.amounts, "mentions an amount of money")))
    if ent.codes:
        out.append(Signal("ONE_TIME_CODE", 1.0, _evidence(ent.codes, "carries a one-time code")))
    if category == Category.PROMOTION.value and ent.opt_out is None:
        ev: dict[str, Any] = {"why": "promotion without unsubscribe text (回T退订 / reply STOP)", "category": category}
        if ent.signature is not None:
            ev["signature"] = ent.signature.text
        out.append(Signal("PROMOTION_WITHOUT_OPT_OUT", 1.0, ev))
    return out


class StructureDetector:
    """Signals from message structure: signature, opt-out text, links, numbers, chat ids, amounts, codes."""

    name = "structure"

    def __init__(self, policy: Policy):
        section = policy.section("detectors.structure")
        self.short_link_domains = frozenset(str(d).lower() for d in section.get("short_link_domains", []))
        self.fraud_phrases = fraud_phrase_pattern(list(section.get("fraud_phrases", [])))

    def detect(self, ctx: BatchContext) -> list[list[Signal]]:
        results: list[list[Signal]] = []
        for i, analysis in enumerate(ctx.analyses):
            category = ctx.predictions[i].category if i < len(ctx.predictions) else None
            phrases = self.fraud_phrases.findall(analysis.normalised) if self.fraud_phrases else None
            results.append(structure_signals(analysis.entities, category, self.short_link_domains, phrases))
        return results
