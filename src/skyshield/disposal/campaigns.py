"""Campaigns: near-duplicate messages across senders, so one action reaches a whole spam wave.

A wave rotates numbers, signatures, links and codes but keeps its wording. Each message is reduced to
its **template** — the normalised text (:mod:`skyshield.text.normalise`) with links, phone numbers, chat
ids, amounts, codes, the 【signature】, greetings with names and any other digits replaced by slots — and
the template's character 3-grams go into a MinHash (datasketch's permutations, vectorised over the batch).
Messages whose MinHashes are close (Jaccard ≥ ``THRESHOLD``, found through datasketch's LSH index) share a
campaign.

Clustering runs in batches over stored verdicts not seen yet (:func:`refresh`), never on the hot path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from skyshield.disposal.schema import DisposalDB, iso
from skyshield.text.analysis import TextAnalysis

NUM_PERM = 64
THRESHOLD = 0.6
#: Templates shorter than this say too little to cluster on (``<code>是您的验证码``) and stay alone.
MIN_TEMPLATE_CHARS = 8
SEED = 1
#: datasketch's hashing scheme the stored hash values were made with (needed to read them back).
SCHEME = "affine32"
_PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_GREETING = re.compile(r"(尊敬的|亲爱的)[^\s,，:：!！]{0,8}?(先生|女士|用户|客户|会员|同学|家长)"
                       r"|\b(dear|hi|hello) \w+", re.I)
_DIGITS = re.compile(r"\d+")
_SIG_SLOT = re.compile(r"[【\[]\s*<sig>\s*[】\]]")
_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class Fingerprint:
    template: str
    template_hash: str
    minhash: LeanMinHash | None  # None: too short to cluster on


def _slot_original(analysis: TextAnalysis) -> str:
    ents = analysis.entities
    spans: list[tuple[int, int, str]] = []
    # Numbers of every kind share one slot: whether 99000 reads as an amount or a number must not split a wave.
    for kind, items in (("<link>", ents.links), ("<num>", ents.phones), ("<chat>", ents.chat_ids),
                        ("<num>", ents.amounts), ("<num>", ents.codes)):
        spans.extend((s.start, s.end, kind) for s in items)
    if ents.signature:
        spans.append((ents.signature.start, ents.signature.end, "<sig>"))
    text = analysis.original
    # Right to left, skipping overlaps, so earlier offsets stay valid.
    last_start = len(text) + 1
    for start, end, slot in sorted(spans, key=lambda s: (-s[0], s[1])):
        if end > last_start:
            continue
        text = text[:start] + f" {slot} " + text[end:]
        last_start = start
    return text


def templates(analyses: Sequence[TextAnalysis]) -> list[str]:
    """The slotted, normalised text of each message (what a campaign has in common)."""
    from skyshield.text.normalise import normalise_batch

    slotted = normalise_batch([_slot_original(a) for a in analyses])
    out = []
    for text in slotted:
        text = _SIG_SLOT.sub("<sig>", text)
        text = _GREETING.sub("<name>", text)
        text = _DIGITS.sub("0", text)
        out.append(_SPACE.sub(" ", text).strip())
    return out


def _trigram_hashes(template: str) -> np.ndarray:
    """32-bit hashes of the template's character 3-grams (spaces dropped), vectorised over code points."""
    cps = np.frombuffer(template.replace(" ", "").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) < 3:
        cps = np.concatenate([cps, np.zeros(3 - len(cps), dtype=np.uint64)])
    grams = (cps[:-2] << np.uint64(42)) | (cps[1:-1] << np.uint64(21)) | cps[2:]
    return (grams * _GOLDEN) >> np.uint64(32)  # multiply-shift: mixes the 63-bit 3-gram into 32 bits


