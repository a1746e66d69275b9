"""Hashed n-gram features for a whole batch at once, in numpy (no Python loop per message).

A message is read as its normalised text between a start and an end marker. Features are

* character n-grams of orders 1..3 (Chinese has no spaces, so characters *are* the words; in
  Latin text they catch obfuscated and inflected words), and
* word unigrams and bigrams over runs of ASCII letters/digits (Latin text),

each hashed into ``2**bits`` buckets (64-bit multiplicative hashing; collisions are the price of a
fixed-size model, as in fastText). ASCII upper case is folded and every digit reads as ``0`` so
"5折" and "8折", or two one-time codes, share features. Each message's features are weighted
``1/sqrt(n)`` (``n`` = its feature count) so long texts do not win on length alone.

Layout, chosen for speed: the batch is one array of code points, each message written as
``\x02 text \x03\x03\x03``; row ``i`` holds the hashes of the n-grams *starting* at character ``i``
(one column per order) plus the word and the word bigram *ending* there (bucket 0, "no feature",
where none does). The end padding keeps every n-gram inside its own message, and n-grams made only
of markers are dropped (bucket 0), so each message's features are one contiguous block: the model
scores a batch with one gather and one ``np.add.reduceat``. Bucket 0 always has weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Texts are cut to this many characters before featurising (a 100k-char "message" costs the same
#: as a 2k-char one; nothing past this point changes a verdict in practice).
MAX_CHARS = 2000
CHAR_ORDERS = (1, 2, 3)
#: End markers per message: enough that the longest n-gram of the last padded row stays inside.
_PAD = 2 * max(CHAR_ORDERS) - 2
#: Columns per row: one per char order, then word unigram, word bigram.
COLUMNS = len(CHAR_ORDERS) + 2
_START, _END = 0x02, 0x03

# Odd 64-bit constants (splitmix64 / golden ratio family): multiplication by an odd number is a
# bijection mod 2**64, so distinct short n-grams stay distinct before the final bucket cut.
_K = np.array([0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93,
               0xC2B2AE3D27D4EB4F], dtype=np.uint64)
_ORDER_SALT = np.array([0, 0x1B873593, 0x85EBCA6B, 0xE6546B64, 0xCC9E2D51, 0x27D4EB2F], dtype=np.uint64)
_WORD_SALT = np.uint64(0x165667B19E3779F9)
_BIGRAM_SALT = np.uint64(0x2545F4914F6CDD1D)
_SCRIPT_SALT = np.uint64(0x3C6EF372FE94F82B)
_P = np.uint64(0x100000001B3)  # FNV prime, odd: the polynomial base for word hashes
_S29 = np.uint64(29)
_CHAR_SALTS = _ORDER_SALT[list(CHAR_ORDERS)]
#: Offsets back from a message's end row of the rows whose char n-grams are markers only.
_END_ROWS = np.arange(1, _PAD + 2, dtype=np.int64)


@dataclass(slots=True)
class Features:
    """Hashed features of a batch.

    ``buckets`` has shape ``(rows, COLUMNS)``; message ``m`` owns rows ``row_offsets[m]`` to
    ``row_offsets[m+1]``; row ``row_offsets[m] + 1 + i`` starts at character ``i`` of its normalised
    text. ``scale[m]`` is ``1/sqrt(feature count)``.
    """

    n: int
    buckets: np.ndarray       # int32 (rows, COLUMNS), 0 = no feature
    row_offsets: np.ndarray   # int64 (n + 1,)
    scale: np.ndarray         # float32 (n,)
    texts: list[str]          # the (cut) texts the rows were built from
    word_starts: np.ndarray   # int64 (rows,): for a row where a word ends, the row where it starts (else -1)
    bigram_starts: np.ndarray  # int64 (rows,): for a row where a word bigram ends, the row where it starts
    han: np.ndarray           # bool (n,): the message contains Chinese characters
    layout: str               # the texts laid out as the rows are: "\x02" text "\x03..." per message
    codepoints: np.ndarray    # int32 (rows,): ``layout`` as code points (before case and digit folding)


def _mix(h: np.ndarray, shift: np.uint64) -> np.ndarray:
    """Multiplicative (Fibonacci) hashing: keep the top bits of h * odd constant."""
    h = h ^ (h >> _S29)
    return ((h * _K[2]) >> shift).astype(np.int32)


_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i mod 2**64 for i < n, cached and grown as needed."""
    if "p" not in _pow_cache or len(_pow_cache["p"]) < n:
        size = 1 << max(16, (n - 1).bit_length())
        p = np.full(size, _P, dtype=np.uint64)
        p[0] = 1
        inv = np.full(size, pow(int(_P), -1, 1 << 64), dtype=np.uint64)
        inv[0] = 1
        with np.errstate(over="ignore"):
            _pow_cache["p"] = np.cumprod(p, dtype=np.uint64)
            _pow_cache["inv"] = np.cumprod(inv, dtype=np.uint64)
    return _pow_cache["p"], _pow_cache["inv"]


