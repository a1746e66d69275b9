"""Find the entities in a batch of messages: links, phone numbers, chat ids, amounts, one-time codes,
the 【signature】 and the opt-out text.

Matching runs on the normalised text (so "加 薇 信" and "ｔ．ｃｎ" are found), one compiled regular
expression per kind over the whole batch joined by newlines; every span is then mapped back to the
*original* text, so evidence quotes what the sender wrote. phonenumbers and tldextract only see
candidates the regular expressions found. No pattern can backtrack catastrophically: every
repetition that can meet itself is bounded.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache

from skyshield.text.analysis import Entities, Span, TextAnalysis
from skyshield.text.gcpause import paused_gc
from skyshield.text.normalise import _normalise_fast, normalise_with_offsets

__all__ = ["analyse", "analyse_batch", "registered_domain", "phone_kind"]

# ---------------------------------------------------------------------------------------------
# Patterns (over normalised text: lower case, half width, simplified; "\n" separates messages, so
# no pattern may match it).

def _word(alternatives: str, before: str = "a-z", after: str = "") -> str:
    """Alternatives that must not follow a letter, each written as its literal first character, then a
    look-behind, then the rest, then ``after``.

    Python's regex engine skips ahead fast only to the first characters of a pattern's top-level
    alternatives: a pattern that starts with a look-behind, or an alternative that starts with a group,
    is tried at every position (5-10x slower here)."""
    out = []
    for alt in _top_level_split(alternatives):
        first = re.escape(alt[0])
        out.append(f"{first}(?<![{before}]{first}){alt[1:]}{after}")
    return "|".join(out)


def _top_level_split(pattern: str) -> list[str]:
    """Split a regex on the "|" that are not inside parentheses or brackets."""
    parts, depth, current, escaped, in_class = [], 0, [], False, False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return parts


_URL_CHARS = r"[a-z0-9\-._~:/?#@$&*+=%]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LINK_RE = re.compile(
    r"(?:(?P<scheme>(?:https?|ftp)://)|(?<![a-z0-9@.\-/_]))"
    r"(?:"
    r"(?P<ip>(?:\d{1,3}\.){3}\d{1,3})"
    rf"|(?P<host>(?:{_LABEL}\.){{1,8}}[a-z]{{2,24}})"
    # after a scheme any host name is a link, even one with no public suffix (http://xxx, masked)
    rf"|(?<=//)(?P<anyhost>{_LABEL}(?:\.{_LABEL}){{0,8}})"
    r")"
    r"(?![a-z0-9\-])(?!\.[a-z0-9])"
    r"(?P<port>:\d{1,5})?"
    rf"(?P<path>[/?#]{_URL_CHARS}{{0,2000}})?"
)
#: Every line with a link has one of these; _LINK_RE runs only on such lines.
_LINK_ANCHOR = re.compile(r"://|\.(?:[a-z]{2,24}(?![a-z0-9\-])|\d{1,3}\.\d{1,3}\.\d)")
# Top-level domains accepted for a bare "name.tld" with no scheme, "www." or path: text like
# "ok.no" or "me.so" (a missing space after a full stop) is not a link.
_BARE_TLDS = frozenset(
    "com cn net org top xyz vip cc info shop club site online app link icu wang ren ltd biz hk tk io co ly gl "
    "im me uk us tw mo asia live fun work store tech win bid loan click club vip xin cyou buzz one ink pw ws".split()
)

_PHONE_REST = (
    r"(?:[0-9x]|[ \-](?=[0-9x])|\((?=[0-9x]{2,4}\))|\)(?=[ \-]?[0-9x])){3,22}"
    r"(?![0-9a-z])"
)


def _each_first(chars: str, rest: str) -> str:
    """``[chars]rest`` written as one alternative per first character, so that the regex engine can
    skip ahead to them (see :func:`_word`): about twice as fast over a batch."""
    return "|".join(f"{re.escape(c)}{rest}" for c in chars)


_PHONE_RE = re.compile(
    r"\+(?<![0-9a-z.]\+)[0-9]" + _PHONE_REST + "|" + _each_first("0123456789x", r"(?<![0-9a-z.+][0-9x])" + _PHONE_REST)
)
_DATE_LIKE = re.compile(r"^(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])$")

_CHAT_RE = re.compile(
    r"(?:加微信|微信号?|加我微信|加qq|扣群|"
    + _word(r"wechat(?: ?id)?|weixin|wx号?|vx号?|v号|qq号?|qq群|telegram|tg|whatsapp|line ?id|v(?=[:=])", "a-z0-9")
    + r")[ :=]{0,3}(?:号码?|是|为|:)?[ :=]{0,3}"
    r"(?P<id>[a-z0-9][a-z0-9_\-]{3,19})(?![a-z0-9_\-])"
)

# digits, or digits masked as x (the 800k corpus writes "xx万元")
_NUM = r"\d{1,3}(?:,\d{3}){1,5}(?:\.\d{1,4})?|\d{1,15}(?:\.\d{1,4})?|x{1,12}(?:\.x{1,4})?"
_ZH_NUM_FIRST = "零一二三四五六七八九十两"
_ZH_NUM_REST = "[零一二三四五六七八九十两百千万亿]{0,7}"
_UNIT = (
    r" ?(?:万|千|百|亿|w)?"
    r"(?:元|块钱|块|人民币|rmb|美元|英镑|欧元|港币|usd|gbp|eur|pounds?(?![a-z])|dollars?(?![a-z])|euros?(?![a-z])"
    r"|万(?![人个次条名只家位件]))"
)
_AMOUNT_RE = re.compile(
    # ¥1,999 / $20 / rmb500
    "|".join(rf"{cur} ?(?:{_NUM})(?: ?(?:万|千|亿|k|m|w)(?![a-z]))?"
             for cur in (r"¥", r"\$", r"£", r"€", "rmb", "cny", "usd", "gbp", "eur", r"us\$", r"hk\$"))
    # 1,999.00元 / 5万元 / 100 pounds: a digit, a look-behind, the rest (normalised text has ASCII digits only)
    + "|" + _each_first(
        "0123456789",
        rf"(?<![0-9a-z.,]\d)(?:\d{{0,2}}(?:,\d{{3}}){{1,5}}(?:\.\d{{1,4}})?|\d{{0,14}}(?:\.\d{{1,4}})?){_UNIT}",
    )
    # masked xx万元
    + rf"|x(?<![0-9a-z.,]x)x{{0,11}}(?:\.x{{1,4}})?{_UNIT}"
    # 三千元
    + "|" + _each_first(_ZH_NUM_FIRST, rf"{_ZH_NUM_REST}(?:元|块钱)")
)

_CODE_KEYWORD_RE = re.compile(
    r"验证码|校验码|动态码|动态密码|确认码|激活码|安全码|短信码|认证码|授权码|"
    + _word(
        r"verification code|security code|confirmation code|login code|access code|"
        r"one[ -]time (?:pass)?code|passcode|otp|pin|code",
        after="(?![a-z])",
    )
)
_CODE_TOKEN_RE = re.compile(r"(?<![0-9a-z])[0-9a-z]{4,8}(?![0-9a-z]|-[0-9a-z])")
#: "code" after these words is not a one-time code.
_NOT_OTP_BEFORE_CODE = re.compile(
    r"(?:tracking|promo|promotion|discount|coupon|voucher|post|zip|area|country|reference|bonus|gift|claim|"
    r"referral|invite|invitation|qr|bar|source|dress|error|product|postal) ?$"
)
_UNIT_SUFFIX = re.compile(r"\d(?:hrs?|mins?|am|pm|th|st|nd|rd|gb|mb|kb|kg|km|cm|mm|ml|yrs?|days?|pcs)$")
_DATE_AFTER = frozenset("年月日号点时分")

# 【any name】, or [Brand] in Latin letters (the 800k corpus writes emoji as "[微笑]", not a signature)
_BRACKET_BRAND = r"\[([a-z0-9][a-z0-9 &.'\-]{0,23})\]"
_SIGNATURE_START_RE = re.compile(rf"^ ?(?:【([^【】\n]{{1,24}})】|{_BRACKET_BRAND})")
_SIGNATURE_END_RE = re.compile(rf"(?:【([^【】\n]{{1,24}})】|{_BRACKET_BRAND})[ .。!]{{0,3}}$")

_OPT_OUT_RE = re.compile(
    # 回T退订, 回复TD退订, 发送0退订, 回复R拒收; 回复TD alone
    "|".join(f"{verb} ?(?:td|t|n|r|0|00)? ?(?:退订|拒收)" for verb in ("回复?", "发送?", "编辑", "短信"))
    + r"|回复?(?:td|t|n|r)(?![a-z])|发送?(?:td|t|n|r)(?![a-z])"
    # 退订, 退订回T, 拒收请回复R; then TD退订
    + "|"
    + "|".join(f"{word}(?:请?(?:回复?|发送?) ?(?:td|t|n|r)(?![a-z]))?" for word in ("退订", "拒收"))
    + r"|不再接收|取消订阅|"
    + _word(r"td? ?退订")
    # then: reply STOP (to opt out), txt STOP to 87239, unsubscribe, opt out, STOP (upper case, checked later)
    + "|"
    + _word(
        r"reply|text|txt|send|sms",
        after=r"(?: with)? ?[\"']?(?:stop|end|unsub|stopall|optout)[\"']?"
        r"(?: (?:to|2) (?:opt[ -]?out|unsubscribe|end|cancel|stop)| ?[a-z]{0,12} ?to \d{3,6})?",
    )
    + "|"
    + _word(r"unsubscribe|opt[ -]?out", after="(?![a-z])")
    + "|"
    + _word(r"stop(?: ?2 ?end| to end| to \d{3,6})?(?![a-z])")
)

_HAS_HAN = re.compile("[\u3400-\u9fff]")


# ---------------------------------------------------------------------------------------------
# Library look-ups, cached per distinct value.

_tld = None


def _tld_extract():  # type: ignore[no-untyped-def]
    global _tld
    if _tld is None:
        import tldextract

        # suffix_list_urls=() keeps it offline: the public suffix list bundled with the package.
        _tld = tldextract.TLDExtract(suffix_list_urls=())
    return _tld


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """The registrable domain of ``host`` ("u.10010.cn" → "10010.cn"), or "" if its suffix is not public."""
    r = _tld_extract()(host.lower().rstrip("."))
    if not r.suffix or not r.domain:
        return ""
    return f"{r.domain}.{r.suffix}"


@lru_cache(maxsize=65536)
def phone_kind(number: str, chinese: bool = True) -> str:
    """Classify a phone number written as digits (maybe with a leading "+" or "00", or masked "x").

    Returns cn_mobile, cn_landline, cn_400, cn_800, international, service, masked, or "" when it is
    not a phone number. ``chinese=False`` (an English message) reads a number without a country code
    as British or North American before Chinese: 09061701461 is a UK premium-rate line there.
    """
    digits = re.sub(r"[^0-9x+]", "", number)
    if not digits:
        return ""
    if "x" in digits:
        # the 800k corpus masks digits as x: 11 of them is a mobile number, 7–12 some number
        return "masked" if 7 <= len(digits.lstrip("+")) <= 13 and digits.count("x") * 2 > len(digits) else ""
    if len(digits.lstrip("+")) < 5:
        return ""
    intl = digits.startswith("+") or digits.startswith("00")
    national = digits.lstrip("+")
    if digits.startswith("00"):
        national = digits[2:]
    if intl and national.startswith("86"):
        national, intl = national[2:], False
    if not intl:
        if len(national) == 10 and national.startswith("400"):
            return "cn_400"
        if len(national) == 10 and national.startswith("800"):
            return "cn_800"
        if len(national) == 5 and (national[0] == "9" or national.startswith(("100", "123", "12"))):
            return "service"
        if national.startswith("106") and 8 <= len(national) <= 20:
            return "service"  # SMS sender port numbers of registered senders
        if chinese and len(national) == 11 and _cn_mobile_pattern().fullmatch(national):
            return "cn_mobile"  # what the parse below says of these, without its ~40 us a new number
    import phonenumbers
    from phonenumbers import NumberParseException, PhoneNumberType, shortnumberinfo

    try:
        if intl:
            parsed = phonenumbers.parse("+" + national)
            return "international" if phonenumbers.is_valid_number(parsed) else ""
        if not chinese and len(national) >= 10 and _valid_in(national, ("GB", "US")):
            return "international"
        parsed = phonenumbers.parse(national, "CN")
    except NumberParseException:
        return ""
    if phonenumbers.is_valid_number(parsed):
        kind = phonenumbers.number_type(parsed)
        if kind == PhoneNumberType.MOBILE:
            return "cn_mobile"
        if kind == PhoneNumberType.TOLL_FREE:
            return "cn_800"
        if kind == PhoneNumberType.SHARED_COST:
            return "cn_400"
        return "cn_landline"
    if len(national) <= 6 and shortnumberinfo.is_valid_short_number_for_region(parsed, "CN"):
        return "service"
    # Numbers written without their country code in English texts: UK, then North America.
    if len(national) >= 10 and _valid_in(national, ("GB", "US")):
        return "international"
    return ""


@lru_cache(maxsize=1)
def _cn_mobile_pattern() -> re.Pattern[str]:
    """Numbers ``phonenumbers`` reads as Chinese mobiles and nothing else: its own CN mobile pattern, minus
    any number that a pattern it checks first (or the fixed-line one) could also claim. Such an 11-digit
    number starting 13-19 has no national or carrier prefix to strip (those are 0, 11xx, 12xx, 179xx, which
    the mobile pattern excludes). ``tests/test_text_extract.py`` compares it with the full parse."""
    from phonenumbers import PhoneMetadata

    meta = PhoneMetadata.metadata_for_region("CN")
    others = [d.national_number_pattern for d in (meta.premium_rate, meta.toll_free, meta.shared_cost, meta.voip,
                                                  meta.personal_number, meta.pager, meta.uan, meta.voicemail,
                                                  meta.fixed_line) if d is not None and d.national_number_pattern]
    exclude = "".join(f"(?!(?:{p})$)" for p in others)
    return re.compile(f"{exclude}(?:{meta.mobile.national_number_pattern})")


def _valid_in(national: str, regions: tuple[str, ...]) -> bool:
    import phonenumbers
    from phonenumbers import NumberParseException

    for region in regions:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(national, region)):
                return True
        except NumberParseException:
            continue
    return False


# ---------------------------------------------------------------------------------------------
# Extraction


def analyse(text: str) -> TextAnalysis:
    """:func:`analyse_batch` for one message."""
    return analyse_batch([text])[0]


def analyse_batch(texts: Sequence[str]) -> list[TextAnalysis]:
    """Normalise and extract entities for a batch of messages; one :class:`TextAnalysis` each."""
    with paused_gc():
        return _analyse_batch(list(texts))


def _analyse_batch(texts: list[str]) -> list[TextAnalysis]:
    norms, identity = _normalise_fast(texts)
    found = _find_all(norms)
    out: list[TextAnalysis] = []
    for i, (original, norm) in enumerate(zip(texts, norms, strict=True)):
        matches = found.get(i)
        if not matches:
            out.append(TextAnalysis(original, norm, Entities()))
            continue
        offsets: list[int] | None = None
        if not identity[i]:
            slow_norm, offsets = normalise_with_offsets(original)
            if slow_norm != norm:  # should not happen; extract again on the text the offsets belong to
                norm = slow_norm
                matches = _find_all([norm]).get(0, [])
        out.append(TextAnalysis(original, norm, _build_entities(original, norm, offsets, matches)))
    return out


_Match = tuple[str, re.Match[str], int]  # (kind, match, start of the message in the joined text)


def _find_all(norms: list[str]) -> dict[int, list[_Match]]:
    """Run every pattern once over the joined batch; group the matches by message."""
    joined = "\n".join(norms)
    starts = [0]
    for n in norms[:-1]:
        starts.append(starts[-1] + len(n) + 1)
    found: dict[int, list[_Match]] = {}

    def add(kind: str, pattern: re.Pattern[str]) -> None:
        for m in pattern.finditer(joined):
            i = bisect_right(starts, m.start()) - 1
            found.setdefault(i, []).append((kind, m, starts[i]))

    def add_anchored(kind: str, pattern: re.Pattern[str], anchor: re.Pattern[str]) -> None:
        done = -1
        for a in anchor.finditer(joined):
            i = bisect_right(starts, a.start()) - 1
            if i == done:
                continue
            done = i
            for m in pattern.finditer(joined, starts[i], starts[i] + len(norms[i])):
                found.setdefault(i, []).append((kind, m, starts[i]))

    add_anchored("link", _LINK_RE, _LINK_ANCHOR)
    add("phone", _PHONE_RE)
    add("chat", _CHAT_RE)
    add("amount", _AMOUNT_RE)
    add("code_kw", _CODE_KEYWORD_RE)
    add("opt_out", _OPT_OUT_RE)
    # signatures sit at the start or end of a message: look at those ends only
    for i, n in enumerate(norms):
        if "】" in n or "]" in n:
            for pattern in (_SIGNATURE_START_RE, _SIGNATURE_END_RE):
                m = pattern.search(n)
                if m:
                    found.setdefault(i, []).append(("signature", m, 0))
    return found


def _build_entities(original: str, norm: str, offsets: list[int] | None, matches: list[_Match]) -> Entities:
    ent = Entities()

    def span(start: int, end: int) -> Span:
        if offsets is not None:
            start, end = offsets[start], offsets[end - 1] + 1
        return Span(start, end, original[start:end])

    chinese = _HAS_HAN.search(norm) is not None
    taken: list[tuple[int, int]] = []  # normalised spans already claimed by links (no phones inside URLs)
    code_keywords: list[tuple[int, int]] = []
    by_kind: dict[str, list[tuple[re.Match[str], int]]] = {}
    for kind, m, base in matches:
        by_kind.setdefault(kind, []).append((m, base))

    for m, base in by_kind.get("link", []):
        s, e = m.start() - base, m.end() - base
        path = m.group("path") or ""
        stripped = path.rstrip(".,;:!?'\")]}>-")
        e -= len(path) - len(stripped)
        if m.group("ip"):
            if all(int(p) <= 255 for p in m.group("ip").split(".")):
                ent.ip_links.append(span(s, e))
                taken.append((s, e))
            continue
        host = m.group("host") or m.group("anyhost")
        domain = registered_domain(host)
        if not domain:
            if not m.group("scheme"):
                continue
            domain = host  # no public suffix: name the host itself
        bare = not m.group("scheme") and not host.startswith("www.") and not stripped
        if bare and host.rsplit(".", 1)[-1] not in _BARE_TLDS:
            continue
        ent.links.append(span(s, e))
        ent.link_domains.append(domain)
        taken.append((s, e))

    def inside_taken(s: int, e: int) -> bool:
        return any(ts <= s and e <= te for ts, te in taken)

    for m, base in by_kind.get("phone", []):
        s, e = m.start() - base, m.end() - base
        text = m.group()
        if inside_taken(s, e) or _DATE_LIKE.match(text):
            continue
        kind = phone_kind(text, chinese)
        if not kind:
            # "致电 95555 或 138..." may be two numbers in one run: try the groups on their own
            for g in re.finditer(r"[0-9x+]+", text):
                k = phone_kind(g.group(), chinese)
                if k and len(g.group()) >= 5:
                    ent.phones.append(span(s + g.start(), s + g.end()))
                    ent.phone_kinds.append(k)
            continue
        ent.phones.append(span(s, e))
        ent.phone_kinds.append(kind)

    for m, base in by_kind.get("chat", []):
        s, e = m.start() - base, m.end() - base
        ent.chat_ids.append(span(s, e))

    for m, base in by_kind.get("amount", []):
        s, e = m.start() - base, m.end() - base
        if not inside_taken(s, e):
            ent.amounts.append(span(s, e))

    for m, base in by_kind.get("code_kw", []):
        code_keywords.append((m.start() - base, m.end() - base))
    seen_codes: set[int] = set()
    phone_spans = [(p.start, p.end) for p in ent.phones]
    for ks, ke in code_keywords:
        if norm[ks:ke] == "code" and _NOT_OTP_BEFORE_CODE.search(norm, max(0, ks - 16), ks):
            continue
        code = _code_near(norm, ks, ke)
        if code is None or code[0] in seen_codes or inside_taken(*code):
            continue
        sp = span(*code)
        if any(ps <= sp.start and sp.end <= pe for ps, pe in phone_spans):  # 拨打95599 … 验证码
            continue
        seen_codes.add(code[0])
        ent.codes.append(sp)

    for m, _base in by_kind.get("signature", []):  # the one at the start comes first
        g = 1 if m.group(1) is not None else 2
        s, e = m.span(g)
        inner = norm[s:e]
        s += len(inner) - len(inner.lstrip())
        e -= len(inner) - len(inner.rstrip())
        if s < e and ent.signature is None:
            ent.signature = span(s, e)

    best: tuple[int, int] | None = None
    for m, base in by_kind.get("opt_out", []):
        s, e = m.start() - base, m.end() - base
        while s < e and norm[s] == " ":
            s += 1
        while e > s and norm[e - 1] == " ":
            e -= 1
        if s >= e:
            continue
        if norm[s:e] == "stop":
            sp = span(s, e)
            if not sp.text.isupper():  # a bare "stop" counts only as the keyword STOP
                continue
        if best is None or (e - s) > (best[1] - best[0]):
            best = (s, e)
    if best is not None:
        ent.opt_out = span(*best)
    return ent


#: "<code> is your [brand ...] code" ending right before the keyword; bounded repeats, no backtracking blow-up.
_IS_YOUR_CODE_RE = re.compile(r"(?<![\w-])([a-z0-9-]{4,10}) is your (?:[\w.-]{1,20} ){0,3}$")


def _code_near(norm: str, ks: int, ke: int) -> tuple[int, int] | None:
    """A one-time code right after (or just before) a code keyword, as a normalised span."""
    keyword = norm[ks:ke]
    for m in _CODE_TOKEN_RE.finditer(norm, ke, min(len(norm), ke + 16)):
        if _looks_like_code(m.group()) and norm[m.end() : m.end() + 1] not in _DATE_AFTER:
            return m.start(), m.end()
    if keyword in ("pin", "code", "otp"):  # too common a word to look backwards from ...
        # ... except in the standard "123456 is your (Instagram) code" form.
        window_start = max(0, ks - 60)
        m = _IS_YOUR_CODE_RE.search(norm, window_start, ks)
        if m and _looks_like_code(m.group(1)):
            return m.start(1), m.end(1)
        return None
    window_start = max(0, ks - 30)
    before = list(_CODE_TOKEN_RE.finditer(norm, window_start, ks))
    for m in reversed(before):
        if _looks_like_code(m.group()) and norm[m.end() : m.end() + 1] not in _DATE_AFTER:
            return m.start(), m.end()
    return None


def _looks_like_code(token: str) -> bool:
    digits = sum(c.isdigit() for c in token)
    if digits == len(token):
        return True
    return digits >= 2 and digits >= len(token) - digits and not _UNIT_SUFFIX.search(token)