def _minhash_rows(tpls: Sequence[str]) -> np.ndarray:
    """MinHash signatures (rows of ``NUM_PERM`` uint64) with datasketch's affine permutations, for a whole batch
    at once: one matrix product per chunk instead of one Python hash call per 3-gram (~8x faster)."""
    a, b = (np.asarray(x, dtype=np.uint64) for x in _PERMUTATIONS)
    out = np.empty((len(tpls), NUM_PERM), dtype=np.uint64)
    for start in range(0, len(tpls), 256):
        chunk = [_trigram_hashes(t) for t in tpls[start:start + 256]]
        offsets = np.cumsum([0] + [len(h) for h in chunk[:-1]])
        hv = np.concatenate(chunk)[:, None]
        phv = ((hv * a + b) % _MERSENNE) & _MAX_HASH
        out[start:start + len(chunk)] = np.minimum.reduceat(phv, offsets, axis=0)
    return out


def fingerprints(texts: Sequence[str], analyses: Sequence[TextAnalysis] | None = None) -> list[Fingerprint]:
    """Template, its hash and its MinHash for each text, in one batch."""
    if analyses is None:
        from skyshield.text.extract import analyse_batch

        analyses = analyse_batch(list(texts))
    tpls = templates(analyses)
    long_enough = [i for i, t in enumerate(tpls) if len(t.replace(" ", "")) >= MIN_TEMPLATE_CHARS]
    rows = _minhash_rows([tpls[i] for i in long_enough])
    lean = {i: LeanMinHash(seed=SEED, hashvalues=rows[k], scheme=SCHEME) for k, i in enumerate(long_enough)}
    return [Fingerprint(t, hashlib.sha256(t.encode("utf-8")).hexdigest()[:16], lean.get(i))
            for i, t in enumerate(tpls)]


def minhash_from_bytes(blob: bytes) -> LeanMinHash:
    return LeanMinHash(seed=SEED, hashvalues=np.frombuffer(blob, dtype=np.uint64), scheme=SCHEME)


def minhash_to_bytes(minhash: LeanMinHash) -> bytes:
    return np.asarray(minhash.hashvalues, dtype=np.uint64).tobytes()


class CampaignIndex:
    """LSH over campaigns' representative MinHashes: which campaign (if any) a fingerprint belongs to."""

    def __init__(self) -> None:
        # A lower LSH threshold finds more candidates; find() keeps those whose Jaccard reaches THRESHOLD.
        self.lsh = MinHashLSH(threshold=THRESHOLD - 0.15, num_perm=NUM_PERM)
        self.minhashes: dict[int, LeanMinHash] = {}
        self.by_template: dict[str, int] = {}

    def add(self, campaign_id: int, fp: Fingerprint) -> None:
        self.by_template.setdefault(fp.template_hash, campaign_id)
        if fp.minhash is not None and campaign_id not in self.minhashes:
            self.lsh.insert(campaign_id, fp.minhash)
            self.minhashes[campaign_id] = fp.minhash

    def find(self, fp: Fingerprint) -> int | None:
        """The closest campaign: same template first, else the most similar LSH candidate above the threshold."""
        exact = self.by_template.get(fp.template_hash)
        if exact is not None:
            return exact
        if fp.minhash is None:
            return None
        best, best_sim = None, THRESHOLD
        for cid in self.lsh.query(fp.minhash):
            sim = fp.minhash.jaccard(self.minhashes[cid])
            if sim >= best_sim and (best is None or sim > best_sim or cid < best):
                best, best_sim = cid, sim
        return best


