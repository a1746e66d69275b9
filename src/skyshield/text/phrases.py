"""Turn the text model's scored n-gram spans into the readable phrases of ``top_terms``.

:func:`phrases` is the rule, for one message; :func:`phrases_batch` gives the same answer for a whole
batch with numpy (no Python loop per span or per phrase; only the few phrases shown become strings).

The rule: spans are read in (start, end, value) order; overlapping or touching spans merge into one
phrase ("澳门" + "娱乐" + "城" -> "澳门娱乐城") up to ``PHRASE_CHARS`` characters, adding their values.
The ``2 * top`` strongest phrases are cut at punctuation (each piece gets the phrase's value shared by
length) and a piece that cuts a Latin word grows back to the whole word (at most 32 characters
backwards). Pieces with the same text add up; the ``top`` strongest are shown, ties in order of first
appearance.

Texts here are as :mod:`skyshield.text.features` lays them out: a start marker, the text, end markers;
span positions count from the start marker.
"""

from __future__ import annotations

import re

import numpy as np

from skyshield.text.features import _powers

PHRASE_CHARS = 8
_BACK = 32  # how far a cut Latin word may grow backwards

_BREAK_PIECE = re.compile(r"[^\W_]+")  # a run of letters, digits or CJK characters
_ASCII_WORD = re.compile(r"[a-z0-9]*")
_ASCII_TAIL = re.compile(r"[a-z0-9]*$")
_ASCII_PAIR = re.compile(r"[a-z0-9]{2}")  # a Latin word continues across this point


def phrases(text: str, spans: list[tuple[int, int, float]], top: int) -> list[tuple[str, float]]:
    """The ``top`` phrases of one message, strongest first, from its scored spans (see the module doc)."""
    spans.sort()
    merged: list[tuple[float, int, int]] = []
    cur_s, cur_e, cur_v = -1, -1, 0.0
    for s0, e0, v in spans:
        end = e0 if e0 > cur_e else cur_e
        if s0 <= cur_e and end - cur_s <= PHRASE_CHARS:
            cur_e, cur_v = end, cur_v + v
            continue
        if cur_s >= 0:
            merged.append((cur_v, cur_s, cur_e))
        cur_s, cur_e, cur_v = s0, e0, v
    if cur_s >= 0:
        merged.append((cur_v, cur_s, cur_e))
    # Strongest phrases first; weaker ones can only matter if they repeat a stronger one's text.
    merged.sort(reverse=True)
    terms: dict[str, float] = {}
    for v, s0, e0 in merged[:2 * top]:
        for piece in _BREAK_PIECE.finditer(text, s0, e0):
            a, b = piece.span()
            share = v * (b - a) / (e0 - s0)
            if a > 0 and _ASCII_PAIR.match(text, a - 1):
                a -= len(_ASCII_TAIL.search(text, max(0, a - _BACK), a).group())
            if _ASCII_PAIR.match(text, b - 1):
                b = _ASCII_WORD.match(text, b).end()
            gram = text[a:b]
            terms[gram] = terms.get(gram, 0.0) + share
    return sorted(terms.items(), key=lambda gv: -gv[1])[:top]


# ---------------------------------------------------------------------------------------------
# The batch version. Sorting is the costly part: every sort below is one np.sort of int64 keys that
# pack (message, what to order by), never a multi-key lexsort (10x slower).

#: Below this many messages the per-message rule is faster than numpy's fixed costs.
_FEW = 24

_alnum_bmp: np.ndarray | None = None


def _is_alnum(cp: np.ndarray) -> np.ndarray:
    r"""``chr(c).isalnum()`` for each code point (what the regex class ``[^\W_]`` matches)."""
    global _alnum_bmp
    if _alnum_bmp is None:
        _alnum_bmp = np.fromiter((chr(c).isalnum() for c in range(0x10000)), dtype=bool, count=0x10000)
    out = _alnum_bmp[np.minimum(cp, 0xFFFF)]
    high = np.flatnonzero(cp > 0xFFFF)
    if len(high):
        out[high] = [chr(c).isalnum() for c in cp[high].tolist()]
    return out


def _is_ascii_word(cp: np.ndarray) -> np.ndarray:
    """What ``[a-z0-9]`` matches."""
    return ((cp >= 97) & (cp <= 122)) | ((cp >= 48) & (cp <= 57))


