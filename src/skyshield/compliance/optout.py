"""Read a recipient's reply (a mobile-originated message) and say whether it is an opt-out.

Only clear opt-outs count: the reply must consist of opt-out keywords (退订, TD, T, R, N, 拒收, 取消,
STOP, QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE, ARRET, ...) and a few polite words (请, 谢谢,
PLEASE), in any width, case or punctuation. Anything else is not an opt-out, however close it looks:
"不要退订", "how do I stop my card being charged", "T恤还有吗", "Don't stop".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

#: Chinese opt-out words (after NFKC); a reply made only of these and polite fillers is an opt-out.
CN_KEYWORDS = ("退订短信", "退订", "拒收", "取消订阅", "取消")
#: Chinese words that may surround a keyword without changing its meaning.
CN_FILLERS = ("请帮我", "请", "帮我", "我要", "谢谢", "短信", "了", "吧", "哦", "啊")
#: Latin opt-out words, upper case; OPT OUT / OPT-OUT are joined to OPTOUT first.
EN_KEYWORDS = frozenset({"STOP", "STOPALL", "QUIT", "END", "REVOKE", "OPTOUT", "CANCEL", "UNSUBSCRIBE",
                         "UNSUB", "ARRET", "TD", "T", "R", "N"})
EN_FILLERS = frozenset({"PLEASE", "PLS", "ALL", "ME", "THANKS", "THANK", "YOU"})

_TOKEN = re.compile(r"[A-Z]+|[0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")
_CN_PIECES = sorted(CN_KEYWORDS + CN_FILLERS, key=len, reverse=True)


@dataclass(frozen=True, slots=True)
class ReplyParse:
    """What a reply says: an opt-out or not, the keyword that made it one, and why (for evidence)."""

    opt_out: bool
    keyword: str | None
    why: str
    language: str  # "zh" or "en": the language of the confirmation to send


def _clean(text: str) -> str:
    """Full width to half width, accents dropped, upper case; punctuation, symbols and spaces become one space."""
    text = unicodedata.normalize("NFKD", text)
    text = unicodedata.normalize("NFKC", "".join(ch for ch in text if unicodedata.category(ch) != "Mn")).upper()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] in "PSZC" else ch)
    return " ".join("".join(out).split())


def _segment_cn(run: str) -> list[str] | None:
    """Split a run of Chinese characters into known keywords/fillers; ``None`` if any part is unknown."""
    pieces: list[str] = []
    i = 0
    while i < len(run):
        for piece in _CN_PIECES:
            if run.startswith(piece, i):
                pieces.append(piece)
                i += len(piece)
                break
        else:
            return None
    return pieces


def parse_reply(text: str) -> ReplyParse:
    """Is this reply an opt-out? Conservative: everything in it must be an opt-out keyword or a polite word."""
    cleaned = _clean(text or "")
    language = "zh" if re.search(r"[\u3400-\u9fff]", cleaned) else "en"
    if not cleaned:
        return ReplyParse(False, None, "empty reply", language)
    # Whatever the tokeniser does not cover (other scripts, emoji letters) makes the reply not an opt-out.
    leftover = _TOKEN.sub("", cleaned).replace(" ", "")
    if leftover:
        return ReplyParse(False, None, f"contains other text: {leftover[:20]!r}", language)
    tokens = _TOKEN.findall(cleaned.replace("OPT OUT", "OPTOUT").replace("STOP ALL", "STOPALL"))
    keyword: str | None = None
    for token in tokens:
        if token.isdigit():
            return ReplyParse(False, None, f"contains a number ({token})", language)
        if token.isascii():
            if token in EN_KEYWORDS:
                keyword = keyword or token
            elif token not in EN_FILLERS:
                return ReplyParse(False, None, f"word {token!r} is not an opt-out keyword", language)
            continue
        pieces = _segment_cn(token)
        if pieces is None:
            return ReplyParse(False, None, f"{token!r} is not only opt-out words", language)
        keyword = keyword or next((p for p in pieces if p in CN_KEYWORDS), None)
    if keyword is None:
        return ReplyParse(False, None, "no opt-out keyword", language)
    return ReplyParse(True, keyword, f"reply is an opt-out keyword ({keyword})", language)


@dataclass(slots=True)
class ReplyOutcome:
    """What handling one reply did: the parse, the opt-out record (if any) and the confirmation to send."""

    opt_out: bool
    keyword: str | None
    why: str
    scope: str | None = None
    record_id: int | None = None
    new: bool = False
    #: The one confirmation to send back (None when not an opt-out, already opted out, or none configured).
    confirmation: str | None = None

    def to_dict(self) -> dict:
        return {"opt_out": self.opt_out, "keyword": self.keyword, "why": self.why, "scope": self.scope,
                "record": self.record_id, "new": self.new, "confirmation": self.confirmation}


def handle_reply(ledger: Any, policy: Any, *, text: str, recipient: str, sender: str, tenant: str = "default",
                 signature: str | None = None, time: Any = None) -> ReplyOutcome:
    """Handle a reply from ``recipient`` (the subscriber) to ``sender`` (the address the marketing came from).

    An opt-out is filed under the signature (given, or that of the newest send from ``sender`` to this
    recipient), else under the sending number itself. The confirmation is returned, never sent here.
    """
    from skyshield.compliance.ledger import SENDER_SCOPE, clean_signature

    parsed = parse_reply(text)
    if not parsed.opt_out:
        return ReplyOutcome(False, None, parsed.why)
    if not recipient or not recipient.strip():
        raise ValueError("a reply needs the number it came from")
    sig = clean_signature(signature) or (ledger.last_signature(tenant, sender, recipient) if sender else None)
    scope = sig or (SENDER_SCOPE + sender if sender else "")
    if not scope:
        raise ValueError("an opt-out reply needs the signature or the number it was sent to")
    evidence = {"reply": text, "keyword": parsed.keyword, "to": sender, "why": parsed.why}
    record, new = ledger.record_opt_out(tenant, scope, recipient, source="reply", time=time, evidence=evidence)
    confirmation = None
    if new:
        conf = policy.section("detectors.compliance.consent")
        # Chinese when the brand or the reply is, or a CN number used a CN-style code (TD, T, R, N).
        cn_number = recipient.strip().startswith(("+86", "0086")) or re.fullmatch(r"1\d{10}", recipient.strip())
        chinese = (bool(re.search(r"[\u3400-\u9fff]", sig or "")) or parsed.language == "zh"
                   or (bool(cn_number) and parsed.keyword in {"TD", "T", "R", "N"}))
        pattern = conf["confirm_zh"] if chinese else conf["confirm_en"]
        if pattern and not sig:  # no brand known: leave the bracketed signature out rather than show a number
            pattern = pattern.replace("【{signature}】", "").replace("[{signature}] ", "")
        if pattern:
            confirmation = pattern.replace("{signature}", sig or sender)
    return ReplyOutcome(True, parsed.keyword, parsed.why, scope, record.id, new, confirmation)