class Campaigns:
    """Clusters stored verdicts into campaigns and answers questions about them."""

    def __init__(self, db: DisposalDB):
        self.db = db
        self.index = CampaignIndex()
        for row in db.rows("SELECT id, template_hash, template, minhash FROM disposal_campaigns ORDER BY id"):
            mh = minhash_from_bytes(row["minhash"]) if row["minhash"] else None
            self.index.add(row["id"], Fingerprint(row["template"], row["template_hash"], mh))

    def match(self, texts: Sequence[str]) -> list[int | None]:
        """The campaign each text would join, without recording anything."""
        with self.db.lock:
            return [self.index.find(fp) for fp in fingerprints(texts)]

    def assign(self, conn, rows: Sequence[dict]) -> list[int]:
        """Put verdict rows (id, time, tenant, sender, text, action, category) into campaigns; new waves
        start new campaigns. Runs inside the caller's write transaction."""
        fps = fingerprints([r["text"] for r in rows])
        out: list[int] = []
        for row, fp in zip(rows, fps, strict=True):
            cid = self.index.find(fp)
            when = row["time"]
            if isinstance(when, datetime):  # PostgreSQL's verdicts.msg_time is a timestamp; SQLite's is text
                when = when.isoformat()
            if cid is None:
                blob = minhash_to_bytes(fp.minhash) if fp.minhash is not None else b""
                cid = conn.insert(
                    "INSERT INTO disposal_campaigns (tenant, template_hash, template, example, minhash, size,"
                    " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                    (row["tenant"], fp.template_hash, fp.template, row["text"][:500], blob, when, when))
                self.index.add(cid, fp)
            conn.execute("INSERT INTO disposal_campaign_messages (verdict_id, campaign_id, sender, time, action,"
                         " category) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (row["id"], cid, row["sender"], when, row["action"], row["category"]))
            least, greatest = ("MIN", "MAX") if conn.sqlite else ("LEAST", "GREATEST")
            conn.execute(f"UPDATE disposal_campaigns SET size = size + 1, first_seen = {least}(first_seen, ?),"
                         f" last_seen = {greatest}(last_seen, ?) WHERE id = ?", (when, when, cid))
            out.append(cid)
        return out

    def top(self, *, min_size: int = 2, limit: int = 20, since: datetime | None = None) -> list[dict]:
        """The biggest campaigns (by messages), with sender and report counts."""
        where, args = "c.size >= ?", [min_size]
        if since:
            where += " AND c.last_seen >= ?"
            args.append(iso(since))
        rows = self.db.rows(
            f"SELECT c.id, c.tenant, c.template, c.example, c.size, c.first_seen, c.last_seen,"
            f" (SELECT COUNT(DISTINCT sender) FROM disposal_campaign_messages m WHERE m.campaign_id = c.id) AS senders,"
            f" (SELECT COUNT(*) FROM disposal_reports r WHERE r.campaign_id = c.id) AS reports,"
            f" (SELECT COUNT(*) FROM disposal_campaign_messages m WHERE m.campaign_id = c.id AND m.action = 'block')"
            f" AS blocked"
            f" FROM disposal_campaigns c WHERE {where} ORDER BY c.size DESC, c.id LIMIT ?", [*args, limit])
        return rows

    def get(self, campaign_id: int) -> dict | None:
        found = self.db.rows(
            "SELECT c.id, c.tenant, c.template, c.example, c.size, c.first_seen, c.last_seen,"
            " (SELECT COUNT(DISTINCT sender) FROM disposal_campaign_messages m WHERE m.campaign_id = c.id) AS senders,"
            " (SELECT COUNT(*) FROM disposal_reports r WHERE r.campaign_id = c.id) AS reports"
            " FROM disposal_campaigns c WHERE c.id = ?", (campaign_id,))
        if not found:
            return None
        campaign = found[0]
        campaign["by_action"] = {r["action"]: r["n"] for r in self.db.rows(
            "SELECT action, COUNT(*) AS n FROM disposal_campaign_messages WHERE campaign_id = ? GROUP BY action",
            (campaign_id,))}
        campaign["top_senders"] = self.db.rows(
            "SELECT sender, COUNT(*) AS messages FROM disposal_campaign_messages WHERE campaign_id = ?"
            " GROUP BY sender ORDER BY messages DESC LIMIT 20", (campaign_id,))
        campaign["recent"] = self.db.rows(
            "SELECT m.verdict_id, m.time, m.sender, m.action, m.category, v.text FROM disposal_campaign_messages m"
            " LEFT JOIN verdicts v ON v.id = m.verdict_id WHERE m.campaign_id = ? ORDER BY m.time DESC LIMIT 20",
            (campaign_id,))
        return campaign

    def of_verdict(self, verdict_id: int) -> int | None:
        row = self.db.one("SELECT campaign_id FROM disposal_campaign_messages WHERE verdict_id = ?", (verdict_id,))
        return row["campaign_id"] if row else None
