"""Verdicts as people and programs read them: the summary every ingress answers with, and the text
that ``skyshield check`` and ``skyshield why`` print."""

from __future__ import annotations

import json
from typing import Any

from skyshield.events import Channel, Verdict
from skyshield.store.base import StoredVerdict

TOP_SIGNALS = 5


def verdict_summary(verdict: Verdict, top: int = TOP_SIGNALS, reasons: bool = True) -> dict[str, Any]:
    """id, action, category, subtype, unwanted, score, reasons and the strongest signals with evidence."""
    ordered = sorted(verdict.signals, key=lambda s: -abs(s.points))
    out: dict[str, Any] = {
        "id": verdict.id,
        "action": verdict.action.value,
        "category": verdict.category.value,
        "subtype": verdict.subtype,
        "unwanted": round(verdict.unwanted, 4),
        "score": round(verdict.score, 3),
    }
    if reasons:
        out["reasons"] = verdict.reasons()
    out["signals"] = [
        {"name": s.name, "score": round(s.score, 4), "points": s.points, "evidence": s.evidence} for s in ordered[:top]
    ]
    return out


def dumps(data: Any, indent: int | None = None) -> str:
    """JSON with Chinese as written and any odd evidence value as its string."""
    separators = None if indent else (",", ":")
    return json.dumps(data, ensure_ascii=False, indent=indent, separators=separators, default=str)


def _category_line(verdict: Verdict) -> str:
    sub = f" / {verdict.subtype}" if verdict.subtype else ""
    return f"{verdict.category.value}{sub}"


def format_verdict(verdict: Verdict) -> str:
    """A few lines for a terminal: action, category, unwanted, score, one line per reason."""
    lines = [
        f"action:   {verdict.action.value}",
        f"category: {_category_line(verdict)}",
        f"unwanted: {verdict.unwanted:.2f}",
        f"score:    {verdict.score:g}",
    ]
    reasons = verdict.reasons()
    lines.append("reasons:" if reasons else "reasons:  (no signal gave points)")
    lines.extend(f"  {r}" for r in reasons)
    return "\n".join(lines)


def format_stored(stored: StoredVerdict) -> str:
    """Everything behind a stored verdict: the message, the decision, and every signal with its evidence."""
    v = stored.verdict
    numbers = "pseudonymised" if stored.numbers_pseudonymised else "as written"
    head = f"verdict {stored.id}, stored {stored.stored_at:%Y-%m-%d %H:%M:%S} UTC, model {v.model_version or '(none)'}"
    where = (f"tenant: {stored.tenant}   channel: {stored.channel.value}"
             + (f"   id: {stored.external_id}" if stored.external_id else ""))
    if stored.channel is Channel.CALL:  # a screened call has no text: who called whom, and when
        lines = [head, "", "call",
                 f"  caller:    {stored.sender or '-'}   callee: {stored.recipient or '-'}   (numbers {numbers})",
                 f"  started:   {stored.time:%Y-%m-%d %H:%M:%S %Z}   {where}", ""]
    else:
        lines = [head, "", "message",
                 f"  text:      {stored.text if stored.text is not None else '(removed by retention)'}",
                 f"  sender:    {stored.sender or '-'}   recipient: {stored.recipient or '-'}   (numbers {numbers})",
                 f"  sent:      {stored.time:%Y-%m-%d %H:%M:%S %Z}   {where}", ""]
    lines += [
        "decision",
        f"  action:    {v.action.value}",
        f"  category:  {_category_line(v)}",
        f"  unwanted:  {v.unwanted:.4f}   (probability the recipient did not ask for it)",
        f"  score:     {v.score:g}   (sum of the points below; the policy's thresholds turn it into the action)",
    ]
    if v.probabilities:
        probs = ", ".join(f"{k} {p:.3f}" for k, p in sorted(v.probabilities.items(), key=lambda kv: -kv[1]))
        lines.append(f"  model:     {probs}")
    lines += ["", f"signals ({len(v.signals)}; points = score x the policy's weight for the signal)"]
    if not v.signals:
        lines.append("  (none)")
    for s in sorted(v.signals, key=lambda s: -abs(s.points)):
        lines.append(f"  {s.points:+7.2f}  {s.name}  (score {s.score:.4g})")
        for key, value in s.evidence.items():
            shown = value if isinstance(value, str) else dumps(value)
            lines.append(f"           {key}: {shown}")
    return "\n".join(lines)
