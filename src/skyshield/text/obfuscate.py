"""Make obfuscated variants of a message, the way senders dodge keyword filters.

Used by the robustness tests and the docs: a normaliser that works turns every variant back into
(nearly) the normalised original, and the text model keeps its category on them. Every generator
takes the text and a ``random.Random`` so runs are repeatable.

    >>> import random
    >>> from skyshield.text.obfuscate import OBFUSCATIONS
    >>> OBFUSCATIONS["full_width"]("加微信 abc123", random.Random(1))
    '加微信\u3000ａｂｃ１２３'
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

__all__ = ["OBFUSCATIONS", "obfuscate", "obfuscate_all"]

Obfuscation = Callable[[str, random.Random], str]

_HAN = re.compile("[\u4e00-\u9fff]")
_LATIN_WORD = re.compile("[A-Za-z]{2,}")
_LINK = re.compile(r"(?:https?://)?(?:[a-z0-9-]+\.)+(?:com|cn|net|org|top|xyz|vip|cc)(?:/[\w/?=&.-]*)?", re.I)

#: Latin letter → a Cyrillic or Greek letter that looks the same.
_LOOKALIKES = {
    "a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і", "s": "ѕ", "j": "ј",
    "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р", "T": "Т",
    "X": "Х", "Y": "У", "v": "ν",
}
_NOISE = ["😀", "🔥", "❤", "✨", "🎁", "💰", "\u200b", "\u200c", "\u200d", "\ufeff", "☆", "★", "♥"]
_SEPARATORS = ["-", "*", "·", "|", "_", "~"]
_WEIXIN_SPELLINGS = ["薇信", "威信", "徾信", "v信"]


def spacing(text: str, rng: random.Random) -> str:
    """Spaces between Chinese characters (about one gap in three) and inside a few long English words."""
    out = []
    for i, ch in enumerate(text):
        out.append(ch)
        if i + 1 < len(text) and _HAN.match(ch) and _HAN.match(text[i + 1]) and rng.random() < 0.35:
            out.append(" " * rng.choice((1, 1, 2)))
    spaced = "".join(out)
    words = [m for m in _LATIN_WORD.finditer(spaced) if len(m.group()) >= 4]
    for m in sorted(rng.sample(words, min(2, len(words))), key=lambda m: -m.start()):
        spaced = spaced[: m.start()] + " ".join(m.group()) + spaced[m.end() :]
    return spaced


def separators(text: str, rng: random.Random) -> str:
    """A noise character between the characters of a few Chinese words: 加-微-信."""
    runs = [m for m in re.finditer("[\u4e00-\u9fff]{3,6}", text)]
    for m in sorted(rng.sample(runs, min(3, len(runs))), key=lambda m: -m.start()):
        sep = rng.choice(_SEPARATORS)
        text = text[: m.start()] + sep.join(m.group()) + text[m.end() :]
    return text


def traditional(text: str, rng: random.Random) -> str:
    """Simplified → traditional Chinese (OpenCC s2t)."""
    return _s2t().convert(text)


def full_width(text: str, rng: random.Random) -> str:
    """ASCII letters, digits, punctuation and spaces → their full-width forms."""
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c
        for c in text
    )


def homoglyphs(text: str, rng: random.Random) -> str:
    """Some Latin letters of each word → Cyrillic/Greek look-alikes, always keeping one Latin letter."""

    def swap(m: re.Match[str]) -> str:
        word = list(m.group())
        candidates = [i for i, c in enumerate(word) if c in _LOOKALIKES]
        if len(candidates) == len(word):
            candidates = candidates[1:]  # a word made only of look-alikes would read as Cyrillic
        for i in candidates:
            if rng.random() < 0.5:
                word[i] = _LOOKALIKES[word[i]]
        return "".join(word)

    return _LATIN_WORD.sub(swap, text)


def emoji(text: str, rng: random.Random) -> str:
    """Emoji, stars and zero-width characters sprinkled between characters (about one in six)."""
    out = []
    for ch in text:
        out.append(ch)
        if rng.random() < 0.17:
            out.append(rng.choice(_NOISE))
    return "".join(out)


def split_links(text: str, rng: random.Random) -> str:
    """Links broken up around their dots: t.cn/abc → "t . cn/abc" or "t。cn/abc"."""

    def split(m: re.Match[str]) -> str:
        return m.group().replace(".", rng.choice((" . ", ". ", " .", "。")))

    return _LINK.sub(split, text)


def weixin(text: str, rng: random.Random) -> str:
    """微信 → 薇信 / 威信 / 徾信 / v信, and 加微信 → +v (where no id follows straight after)."""
    text = re.sub("加微信(?![A-Za-z0-9])", lambda m: rng.choice(("+v", "➕V", "加v", "加微信")), text)
    return re.sub("微信", lambda m: rng.choice(_WEIXIN_SPELLINGS), text)


OBFUSCATIONS: dict[str, Obfuscation] = {
    "spacing": spacing,
    "separators": separators,
    "traditional": traditional,
    "full_width": full_width,
    "homoglyphs": homoglyphs,
    "emoji": emoji,
    "split_links": split_links,
    "weixin": weixin,
}


def obfuscate(text: str, names: list[str], rng: random.Random) -> str:
    """Apply the named obfuscations in order."""
    for name in names:
        text = OBFUSCATIONS[name](text, rng)
    return text


def obfuscate_all(text: str, rng: random.Random) -> str:
    """Every obfuscation at once (the hardest variant)."""
    return obfuscate(text, list(OBFUSCATIONS), rng)


_s2t_converter = None


def _s2t():  # type: ignore[no-untyped-def]
    global _s2t_converter
    if _s2t_converter is None:
        import opencc

        _s2t_converter = opencc.OpenCC("s2t")
    return _s2t_converter