def _rank_in_group(group: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For ascending group ids < n: where each group starts, and each element's rank in its group."""
    seg = np.searchsorted(group, np.arange(n + 1))
    return seg, np.arange(len(group)) - seg[group]


def _dense_rank(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's rank among the distinct values (0 = smallest), and the distinct values in order."""
    order = np.argsort(values)
    ordered = values[order]
    step = np.empty(len(values), dtype=np.int64)
    step[:1] = 0
    np.not_equal(ordered[1:], ordered[:-1], out=step[1:], casting="unsafe")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.cumsum(step)
    return rank, ordered[step.astype(bool) | (np.arange(len(values)) == 0)]


def _bits(values: np.ndarray) -> int:
    return max(1, int(values.max(initial=0)).bit_length())


def _round3(values: np.ndarray) -> list[float]:
    """``[round(v, 3) for v in values]``, in numpy where the answer is certain.

    rint(v * 1000) is Python's correctly rounded result unless v * 1000 is within float error of a
    half (below 1e9 that error is under 1e-6); then, or for huge values, Python's round() decides.
    Dividing the exact integer by 1000 gives the float nearest the decimal, as Python's round does."""
    scaled = values * 1000.0
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, sent to round() below
        frac = scaled - np.floor(scaled)
    out = (np.rint(scaled) / 1000.0).tolist()
    unsure = ~(np.abs(scaled) < 1e9) | (np.abs(frac - 0.5) < 1e-6)  # NaN compares False: unsure
    for i in np.flatnonzero(unsure).tolist():
        out[i] = round(float(values[i]), 3)
    return out


def phrases_batch(layout: str, codepoints: np.ndarray, first: np.ndarray, stop: np.ndarray, msg: np.ndarray,
                  starts: np.ndarray, ends: np.ndarray, values: np.ndarray,
                  top: int) -> list[list[tuple[str, float]]]:
    """:func:`phrases` for many messages at once: ``[(phrase, value rounded to 3 places), ...]`` each.

    Message ``k`` is ``layout[first[k]:stop[k]]`` (``codepoints`` is ``layout`` as int32 code points).
    Span ``i`` belongs to message ``msg[i]`` and covers ``[starts[i], ends[i])`` of it; ``values[i] > 0``.
    Spans come grouped by message (ascending), each message's strongest first.
    """
    n = len(first)
    if len(msg) == 0:
        return [[] for _ in range(n)]
    seg, rank = _rank_in_group(msg, n)
    if n < _FEW:
        return [_phrases_of(layout, first, stop, k, starts[a:b], ends[a:b], values[a:b], top)
                for k, (a, b) in enumerate(zip(seg[:-1].tolist(), seg[1:].tolist(), strict=True))]
    count = np.diff(seg)

    # 1. Each message's spans in (start, end, value) order: one int64 key per span; the value order is
    # the reverse of the rank.
    rb, eb, mb = _bits(rank), _bits(ends), _bits(msg)
    if mb + 2 * eb + rb > 63:
        raise ValueError("spans too far into their texts to explain")
    key = np.sort((msg << (2 * eb + rb)) | (starts << (eb + rb)) | (ends << rb) | ((1 << rb) - 1 - rank))
    msg = key >> (2 * eb + rb)
    take = seg[msg] + ((1 << rb) - 1 - (key & ((1 << rb) - 1)))
    s, e, v = starts[take], ends[take], values[take].astype(np.float64)  # float64: Python's arithmetic
    rank = np.arange(len(key)) - seg[msg]

    # Merge, one span rank at a time for every message at once, keeping the running phrase.
    width = int(count.max())
    grid_s = np.zeros((n, width), dtype=np.int64)
    grid_e = np.zeros((n, width), dtype=np.int64)
    grid_v = np.zeros((n, width), dtype=np.float64)
    grid_s[msg, rank], grid_e[msg, rank], grid_v[msg, rank] = s, e, v
    active = np.arange(width + 1) < count[:, None]
    new = np.zeros((n, width + 1), dtype=bool)     # span j starts a new phrase
    cur_s = np.full(n, -1, dtype=np.int64)
    cur_e = np.full(n, -1, dtype=np.int64)
    cur_v = np.zeros(n, dtype=np.float64)
    for j in range(width):
        s0, e0, v0 = grid_s[:, j], grid_e[:, j], grid_v[:, j]
        end = np.maximum(e0, cur_e)
        merge = active[:, j] & (s0 <= cur_e) & (end - cur_s <= PHRASE_CHARS)
        start = active[:, j] & ~merge
        np.copyto(cur_v, cur_v + v0, where=merge)
        np.copyto(cur_e, end, where=merge)
        np.copyto(cur_s, s0, where=start)
        np.copyto(cur_e, e0, where=start)
        np.copyto(cur_v, v0, where=start)
        grid_s[:, j], grid_e[:, j], grid_v[:, j], new[:, j] = cur_s, cur_e, cur_v, start
    # A phrase is complete at its last span: the next span starts a new one, or there is none.
    p_msg, p_col = np.nonzero(active[:, :-1] & (new[:, 1:] | ~active[:, 1:]))
    p_v = grid_v[p_msg, p_col]

    # 2. The 2 * top strongest phrases per message, by (value, start, end) descending.
    v_rank, v_of_rank = _dense_rank(p_v)
    vb = _bits(v_rank)
    key = np.sort((p_msg << (vb + 2 * eb)) | ((v_of_rank.size - 1 - v_rank) << (2 * eb))
                  | (((1 << eb) - 1 - grid_s[p_msg, p_col]) << eb) | ((1 << eb) - 1 - grid_e[p_msg, p_col]))
    p_msg = key >> (vb + 2 * eb)
    key = key[_rank_in_group(p_msg, n)[1] < 2 * top]
    p_msg = key >> (vb + 2 * eb)
    p_v = v_of_rank[v_of_rank.size - 1 - ((key >> (2 * eb)) & ((1 << vb) - 1))]
    p_s = (1 << eb) - 1 - ((key >> eb) & ((1 << eb) - 1))
    p_e = (1 << eb) - 1 - (key & ((1 << eb) - 1))

    # 3. Pieces: the runs of letters and digits inside each phrase, phrase by phrase, left to right.
    length = p_e - p_s
    offset = np.zeros(len(length), dtype=np.int64)
    np.cumsum(length[:-1], out=offset[1:])
    phrase_of = np.repeat(np.arange(len(length)), length)
    pos = (first[p_msg] + p_s - offset)[phrase_of] + np.arange(int(length.sum()))
    cp = np.append(codepoints, 0)  # one past the last text reads as "not a letter"
    word = _is_alnum(cp[pos])
    inner = np.ones(len(pos), dtype=bool)  # the position continues the phrase of the one before
    inner[offset] = False
    opens = word.copy()
    opens[1:] &= ~(word[:-1] & inner[1:])
    closes = word.copy()
    closes[:-1] &= ~(word[1:] & inner[1:])
    piece_a, piece_b = pos[opens], pos[closes] + 1
    piece_phrase = phrase_of[opens]
    piece_msg = p_msg[piece_phrase]
    share = p_v[piece_phrase] * (piece_b - piece_a) / length[piece_phrase]

    # A piece that cuts a Latin word grows to the whole word (backwards at most _BACK characters).
    grow = np.flatnonzero(_is_ascii_word(cp[piece_a - 1]) & _is_ascii_word(cp[piece_a]))
    if len(grow):
        window = cp[np.maximum(piece_a[grow, None] - _BACK + np.arange(_BACK), 0)]
        stops = _is_ascii_word(window)
        piece_a[grow] -= np.where(stops.all(axis=1), _BACK, np.argmin(stops[:, ::-1], axis=1))  # trailing run
    grow = np.flatnonzero(_is_ascii_word(cp[piece_b - 1]) & _is_ascii_word(cp[piece_b]))
    while len(grow):  # forwards to the end of the word, _BACK characters a step
        window = _is_ascii_word(cp[np.minimum(piece_b[grow, None] + np.arange(_BACK), len(cp) - 1)])
        done = ~window.all(axis=1)
        piece_b[grow] += np.where(done, np.argmin(window, axis=1), _BACK)
        grow = grow[~done]

    # 4. Pieces with the same text add up, in order of appearance. Equal texts in one message have
    # equal keys (a hash of message, length and text); a message where a key is shared by two
    # different texts (never seen) falls back to phrases().
    gram_len = piece_b - piece_a
    g_offset = np.zeros(len(gram_len), dtype=np.int64)
    np.cumsum(gram_len[:-1], out=g_offset[1:])
    gram_of = np.repeat(np.arange(len(gram_len)), gram_len)
    step = np.arange(int(gram_len.sum())) - g_offset[gram_of]
    powers = _powers(int(step.max(initial=0)) + 1)[0]
    with np.errstate(over="ignore"):
        chars = cp[(piece_a - g_offset)[gram_of] + np.arange(len(gram_of))].astype(np.uint64) + np.uint64(1)
        gram_key = np.add.reduceat(chars * powers[step], g_offset) if len(chars) else chars
        gram_key = (gram_key * _MIX_TEXT) ^ (piece_msg.astype(np.uint64) * _MIX_MSG) ^ gram_len.astype(np.uint64)
    # the top bits of the key, then the piece's index: equal keys stay in order of appearance
    ib = _bits(np.array([len(gram_len)]))
    packed = np.sort(((gram_key >> np.uint64(ib + 1)).astype(np.int64)) << ib | np.arange(len(gram_len)))
    order = packed & ((1 << ib) - 1)
    sorted_key = packed >> ib
    leads = np.ones(len(order), dtype=bool)          # in key order: the first piece of a group
    leads[1:] = sorted_key[1:] != sorted_key[:-1]
    group = np.cumsum(leads) - 1
    leader = order[leads]                            # per group: its first piece
    member = np.arange(len(order)) - np.flatnonzero(leads)[group]
    totals = share[leader]
    for d in range(1, int(member.max(initial=0)) + 1):
        at = member == d
        totals[group[at]] += share[order[at]]
    fallback = set(piece_msg[_differs(cp, piece_msg, piece_a, gram_len, order, leader[group])].tolist())

    # 5. The top strongest texts per message, ties in order of first appearance.
    g_msg = piece_msg[leader]
    t_rank, t_of_rank = _dense_rank(totals)
    tb, lb = _bits(t_rank), _bits(leader)
    key = np.sort((g_msg << (tb + lb)) | ((t_of_rank.size - 1 - t_rank) << lb) | leader)
    g_msg = key >> (tb + lb)
    key = key[_rank_in_group(g_msg, n)[1] < top]
    g_msg = key >> (tb + lb)
    lead = key & ((1 << lb) - 1)
    grams = [layout[a:b] for a, b in zip(piece_a[lead].tolist(), piece_b[lead].tolist(), strict=True)]
    terms = list(zip(grams, _round3(t_of_rank[t_of_rank.size - 1 - ((key >> lb) & ((1 << tb) - 1))]), strict=True))
    bounds = np.searchsorted(g_msg, np.arange(n + 1)).tolist()
    out = [terms[bounds[k]:bounds[k + 1]] for k in range(n)]
    for k in fallback:
        mine = msg == k
        out[k] = _phrases_of(layout, first, stop, k, s[mine], e[mine], v[mine], top)
    return out


def _phrases_of(layout: str, first: np.ndarray, stop: np.ndarray, k: int, starts: np.ndarray, ends: np.ndarray,
                values: np.ndarray, top: int) -> list[tuple[str, float]]:
    """:func:`phrases` for message ``k`` of :func:`phrases_batch`, with values rounded."""
    spans = list(zip(starts.tolist(), ends.tolist(), values.tolist(), strict=True))
    text = layout[int(first[k]):int(stop[k])]
    return [(gram, round(value, 3)) for gram, value in phrases(text, spans, top)]


_MIX_TEXT = np.uint64(0x9E3779B97F4A7C15)
_MIX_MSG = np.uint64(0xC2B2AE3D27D4EB4F)


def _differs(cp: np.ndarray, msg: np.ndarray, a: np.ndarray, length: np.ndarray, order: np.ndarray,
             leader: np.ndarray) -> np.ndarray:
    """Pieces ``order[i]`` whose message or text differs from their group leader's ``leader[i]``."""
    check = order != leader
    piece, lead = order[check], leader[check]
    bad = (msg[piece] != msg[lead]) | (length[piece] != length[lead])
    n = np.where(bad, 0, length[piece])
    offset = np.zeros(len(n), dtype=np.int64)
    np.cumsum(n[:-1], out=offset[1:])
    owner = np.repeat(np.arange(len(n)), n)
    step = np.arange(int(n.sum())) - offset[owner]
    bad[owner[cp[a[piece][owner] + step] != cp[a[lead][owner] + step]]] = True
    return np.concatenate((piece[bad], lead[bad]))