def featurise(texts: Sequence[str], bits: int) -> Features:
    if not 8 <= bits <= 30:
        raise ValueError(f"hash bits must be 8..30, got {bits}")
    n = len(texts)
    shift = np.uint64(64 - bits)
    cut = [t[:MAX_CHARS] for t in texts]
    pad = "\x03" * (_PAD + 1)
    joined = "".join(f"\x02{t}{pad}" for t in cut)
    codepoints = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.int32)
    lens = np.fromiter((len(t) for t in cut), dtype=np.int64, count=n) + _PAD + 2
    row_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=row_offsets[1:])
    total = int(row_offsets[-1])

    cp = codepoints.copy()
    cp[(cp >= 65) & (cp <= 90)] += 32      # ASCII upper -> lower
    cp[(cp >= 48) & (cp <= 57)] = 48       # every digit reads as 0
    x = cp.astype(np.uint64)

    buckets = np.zeros((total, COLUMNS), dtype=np.int32)
    order_max = max(CHAR_ORDERS)
    xpad = np.concatenate([x, np.full(order_max, 3, dtype=np.uint64)])
    nc = len(CHAR_ORDERS)
    with np.errstate(over="ignore"):
        # Column j is the running sum for order CHAR_ORDERS[j]; all orders are mixed in one pass (fewer
        # numpy calls: on one short message their fixed cost is most of the time).
        acc = np.empty((total, nc), dtype=np.uint64)
        np.multiply(xpad[:total], _K[0], out=acc[:, 0])
        for j in range(1, nc):
            np.add(acc[:, j - 1], xpad[j: j + total] * _K[j], out=acc[:, j])
        buckets[:, :nc] = _mix(acc ^ _CHAR_SALTS, shift)

    # N-grams made only of markers are the same in every message: they would only tell the model the
    # text's length (through the 1/sqrt(n) weight), which is a corpus artefact, so drop them.
    ends = row_offsets[1:]
    buckets[(ends[:, None] - _END_ROWS).ravel(), :nc] = 0

    # Words: runs of ASCII letters/digits, hashed as polynomials over their characters.
    alnum = np.zeros(total + 2, dtype=np.int8)
    alnum[1:-1] = ((cp >= 97) & (cp <= 122)) | (cp == 48)
    edge = alnum[1:] - alnum[:-1]
    w_start = np.flatnonzero(edge == 1)
    w_end = np.flatnonzero(edge == -1)
    word_starts = np.full(total, -1, dtype=np.int64)
    bigram_starts = np.full(total, -1, dtype=np.int64)
    n_words = np.zeros(n, dtype=np.int64)
    if len(w_start):
        p, inv = _powers(total + 1)
        with np.errstate(over="ignore"):
            prefix = np.zeros(total + 1, dtype=np.uint64)
            np.cumsum((x + np.uint64(1)) * p[:total], out=prefix[1:])
            w_hash = (prefix[w_end] - prefix[w_start]) * inv[w_start]
            last = w_end - 1
            buckets[last, len(CHAR_ORDERS)] = _mix(w_hash ^ _WORD_SALT, shift)
            # A bigram pairs consecutive words of the same message (markers separate messages).
            w_msg = np.searchsorted(row_offsets, w_start, side="right") - 1
            same = w_msg[1:] == w_msg[:-1]
            bi = _mix((w_hash[:-1] * _K[3] + w_hash[1:] * _K[4]) ^ _BIGRAM_SALT, shift)
            buckets[last[1:][same], len(CHAR_ORDERS) + 1] = bi[same]
        word_starts[last] = w_start
        bigram_starts[last[1:][same]] = w_start[:-1][same]
        n_words = np.bincount(w_msg, minlength=n) + np.bincount(w_msg[1:][same], minlength=n)
    # The start marker's unigram slot holds the message's script instead ("Chinese" or "other"): a
    # per-language intercept, since the corpora's class balance differs by language.
    han = np.add.reduceat(((cp >= 0x3400) & (cp <= 0x9FFF)).astype(np.int32), row_offsets[:-1]) > 0 if n else \
        np.zeros(0, dtype=bool)
    buckets[row_offsets[:-1], 0] = np.where(han, *_script_buckets(bits))
    n_char_feats = (lens - _PAD - 1) * nc
    scale = (1.0 / np.sqrt(n_char_feats + n_words)).astype(np.float32)
    return Features(n, buckets, row_offsets, scale, cut, word_starts, bigram_starts, han, joined, codepoints)


def _script_bucket(script: int, shift: np.uint64) -> int:
    with np.errstate(over="ignore"):
        return int(_mix(np.array([_SCRIPT_SALT + np.uint64(script)], dtype=np.uint64), shift)[0]) or 1


_script_cache: dict[int, tuple[int, int]] = {}


def _script_buckets(bits: int) -> tuple[int, int]:
    """(Chinese, other) script buckets for ``bits``, computed once."""
    found = _script_cache.get(bits)
    if found is None:
        shift = np.uint64(64 - bits)
        found = _script_cache[bits] = (_script_bucket(1, shift), _script_bucket(0, shift))
    return found


def to_sparse(feats: Features, bits: int):  # -> scipy.sparse.csr_matrix
    """The same features as a CSR matrix (rows = messages, bucket 0 dropped), for training."""
    import scipy.sparse as sp

    rows = np.repeat(np.repeat(np.arange(feats.n), np.diff(feats.row_offsets)), COLUMNS)
    cols = feats.buckets.ravel()
    keep = cols != 0
    rows, cols = rows[keep], cols[keep]
    m = sp.csr_matrix((feats.scale[rows], (rows, cols)), shape=(feats.n, 1 << bits), dtype=np.float32)
    m.sum_duplicates()
    return m
