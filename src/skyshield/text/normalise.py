"""Turn a message into the canonical text the model and the rules read.

Spammers dodge keyword filters with full-width letters, traditional characters, emoji and
zero-width characters sprinkled between letters, spaced-out words ("加 微 信"), look-alike letters
(Cyrillic "а" for Latin "a") and homophones ("薇信" for 微信). :func:`normalise` undoes these so
"加 薇 信" and "加微信" read the same, while leaving URLs, numbers and ordinary text alone.

Steps, in order:

1. per character (one ``str.translate`` table): NFKC (full width → half width, ①→1), case folding,
   accents dropped from Latin letters, every kind of whitespace → one space, zero-width, control,
   private-use, emoji and other decorative symbols removed (over a batch, one array look-up for all
   the texts whose characters each map to exactly one character);
2. traditional → simplified Chinese (OpenCC ``t2s``, once per batch);
3. regular-expression rewrites: spaces between Chinese characters dropped, single characters
   separated to dodge filters rejoined, look-alike letters in Latin words, ``l``/``o`` inside phone
   numbers, evasive spellings of 微信 / QQ / 加微信, runs of spaces collapsed.

Evidence must quote what the sender really wrote, so :func:`normalise_with_offsets` also returns,
for every normalised character, the index of the original character it came from;
:func:`original_span` turns a normalised span into an original one.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["normalise", "normalise_batch", "normalise_with_offsets", "original_span"]

# ---------------------------------------------------------------------------------------------
# Step 1: the per-character table.

#: Characters NFKC leaves alone (or maps badly) that mean something specific.
_EXPLICIT: dict[str, str] = {
    "➕": "+", "✚": "+", "✙": "+", "╋": "+", "➖": "-",
    "〇": "〇",  # a digit zero only inside digit runs (step 3); "二〇二〇" stays
    "○": "〇", "◯": "〇", "⭕": "〇",  # the same, or an "o" between Latin letters ("c○m")
    "∶": ":",  # RATIO used as a Chinese colon
    # Windows-1252 quotes and dashes that arrived as C1 control characters ("that\x92s")
    "\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\x96": "-", "\x97": "-",
    "°": "°",  # 25°C keeps its degree sign (it is a "symbol" and would be dropped)
    "×": "×", "÷": "÷", "±": "±",
    # invisible "letters" used as blanks
    "\u3164": "", "\u115f": "", "\u1160": "", "\uffa0": "", "\u2800": "",
}
for _i, _base in enumerate((0x2776, 0x2780, 0x278A)):  # ❶..❿ ➀..➉ ➊..➓ (dingbats, no NFKC form)
    for _k in range(10):
        _EXPLICIT[chr(_base + _k)] = str(_k + 1) if _k < 9 else "10"
for _k in range(20):  # ⑴..⒇ and ⒈..⒛: NFKC gives "(1)" / "1." which would split a digit run
    _EXPLICIT[chr(0x2474 + _k)] = str(_k + 1)
    _EXPLICIT[chr(0x2488 + _k)] = str(_k + 1)

_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me", "So", "Sk", "Zl", "Zp"})


def _char_map(ch: str) -> str:
    """What one original character becomes in step 1 (possibly "" or several characters)."""
    if ch in _EXPLICIT:
        return _EXPLICIT[ch]
    if ch.isspace():
        return " "
    if unicodedata.category(ch) == "Cs":  # a lone surrogate (bad UTF-16 upstream)
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", ch).casefold():  # ℃ → °c, ⓐ → a, ｆ → f
        if c in _EXPLICIT:
            out.append(_EXPLICIT[c])
            continue
        if c.isspace():
            out.append(" ")
            continue
        cat = unicodedata.category(c)
        if cat in _DROP_CATEGORIES and not (c.isascii() and cat == "Sk"):  # keep ASCII ^ and `
            continue
        if cat == "Nd" and not c.isascii():  # ١٢٣ and other scripts' digits
            c = str(unicodedata.digit(c))
        if cat == "Sm" and not c.isascii():  # arrows and other decorative maths; ASCII +<=>|~ stay
            continue
        if not c.isascii() and "LATIN" in unicodedata.name(c, ""):
            base = unicodedata.normalize("NFD", c)[0]
            if base.isascii():
                c = base  # é → e, ǎ → a
        out.append(c)
    return "".join(out)


class _Table(dict):
    """``str.translate`` table: every BMP character filled at build time, others on first sight."""

    def __missing__(self, key: int) -> str:
        value = _char_map(chr(key))
        self[key] = value
        return value


_table: _Table | None = None
_nonunit_re: re.Pattern[str] | None = None
#: The table as an array for the BMP characters that map to exactly one character (the others are
#: found by ``_nonunit_re`` and never looked up here).
_unit_lut: np.ndarray | None = None
_build_lock = threading.Lock()


def _build_table() -> tuple[_Table, re.Pattern[str]]:
    """Fill the BMP part of the table once (about 0.1 s) and note which characters change length."""
    global _table, _nonunit_re, _unit_lut
    with _build_lock:
        if _table is None or _nonunit_re is None:
            table = _Table()
            nonunit: list[str] = []
            lut = np.arange(0x10000, dtype=np.uint32)
            for cp in range(0x10000):
                if 0xD800 <= cp <= 0xDFFF:
                    table[cp] = ""
                    nonunit.append(chr(cp))
                    continue
                ch = chr(cp)
                mapped = _char_map(ch)
                table[cp] = mapped if mapped != ch else cp
                if len(mapped) != 1:
                    nonunit.append(ch)
                else:
                    lut[cp] = ord(mapped)
            # Characters outside the BMP always take the slow path for offsets (nearly all are emoji).
            cls = "".join(re.escape(c) for c in nonunit if c != "\n")
            _nonunit_re = re.compile(f"[\n{cls}\U00010000-\U0010ffff]")
            lut[ord("\n")] = ord("\n")  # the batch separator (a newline in a text sends it to translate)
            _unit_lut = lut
            _table = table
    return _table, _nonunit_re


# ---------------------------------------------------------------------------------------------
# Step 2: traditional → simplified.

_opencc = None


def _converter():  # type: ignore[no-untyped-def]
    global _opencc
    if _opencc is None:
        import opencc

        _opencc = opencc.OpenCC("t2s")
    return _opencc


def _t2s_one(text: str) -> str:
    """Convert one message; if OpenCC changed its length (rare phrase rules), convert per character
    so every output character still comes from exactly one input character."""
    conv = _converter().convert(text)
    if len(conv) == len(text):
        return conv
    return "".join(_converter().convert(c) or c for c in text)


# ---------------------------------------------------------------------------------------------
# Step 3: rewrites. Each is (pattern, replacement function). After step 1 the only whitespace left is
# " ", and no pattern may match "\n" (the batch path joins messages with it).

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f"
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

_HOMOGLYPHS = str.maketrans({
    # Cyrillic (lower case: step 1 folded case already)
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "γ": "y",
})
_HOMOGLYPH_CHARS = "".join(chr(k) for k in _HOMOGLYPHS)


def _fix_mixed_word(m: re.Match[str]) -> str:
    word = m.group()
    # Only words mixing Latin letters with look-alikes: a Russian or Greek word stays as it is.
    if re.search("[a-z]", word) and re.search(f"[{_HOMOGLYPH_CHARS}]", word):
        return word.translate(_HOMOGLYPHS)
    return word


_DIGIT_LOOKALIKES = str.maketrans({"o": "0", "l": "1", "i": "1", "〇": "0"})


def _fix_digit_run(m: re.Match[str]) -> str:
    run = m.group()
    digits = sum(c.isdigit() for c in run)
    # A phone number with a few letters in it, not a word: mostly digits and at least 5 of them.
    if digits >= 5 and digits * 4 >= len(run) * 3:
        return run.translate(_DIGIT_LOOKALIKES)
    return run


_EVASIVE: dict[str, str] = {}
for _w in ("薇信", "威信", "徾信", "徽信", "危信", "嶶信", "微芯", "威芯", "薇芯", "v信", "wei信", "weixin", "微xin"):
    _EVASIVE[_w] = "微信"
for _w in ("扣扣", "抠抠", "寇寇", "扣q"):
    _EVASIVE[_w] = "qq"


def _evasive(m: re.Match[str]) -> str:
    word = m.group()
    if word in _EVASIVE:
        return _EVASIVE[word]
    return "加微信"  # the "+v" / "加v" family


_EVASIVE_RE = "|".join(sorted((re.escape(w) for w in _EVASIVE), key=len, reverse=True))

#: Noise put between single characters to split a word; "." only between Chinese characters, so
#: IP addresses and version numbers (1.2.3.4) stay whole.
_SEP = r"[ \-_*·•|~^\\'\"`=]"
_SEP_HAN = r"[ \-_*·•|~^\\'\"`=.]"

class _Rewrite(NamedTuple):
    pattern: re.Pattern[str]
    repl: Callable[[re.Match[str]], str]
    #: A cheap pattern every message the rewrite changes must contain: the batch path runs the rewrite
    #: only on those messages. (Python's regex engine skips ahead fast only to a pattern's first
    #: character, so each pattern below starts with a literal or a small set where it can.)
    anchor: re.Pattern[str] | None = None


def _drop(_: re.Match[str]) -> str:
    return ""


_SEP_RE = re.compile(_SEP)
_SEP_HAN_RE = re.compile(_SEP_HAN)


def _rejoin(m: re.Match[str]) -> str:
    joined = _SEP_RE.sub("", m.group())
    if joined.strip("x") == "":
        # "love nicky x x x x" are kisses and must not turn into a masked number; "号码:x x x x" (a
        # corpus that masks digits as x) is a spaced-out number
        before = m.string[max(0, m.start() - 4) : m.start() - 1].rsplit("\n", 1)[-1].rstrip(" ")
        if before and before[-1].isascii() and before[-1].isalpha():
            return m.group()
    return joined


def _rejoin_han(m: re.Match[str]) -> str:
    return _SEP_HAN_RE.sub("", m.group())


_SPLIT_TLDS = (
    "(?:com|cn|net|org|top|xyz|vip|icu|wang|ren|ltd|biz|hk|tk|io|ly|gl|ws|pw|cyou|buzz|cf|ga|gq|ml)"
    "(?![a-z0-9-])"
)
_SPLIT_CHAIN = f"(?:[a-z0-9-]{{1,63}}(?: ?[.。] ?[a-z0-9-]{{1,63}}){{0,4}} ?[.。] ?)?{_SPLIT_TLDS}"
_CJK_SPACES = _Rewrite(re.compile(f" (?<=[{_CJK}] ) *(?=[{_CJK}])"), _drop)
_TOKEN = f"[a-z0-9{_HAN}]"

_REWRITES: list[_Rewrite] = [
    # spaces between Chinese characters carry no meaning in Chinese and are a classic dodge
    _CJK_SPACES,
    # 加-微-信, 加*微*信: Chinese characters each separated by 1–3 noise characters (the match starts at
    # the first separator)
    _Rewrite(
        re.compile(f"{_SEP_HAN}(?<=[{_HAN}]{_SEP_HAN}){_SEP_HAN}{{0,2}}[{_HAN}](?:{_SEP_HAN}{{1,3}}[{_HAN}])+"),
        _rejoin_han,
    ),
    # f r e e, 1 3 8 ...: single letters/digits separated by noise, at least four in a row so that SMS-speak
    # like "r u ok" stays (the match starts at the first separator, after a token that starts a word)
    _Rewrite(
        re.compile(
            f"{_SEP}(?<=(?<![a-z0-9]){_TOKEN}{_SEP}){_SEP}{{0,2}}{_TOKEN}(?![a-z0-9])"
            f"(?:{_SEP}{{1,3}}{_TOKEN}(?![a-z0-9])){{2,}}"
        ),
        _rejoin,
    ),
    # links split to dodge link filters: "t . cn/abc", "abc。top", "usps . x . com" → "t.cn/abc", "abc.top",
    # "usps.x.com" (a spaced dot only in a chain of labels that ends in a top-level domain that is not
    # also an English word; "。" between Latin letters or digits always)
    _Rewrite(
        re.compile(
            f"\\.(?<=[a-z0-9]\\.) (?={_SPLIT_CHAIN})|。(?<=[a-z0-9]。) (?={_SPLIT_CHAIN})"
            f"| (?<=[a-z0-9] )[.。] ?(?={_SPLIT_CHAIN})"
            "|。(?<=[a-z0-9]。)(?=[a-z0-9])"
        ),
        lambda m: ".",
    ),
    _Rewrite(re.compile("www(?: [.。] ?|[.。] |。)(?=[a-z0-9])"), lambda m: "www."),
    # look-alike Cyrillic/Greek letters inside Latin words (from the start of a word, possessive, so a
    # long run of letters is read once, not n² times)
    _Rewrite(
        re.compile(f"(?<![a-z{_HOMOGLYPH_CHARS}])[a-z]*+[{_HOMOGLYPH_CHARS}][a-z{_HOMOGLYPH_CHARS}]*+"),
        _fix_mixed_word,
        re.compile(f"[{_HOMOGLYPH_CHARS}]"),
    ),
    # l / o / i / 〇 inside long digit runs (phone numbers): 138oo1380l0 → 13800138010
    _Rewrite(
        re.compile("(?<![a-z0-9])[0-9oli〇]{7,20}(?![a-z0-9])"),
        _fix_digit_run,
        re.compile("[oli〇](?<=[0-9][oli〇])|[oli〇](?=[0-9])"),
    ),
    # 〇 between digits: 2〇23; between Latin letters it is an "o": c○m
    _Rewrite(re.compile("〇(?<=[0-9]〇)|〇(?=[0-9])"), lambda m: "0"),
    _Rewrite(re.compile("〇(?<=[a-z]〇)(?=[a-z])"), lambda m: "o"),
    # evasive spellings, and "+v" / "+vx" / "加v" / "加微" → 加微信
    _Rewrite(
        re.compile(
            f"{_EVASIVE_RE}"
            f"|\\+{_SEP}{{0,2}}(?:v{_SEP}{{0,2}}x|w{_SEP}{{0,2}}x|v|weixin)(?![a-z信])"
            f"|加{_SEP}{{0,2}}(?:v{_SEP}{{0,2}}x|w{_SEP}{{0,2}}x|v|weixin)(?![a-z信])"
            "|\\+ ?(?:微信|微|薇|威)(?!信|博)"
            "|加(?:微|薇|威)(?!信|博|软|商|波|笑|风|小|型)"
        ),
        _evasive,
    ),
    # again: "+v 领取" became "加微信 领取"
    _CJK_SPACES,
    # runs of spaces (spaces at either end are stripped after the rewrites)
    _Rewrite(re.compile("  +"), lambda m: " "),
]


def _rewrite_batch(joined: str) -> str:
    """Apply every rewrite to messages joined by "\n"; anchored rewrites only touch the lines they may change."""
    for rw in _REWRITES:
        if rw.anchor is None:
            joined = rw.pattern.sub(rw.repl, joined)
            continue
        hits = [m.start() for m in rw.anchor.finditer(joined)]
        if not hits:
            continue
        pieces: list[str] = []
        last = 0
        for pos in hits:
            if pos < last:
                continue  # this line is already done
            line_start = joined.rfind("\n", 0, pos) + 1
            line_end = joined.find("\n", pos)
            if line_end < 0:
                line_end = len(joined)
            pieces.append(joined[last:line_start])
            pieces.append(rw.pattern.sub(rw.repl, joined[line_start:line_end]))
            last = line_end
        pieces.append(joined[last:])
        joined = "".join(pieces)
    return joined


# ---------------------------------------------------------------------------------------------
# Public API


def normalise(text: str) -> str:
    """The canonical form of one message (see the module docstring)."""
    return normalise_batch([text])[0]


def normalise_batch(texts: Sequence[str]) -> list[str]:
    """:func:`normalise` for many messages at once (one OpenCC call and one pass per rewrite)."""
    return _normalise_fast(texts)[0]


def _normalise_fast(texts: Sequence[str]) -> tuple[list[str], list[bool]]:
    """Normalised texts, plus for each whether the normalised text lines up with the original
    character for character (then offsets are the identity and the slow path is not needed)."""
    if isinstance(texts, str):
        raise TypeError("normalise_batch takes a sequence of strings, not one string")
    if not texts:
        return [], []
    table, nonunit = _build_table()
    try:
        identity = [nonunit.search(t) is None for t in texts]
    except TypeError:
        bad = next(t for t in texts if not isinstance(t, str))
        raise TypeError(f"expected str, got {type(bad).__name__}") from None
    step1 = _step1(texts, identity, table)

    converted = _converter().convert("\n".join(step1)).split("\n")
    if len(converted) != len(step1):  # never seen; be safe
        converted = [_converter().convert(s) for s in step1]
    for i, (before, after) in enumerate(zip(step1, converted, strict=True)):
        if len(after) != len(before):
            converted[i] = _t2s_one(before)
            identity[i] = identity[i] and len(converted[i]) == len(before)

    out = [t.strip(" ") for t in _rewrite_batch("\n".join(converted)).split("\n")]
    if len(out) != len(texts):  # a rewrite crossed a message boundary: a bug, but lose nothing
        out = [normalise_with_offsets(t)[0] for t in texts]
        return out, [False] * len(texts)
    for i, (before, after) in enumerate(zip(converted, out, strict=True)):
        if before != after:
            identity[i] = False
    return out, identity


def _step1(texts: Sequence[str], unit: list[bool], table: _Table) -> list[str]:
    """Step 1 for every text: one array look-up over all texts whose characters each map to one
    character (no newline, nothing outside the BMP), ``str.translate`` for the others."""
    assert _unit_lut is not None
    plain = [t for t, u in zip(texts, unit, strict=True) if u]
    if len(plain) < 8:  # not worth the array round trip
        return [t.translate(table) for t in texts]
    codes = np.frombuffer("\n".join(plain).encode("utf-32-le"), dtype=np.uint32)
    mapped = iter(_unit_lut[codes].tobytes().decode("utf-32-le").split("\n"))
    return [next(mapped) if u else t.translate(table) for t, u in zip(texts, unit, strict=True)]


def normalise_with_offsets(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index in ``text`` it came from.

    A normalised span ``[s, e)`` quotes ``text[offsets[s]:offsets[e - 1] + 1]`` (see
    :func:`original_span`).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    table, nonunit = _build_table()
    s = text.translate(table)
    # Every character maps to exactly one character except those ``nonunit`` finds (which map to none,
    # to several, or, for a newline and characters beyond the BMP, to one).
    offsets: list[int] = []
    done = 0
    for m in nonunit.finditer(text):
        i = m.start()
        offsets.extend(range(done, i))
        mapped = table[ord(text[i])]
        offsets.extend([i] * (1 if isinstance(mapped, int) else len(mapped)))
        done = i + 1
    offsets.extend(range(done, len(text)))

    conv = _converter().convert(s) if s else s
    if len(conv) != len(s):
        pieces: list[str] = []
        new_offsets: list[int] = []
        for c, o in zip(s, offsets, strict=True):
            p = _converter().convert(c) or c
            pieces.append(p)
            new_offsets.extend([o] * len(p))
        conv, offsets = "".join(pieces), new_offsets
    s = conv

    for rw in _REWRITES:
        s, offsets = _sub_with_offsets(rw.pattern, rw.repl, s, offsets)
    stripped = s.lstrip(" ")
    lead = len(s) - len(stripped)
    stripped = stripped.rstrip(" ")
    return stripped, offsets[lead : lead + len(stripped)]


def _sub_with_offsets(
    pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], s: str, offsets: list[int]
) -> tuple[str, list[int]]:
    pieces: list[str] = []
    new_offsets: list[int] = []
    last = 0
    changed = False
    for m in pattern.finditer(s):
        start, end = m.span()
        rep = repl(m)
        if rep == m.group():
            continue
        changed = True
        pieces.append(s[last:start])
        new_offsets.extend(offsets[last:start])
        pieces.append(rep)
        if rep:
            if len(rep) == end - start:
                new_offsets.extend(offsets[start:end])
            elif start < end:
                # spread the replacement over the matched original characters; the last one ends the match
                n, k = len(rep), end - start
                new_offsets.extend(offsets[start + min(k - 1, j * k // n)] for j in range(n - 1))
                new_offsets.append(offsets[end - 1])
        last = end
    if not changed:
        return s, offsets
    pieces.append(s[last:])
    new_offsets.extend(offsets[last:])
    return "".join(pieces), new_offsets


def original_span(offsets: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """Map a span ``[start, end)`` of the normalised text to ``[start, end)`` in the original text."""
    if not 0 <= start < end <= len(offsets):
        raise ValueError(f"span [{start}, {end}) outside a normalised text of length {len(offsets)}")
    return offsets[start], offsets[end - 1] + 1
