"""Blocks on a number, a signature, a template, a link domain or a campaign — with reason, evidence, who
decided, expiry and an appeal path — and the detector that makes them take effect in the engine.

Every decision (create, appeal, keep, lift, expire) is one row in ``disposal_audit``, which triggers keep
append-only. :class:`BlocklistDetector` emits ``BLOCKLISTED`` naming the block; it reloads the active
blocks when the audit log grows (one indexed read per batch, at most every ``refresh``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from skyshield.compliance.ledger import clean_signature
from skyshield.disposal.schema import DisposalDB, dumps, iso, mask_number, parse_time
from skyshield.events import Signal
from skyshield.policy import Policy, parse_duration

log = logging.getLogger("skyshield.disposal")

KINDS = ("number", "signature", "template", "link_domain", "campaign")


class BlockError(ValueError):
    """A block or appeal request that cannot be carried out; the message says why."""


@dataclass(slots=True)
class ActiveBlock:
    id: int
    kind: str
    value: str
    display: str
    tenant: str
    reason: str
    expires_at: str | None


class BlockBook:
    def __init__(self, db: DisposalDB):
        self.db = db

    # -- creating and reading ---------------------------------------------------------------------

    def create(self, kind: str, value: str, *, reason: str, decided_by: str, tenant: str = "",
               expires: str | datetime | None = None, evidence: dict[str, Any] | None = None) -> dict:
        """Block ``value`` (a phone number, 【signature】, template text, domain or campaign id).

        ``expires``: a duration (``"30d"``), a time, or ``None`` for no expiry.
        """
        if kind not in KINDS:
            raise BlockError(f"unknown block kind {kind!r}; one of: {', '.join(KINDS)}")
        value = (value or "").strip()
        if not value:
            raise BlockError(f"a {kind} block needs the {kind} it blocks")
        if not reason or not reason.strip():
            raise BlockError("a block needs a reason (it is shown to the sender on appeal and to auditors)")
        if not decided_by or not decided_by.strip():
            raise BlockError("a block needs the name of who decided it")
        stored, display = self._normalise(kind, value)
        now = datetime.now(UTC)
        expires_at = None
        if expires:
            if isinstance(expires, datetime):
                moment = parse_time(expires)
            else:
                try:
                    moment = now + timedelta(seconds=parse_duration(expires))
                except Exception:  # noqa: BLE001 - either a duration or a time
                    moment = parse_time(expires)
            if moment <= now:
                raise BlockError(f"expiry {moment.isoformat()} is in the past")
            expires_at = iso(moment)
        with self.db.write() as conn:
            block_id = conn.insert(
                "INSERT INTO disposal_blocks (kind, value, display, tenant, reason, evidence, decided_by, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, stored, display, tenant, reason.strip(), dumps(evidence or {}), decided_by.strip(), iso(now),
                 expires_at))
            self._audit(conn, decided_by, "create", block_id, note=reason.strip())
        return self.get(block_id)

    def _normalise(self, kind: str, value: str) -> tuple[str, str]:
        if kind == "number":
            if not any(c.isdigit() for c in value):
                raise BlockError(f"not a phone number: {value!r}")
            return self.db.pseudonym(value), mask_number(value)
        if kind == "signature":
            sig = clean_signature(value)
            if not sig:
                raise BlockError("empty signature")
            return sig.casefold(), f"【{sig}】"
        if kind == "link_domain":
            domain = value.lower().removeprefix("http://").removeprefix("https://").split("/")[0].strip(".")
            if "." not in domain:
                raise BlockError(f"not a domain: {value!r}")
            from skyshield.text.extract import registered_domain

            return registered_domain(domain) or domain, domain
        if kind == "template":
            from skyshield.disposal.campaigns import fingerprints

            fp = fingerprints([value])[0]
            return fp.template_hash, fp.template
        # campaign
        if not value.isdigit():
            raise BlockError(f"a campaign block takes a campaign id, not {value!r}")
        row = self.db.one("SELECT id, template, minhash FROM disposal_campaigns WHERE id = ?", (int(value),))
        if row is None:
            raise BlockError(f"no campaign {value}")
        return str(row["id"]), f"campaign {row['id']}: {row['template'][:80]}"

    def get(self, block_id: int) -> dict | None:
        row = self.db.one("SELECT * FROM disposal_blocks WHERE id = ?", (block_id,))
        if row is None:
            return None
        row["active"] = row["status"] == "active" and not _expired(row["expires_at"])
        row["appeals"] = self.db.rows("SELECT * FROM disposal_appeals WHERE block_id = ? ORDER BY id", (block_id,))
        row["audit"] = self.db.rows("SELECT * FROM disposal_audit WHERE block_id = ? ORDER BY seq", (block_id,))
        return row

    def list(self, *, active_only: bool = False, limit: int = 200) -> list[dict]:
        rows = self.db.rows(
            "SELECT b.*, (SELECT COUNT(*) FROM disposal_appeals a WHERE a.block_id = b.id AND a.status = 'pending')"
            " AS pending_appeals FROM disposal_blocks b ORDER BY b.id DESC LIMIT ?", (limit,))
        for row in rows:
            row["active"] = row["status"] == "active" and not _expired(row["expires_at"])
        return [r for r in rows if r["active"]] if active_only else rows

    def active(self) -> list[ActiveBlock]:
        now = iso()
        return [ActiveBlock(r["id"], r["kind"], r["value"], r["display"], r["tenant"], r["reason"], r["expires_at"])
                for r in self.db.rows("SELECT * FROM disposal_blocks WHERE status = 'active'"
                                      " AND (expires_at IS NULL OR expires_at > ?)", (now,))]

    def audit(self, limit: int = 200) -> list[dict]:
        return self.db.rows("SELECT * FROM disposal_audit ORDER BY seq DESC LIMIT ?", (limit,))

    # -- lifting, appeals -------------------------------------------------------------------------

    def lift(self, block_id: int, *, actor: str, note: str) -> dict:
        block = self._require(block_id)
        if block["status"] != "active":
            raise BlockError(f"block {block_id} is already lifted")
        with self.db.write() as conn:
            conn.execute("UPDATE disposal_blocks SET status = 'lifted' WHERE id = ?", (block_id,))
            self._audit(conn, actor, "lift", block_id, note=note)
        return self.get(block_id)

    def appeal(self, block_id: int, *, appellant: str, statement: str) -> dict:
        block = self._require(block_id)
        if not block["active"]:
            raise BlockError(f"block {block_id} is not in force; there is nothing to appeal")
        if not statement or not statement.strip():
            raise BlockError("an appeal needs a statement (why the block is wrong)")
        if not appellant or not appellant.strip():
            raise BlockError("an appeal needs the appellant's name")
        if any(a["status"] == "pending" for a in block["appeals"]):
            raise BlockError(f"block {block_id} already has an appeal under review")
        with self.db.write() as conn:
            appeal_id = conn.insert("INSERT INTO disposal_appeals (block_id, appellant, statement, filed_at)"
                                    " VALUES (?, ?, ?, ?)", (block_id, appellant.strip(), statement.strip(), iso()))
            self._audit(conn, appellant.strip(), "appeal", block_id, appeal_id, statement.strip())
        return self.db.one("SELECT * FROM disposal_appeals WHERE id = ?", (appeal_id,)) or {}

    def decide_appeal(self, appeal_id: int, *, decision: str, actor: str, note: str) -> dict:
        """``decision``: ``"keep"`` (the block stays) or ``"lift"`` (the block ends now)."""
        if decision not in {"keep", "lift"}:
            raise BlockError(f"an appeal is decided with 'keep' or 'lift', not {decision!r}")
        if not note or not note.strip():
            raise BlockError("say why (the appellant and auditors read it)")
        appeal = self.db.one("SELECT * FROM disposal_appeals WHERE id = ?", (appeal_id,))
        if appeal is None:
            raise BlockError(f"no appeal {appeal_id}")
        if appeal["status"] != "pending":
            raise BlockError(f"appeal {appeal_id} was already decided ({appeal['status']})")
        status = "kept" if decision == "keep" else "lifted"
        with self.db.write() as conn:
            conn.execute("UPDATE disposal_appeals SET status = ?, decided_by = ?, decided_at = ?, decision_note = ?"
                         " WHERE id = ?", (status, actor, iso(), note.strip(), appeal_id))
            if decision == "lift":
                conn.execute("UPDATE disposal_blocks SET status = 'lifted' WHERE id = ?", (appeal["block_id"],))
            self._audit(conn, actor, f"appeal_{status}", appeal["block_id"], appeal_id, note.strip())
        return self.get(appeal["block_id"]) or {}

    def record_expiries(self) -> int:
        """Write an ``expire`` audit row for blocks whose expiry passed (once each); returns how many."""
        now = iso()
        due = self.db.rows(
            "SELECT id FROM disposal_blocks b WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM disposal_audit a WHERE a.block_id = b.id AND a.action = 'expire')",
            (now,))
        if due:
            with self.db.write() as conn:
                for row in due:
                    self._audit(conn, "system", "expire", row["id"])
        return len(due)

    def _require(self, block_id: int) -> dict:
        block = self.get(block_id)
        if block is None:
            raise BlockError(f"no block {block_id}")
        return block

    @staticmethod
    def _audit(conn, actor: str, action: str, block_id: int | None, appeal_id: int | None = None,
               note: str = "") -> None:
        conn.execute("INSERT INTO disposal_audit (at, actor, action, block_id, appeal_id, note)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (iso(), actor, action, block_id, appeal_id, note))


def _expired(expires_at: str | None) -> bool:
    return bool(expires_at) and expires_at <= iso()


# ------------------------------------------------------------------------------------------ detector


class BlocklistDetector:
    """Emits BLOCKLISTED for messages that match an active block (one signal per matching block)."""

    name = "blocklist"

    def __init__(self, policy: Policy, settings: Any = None, db: DisposalDB | None = None):
        conf = policy.section("detectors.blocklist")
        self.refresh_s = float(parse_duration(conf["refresh"]))
        self._settings = settings
        self._db = db
        self._lock = threading.Lock()
        self._seen_seq = -1
        self._checked_at = 0.0
        self._blocks: list[ActiveBlock] = []
        self._by_kind: dict[str, dict[str, list[ActiveBlock]]] = {}
        self._campaign_index: Any = None

    def _open(self) -> DisposalDB:
        if self._db is None:
            from skyshield.config import load_settings
            from skyshield.store import open_store

            settings = self._settings or load_settings()
            self._db = DisposalDB(open_store(settings), settings.hmac_key())
        return self._db

    def invalidate(self) -> None:
        """Reload on the next batch (called when a block changes in this process)."""
        self._checked_at = 0.0

    def _reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.refresh_s and not self._has_expiring():
            return
        db = self._open()
        self._checked_at = now
        seq = db.one("SELECT COALESCE(MAX(seq), 0) AS seq FROM disposal_audit")["seq"]
        if seq == self._seen_seq and not self._has_expiring():
            return
        self._seen_seq = seq
        blocks = BlockBook(db).active()
        by_kind: dict[str, dict[str, list[ActiveBlock]]] = {k: {} for k in KINDS}
        for b in blocks:
            by_kind[b.kind].setdefault(b.value, []).append(b)
        campaign_index = None
        if by_kind["campaign"]:
            from skyshield.disposal.campaigns import CampaignIndex, Fingerprint, minhash_from_bytes

            campaign_index = CampaignIndex()
            ids = [int(v) for v in by_kind["campaign"]]
            marks = ", ".join("?" * len(ids))
            for row in db.rows(f"SELECT id, template_hash, template, minhash FROM disposal_campaigns"
                               f" WHERE id IN ({marks})", ids):
                mh = minhash_from_bytes(row["minhash"]) if row["minhash"] else None
                campaign_index.add(row["id"], Fingerprint(row["template"], row["template_hash"], mh))
        self._blocks, self._by_kind, self._campaign_index = blocks, by_kind, campaign_index

    def _has_expiring(self) -> bool:
        now = iso()
        return any(b.expires_at and b.expires_at <= now for b in self._blocks)

    def detect(self, ctx: Any) -> list[list[Signal]]:
        with self._lock:
            self._reload()
            by_kind, campaign_index = self._by_kind, self._campaign_index
        out: list[list[Signal]] = [[] for _ in ctx.messages]
        if not self._blocks:
            return out
        db = self._open()
        fps: Sequence[Any] = []
        if by_kind["template"] or campaign_index is not None:
            from skyshield.disposal.campaigns import fingerprints

            fps = fingerprints([m.text for m in ctx.messages], ctx.analyses)
        for i, (message, analysis) in enumerate(zip(ctx.messages, ctx.analyses, strict=True)):
            hits: list[tuple[ActiveBlock, str]] = []
            if by_kind["number"] and message.sender:
                hits += [(b, "sender") for b in by_kind["number"].get(db.pseudonym(message.sender), [])]
            sig = analysis.entities.signature
            if by_kind["signature"] and sig is not None:
                hits += [(b, "signature") for b in by_kind["signature"].get(clean_signature(sig.text).casefold(), [])]
            for domain in set(analysis.entities.link_domains):
                hits += [(b, "link") for b in by_kind["link_domain"].get(domain, [])]
            if fps:
                hits += [(b, "template") for b in by_kind["template"].get(fps[i].template_hash, [])]
                if campaign_index is not None:
                    cid = campaign_index.find(fps[i])
                    if cid is not None:
                        hits += [(b, "campaign") for b in by_kind["campaign"].get(str(cid), [])]
            seen: set[int] = set()
            for block, matched_on in hits:
                if block.id in seen or (block.tenant and block.tenant != message.tenant):
                    continue
                seen.add(block.id)
                why = f"block {block.id} on {block.kind} {block.display}: {block.reason}"
                out[i].append(Signal("BLOCKLISTED", 1.0, {
                    "block_id": block.id, "kind": block.kind, "value": block.display, "reason": block.reason,
                    "expires_at": block.expires_at, "matched_on": matched_on, "why": why}))
        return out
