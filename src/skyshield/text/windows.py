"""Sentence windows: the short, SMS-length pieces of a long text.

The Chinese fraud corpus (Telecom_Fraud_Texts_5) holds narratives of 100-200 characters, while real
fraud SMS are often one or two sentences. Training on windows of 1-2 consecutive sentences cut from
long texts (fraud *and* legitimate ones, each window keeping its source's class) teaches the model the
wording without the length; scoring the same windows of held-out texts measures how it does on short
messages (see ``skyshield.text.evaluation``).
"""

from __future__ import annotations

import re

#: Sentence ends (kept with their sentence) and line breaks.
_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+|\n+|$)")
MIN_CHARS = 10


def sentences(text: str) -> list[str]:
    """``text`` cut after each 。！？；!?; and at line breaks; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def sentence_windows(text: str, cap: int, min_chars: int = MIN_CHARS) -> list[str]:
    """Up to ``cap`` distinct windows of one or two consecutive sentences, each at least ``min_chars``
    long and shorter than the whole text, spread evenly over the text (deterministic, no randomness)."""
    parts = sentences(text)
    if len(parts) < 2 or cap <= 0:
        return []
    whole = "".join(parts)
    candidates: list[str] = []
    seen: set[str] = set()
    for i, part in enumerate(parts):
        for window in (part, part + parts[i + 1] if i + 1 < len(parts) else ""):
            if len(window) >= min_chars and window != whole and window not in seen:
                seen.add(window)
                candidates.append(window)
    if len(candidates) <= cap:
        return candidates
    step = (len(candidates) - 1) / (cap - 1) if cap > 1 else 0.0
    return [candidates[round(k * step)] for k in range(cap)]
