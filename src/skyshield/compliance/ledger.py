"""The consent ledger: who agreed to marketing from whom, who opted out, and the do-not-disturb list.

One record per consent event (an opt-in with its evidence, or an opt-out), per tenant, scope and
recipient. The scope is the sender's signature (``京东``), or ``sender:<address>`` when an opt-out
reply came to a sending number whose signature is unknown. The newest record by evidence time is
the current state; older ones are marked superseded and kept at least ``retention`` (default 180
days, never less than 150: five months) before :meth:`ConsentLedger.purge` may delete them.

Numbers are stored only as keyed HMAC pseudonyms (``skyshield.store.base.pseudonymise``), with the
same key as the verdict store, so one number gives one pseudonym everywhere. The tables are this
module's own (``compliance_*``) in the shared SQLite database (WAL mode); a PostgreSQL version only
needs another class with the same methods.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from skyshield.store.base import pseudonymise, register_migration

MIN_RETENTION_S = 150 * 86400
OPT_IN, OPT_OUT = "opt_in", "opt_out"
SENDER_SCOPE = "sender:"

SCHEMA = """
CREATE TABLE IF NOT EXISTS compliance_consent (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('opt_in', 'opt_out')),
    evidence_ts REAL NOT NULL,
    source TEXT NOT NULL,
    disclosure TEXT NOT NULL DEFAULT '',
    campaign TEXT NOT NULL DEFAULT '',
    evidence TEXT NOT NULL DEFAULT '{}',
    recorded_ts REAL NOT NULL,
    superseded_ts REAL
);
CREATE INDEX IF NOT EXISTS compliance_consent_current
    ON compliance_consent (tenant, recipient, scope) WHERE superseded_ts IS NULL;
CREATE TABLE IF NOT EXISTS compliance_dnd (
    recipient TEXT PRIMARY KEY,
    added_ts REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS compliance_sends (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    category TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS compliance_sends_ts ON compliance_sends (ts);
CREATE INDEX IF NOT EXISTS compliance_sends_reply ON compliance_sends (tenant, sender, recipient, ts);
CREATE TABLE IF NOT EXISTS compliance_templates (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    signature TEXT NOT NULL,
    category TEXT NOT NULL,
    text TEXT NOT NULL,
    variables TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL,
    findings TEXT NOT NULL DEFAULT '[]',
    created_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS compliance_templates_tenant ON compliance_templates (tenant);
"""

register_migration("compliance", 1, SCHEMA, description="consent ledger, DND list, send counters, templates")

EXPORT_FIELDS = ["id", "tenant", "scope", "recipient", "status", "time", "source", "disclosure", "campaign",
                 "evidence", "recorded_at", "current"]


class ConsentError(ValueError):
    """A consent record that cannot be accepted (missing evidence, re-consent without new evidence)."""


def to_utc(value: datetime | str | float | None) -> datetime:
    """A timestamp as an aware UTC datetime; naive datetimes and ISO strings without offset are UTC."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"cannot read time {value!r}: write ISO 8601, e.g. 2026-11-23T09:30:00+08:00") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def clean_signature(signature: str | None) -> str:
    """``【京东】`` / ``[JD]`` / ``京东 `` → ``京东`` (the form scopes and templates are keyed by)."""
    if not signature:
        return ""
    return signature.strip().strip("【】[]〔〕［］").strip()


@dataclass(slots=True)
class ConsentRecord:
    id: int
    tenant: str
    scope: str
    recipient: str  # pseudonym
    status: str
    time: datetime
    source: str
    disclosure: str = ""
    campaign: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    recorded_at: datetime | None = None
    current: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.isoformat()
        data["recorded_at"] = self.recorded_at.isoformat() if self.recorded_at else None
        return data


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    errors: list[str] = field(default_factory=list)  # "row N: why"


class ConsentLedger:
    """Consent, opt-out and do-not-disturb records in SQLite; safe to share between threads."""

    def __init__(self, path: str | Path, key: bytes):
        self.path = str(path)
        self.key = key
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes in WAL mode, far fewer fsyncs
        self._conn.executescript(SCHEMA)

    @classmethod
    def from_settings(cls, settings: Any = None) -> ConsentLedger:
        from skyshield.config import load_settings

        settings = settings or load_settings()
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return cls(settings.sqlite_path, settings.hmac_key())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def pseudonym(self, number: str) -> str:
        return pseudonymise(number, self.key)

    # -- consent and opt-out -------------------------------------------------------------------------

    def record_opt_in(
        self,
        tenant: str,
        signature: str,
        recipient: str,
        *,
        source: str,
        disclosure: str,
        time: datetime | str | None = None,
        campaign: str = "",
        evidence: dict[str, Any] | None = None,
    ) -> ConsentRecord:
        """Store an opt-in. It needs its evidence: where it was given (``source``), when, and the text shown.

        After an opt-out, only a consent whose evidence time is later than the opt-out is accepted.
        """
        scope = clean_signature(signature)
        if not scope:
            raise ConsentError("consent needs the sender's signature it applies to")
        if not recipient or not recipient.strip():
            raise ConsentError("consent needs the recipient's number")
        if not source or not source.strip():
            raise ConsentError("consent needs its source (where it was given: web form, shop, app, ...)")
        if not disclosure or not disclosure.strip():
            raise ConsentError("consent needs the disclosure text the recipient agreed to")
        when = to_utc(time)
        if when.timestamp() > _time.time() + 300:
            raise ConsentError(f"consent time {when.isoformat()} is in the future")
        pseudo = self.pseudonym(recipient)
        with self._lock:
            current = self._current_rows(tenant, [pseudo], [scope])
            if current and current[0].status == OPT_OUT and when <= current[0].time:
                raise ConsentError(
                    f"the recipient opted out on {current[0].time.isoformat()} (record {current[0].id}); "
                    "only new explicit consent given after that can restore it"
                )
            return self._insert(tenant, scope, pseudo, OPT_IN, when, source.strip(), disclosure.strip(),
                                campaign, evidence or {})

    def record_opt_out(
        self,
        tenant: str,
        scope: str,
        recipient: str,
        *,
        source: str = "reply",
        time: datetime | str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> tuple[ConsentRecord, bool]:
        """Store an opt-out; returns it and whether it is new (False when already opted out: no new confirmation)."""
        scope = scope if scope.startswith(SENDER_SCOPE) else clean_signature(scope)
        if not scope:
            raise ConsentError("an opt-out needs the signature or sending number it applies to")
        pseudo = self.pseudonym(recipient)
        when = to_utc(time)
        with self._lock:
            current = self._current_rows(tenant, [pseudo], [scope])
            already = bool(current) and current[0].status == OPT_OUT
            record = self._insert(tenant, scope, pseudo, OPT_OUT, when, source, "", "", evidence or {})
            return record, not already

    def _insert(self, tenant: str, scope: str, pseudo: str, status: str, when: datetime, source: str,
                disclosure: str, campaign: str, evidence: dict[str, Any]) -> ConsentRecord:
        now = _time.time()
        ts = when.timestamp()
        cur = self._conn.execute("BEGIN IMMEDIATE")
        try:
            newer = cur.execute(
                "SELECT 1 FROM compliance_consent WHERE tenant=? AND recipient=? AND scope=? "
                "AND superseded_ts IS NULL AND evidence_ts > ?",
                (tenant, pseudo, scope, ts),
            ).fetchone()
            cur.execute(
                "UPDATE compliance_consent SET superseded_ts=? WHERE tenant=? AND recipient=? AND scope=? "
                "AND superseded_ts IS NULL AND evidence_ts <= ?",
                (now, tenant, pseudo, scope, ts),
            )
            row_id = cur.execute(
                "INSERT INTO compliance_consent (tenant, scope, recipient, status, evidence_ts, source, disclosure,"
                " campaign, evidence, recorded_ts, superseded_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (tenant, scope, pseudo, status, ts, source, disclosure, campaign,
                 json.dumps(evidence, ensure_ascii=False), now, now if newer else None),
            ).lastrowid
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return ConsentRecord(int(row_id), tenant, scope, pseudo, status, when, source, disclosure, campaign,
                             evidence, datetime.fromtimestamp(now, UTC), current=not newer)

    @staticmethod
    def _row(row: sqlite3.Row) -> ConsentRecord:
        return ConsentRecord(
            id=row["id"], tenant=row["tenant"], scope=row["scope"], recipient=row["recipient"], status=row["status"],
            time=datetime.fromtimestamp(row["evidence_ts"], UTC), source=row["source"],
            disclosure=row["disclosure"], campaign=row["campaign"], evidence=json.loads(row["evidence"] or "{}"),
            recorded_at=datetime.fromtimestamp(row["recorded_ts"], UTC),
            current=row["superseded_ts"] is None,
        )

    def _current_rows(self, tenant: str, pseudos: Sequence[str], scopes: Sequence[str] | None) -> list[ConsentRecord]:
        out: list[ConsentRecord] = []
        pseudos = list(dict.fromkeys(pseudos))
        for start in range(0, len(pseudos), 500):
            chunk = pseudos[start:start + 500]
            sql = (f"SELECT * FROM compliance_consent WHERE tenant=? AND superseded_ts IS NULL "
                   f"AND recipient IN ({','.join('?' * len(chunk))})")
            params: list[Any] = [tenant, *chunk]
            if scopes is not None:
                sql += f" AND scope IN ({','.join('?' * len(scopes))})"
                params.extend(scopes)
            out.extend(self._row(r) for r in self._conn.execute(sql, params))
        return out

    def current(self, tenant: str, pseudos: Sequence[str]) -> dict[tuple[str, str], ConsentRecord]:
        """Current record per (recipient pseudonym, scope) for these recipients: one query per 500."""
        with self._lock:
            return {(r.recipient, r.scope): r for r in self._current_rows(tenant, pseudos, None)}

    def state(self, tenant: str, scopes: Sequence[str], recipient: str) -> ConsentRecord | None:
        """The newest current record for a recipient (a number) across the given scopes, or None."""
        with self._lock:
            rows = self._current_rows(tenant, [self.pseudonym(recipient)], list(scopes))
        return max(rows, key=lambda r: (r.time, r.id), default=None)

    def get(self, record_id: int) -> ConsentRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM compliance_consent WHERE id=?", (record_id,)).fetchone()
        return self._row(row) if row else None

    def records(self, tenant: str | None = None, *, current_only: bool = False) -> Iterator[ConsentRecord]:
        sql, params = "SELECT * FROM compliance_consent WHERE 1=1", []
        if tenant:
            sql, params = sql + " AND tenant=?", [tenant]
        if current_only:
            sql += " AND superseded_ts IS NULL"
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        for row in rows:
            yield self._row(row)

    def purge(self, retention_s: int, now: float | None = None) -> int:
        """Delete superseded records older than ``retention_s`` (at least 150 days); returns how many."""
        if retention_s < MIN_RETENTION_S:
            raise ConsentError(f"consent records are kept at least 150 days; {retention_s // 86400} days asked")
        cutoff = (now if now is not None else _time.time()) - retention_s
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM compliance_consent WHERE superseded_ts IS NOT NULL AND superseded_ts < ?", (cutoff,))
            return cur.rowcount

    # -- do-not-disturb ------------------------------------------------------------------------------

    def add_dnd(self, numbers: Iterable[str], *, source: str = "", note: str = "") -> int:
        rows = [(self.pseudonym(n), _time.time(), source, note) for n in numbers if n and n.strip()]
        self._many("INSERT OR IGNORE INTO compliance_dnd VALUES (?,?,?,?)", rows)
        return len(rows)

    def remove_dnd(self, numbers: Iterable[str]) -> None:
        self._many("DELETE FROM compliance_dnd WHERE recipient=?", [(self.pseudonym(n),) for n in numbers])

    def dnd_listed(self, pseudos: Sequence[str]) -> set[str]:
        found: set[str] = set()
        pseudos = list(dict.fromkeys(pseudos))
        with self._lock:
            for start in range(0, len(pseudos), 500):
                chunk = pseudos[start:start + 500]
                found.update(r[0] for r in self._conn.execute(
                    f"SELECT recipient FROM compliance_dnd WHERE recipient IN ({','.join('?' * len(chunk))})", chunk))
        return found

    # -- sends (frequency-cap counters and reply attribution) ----------------------------------------

    def _many(self, sql: str, rows: Sequence[tuple]) -> None:
        """One statement over many rows in one transaction (autocommit would commit each row)."""
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record_sends(self, rows: Sequence[tuple[str, str, str, str, str, float]]) -> None:
        """Store delivered sends: (tenant, scope, sender, recipient pseudonym, category, unix time)."""
        self._many("INSERT INTO compliance_sends VALUES (?,?,?,?,?,?)", rows)

    def forget_sends(self, rows: Sequence[tuple[str, str, str, str, str, float]]) -> None:
        self._many("DELETE FROM compliance_sends WHERE rowid = (SELECT rowid FROM compliance_sends WHERE tenant=? "
                   "AND scope=? AND sender=? AND recipient=? AND category=? AND ts=? LIMIT 1)", rows)

    def recent_sends(self, since: float) -> list[tuple[str, str, str, str, str, float]]:
        with self._lock:
            return [tuple(r) for r in self._conn.execute(
                "SELECT tenant, scope, sender, recipient, category, ts FROM compliance_sends WHERE ts > ?", (since,))]

    def purge_sends(self, before: float) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM compliance_sends WHERE ts < ?", (before,))

    def last_signature(self, tenant: str, sender: str, recipient: str) -> str | None:
        """The signature of the newest send from ``sender`` to ``recipient`` (to attribute a reply), if known."""
        with self._lock:
            row = self._conn.execute(
                "SELECT scope FROM compliance_sends WHERE tenant=? AND sender=? AND recipient=? AND scope != '' "
                "ORDER BY ts DESC LIMIT 1", (tenant, sender, self.pseudonym(recipient))).fetchone()
        return row[0] if row else None

    # -- export / import -----------------------------------------------------------------------------

    def export(self, out: TextIO, fmt: str = "csv", tenant: str | None = None) -> int:
        """Write every record (current and superseded, with evidence) as CSV or JSONL; returns the count."""
        if fmt not in {"csv", "jsonl"}:
            raise ValueError(f"export format must be csv or jsonl, not {fmt!r}")
        writer = csv.DictWriter(out, EXPORT_FIELDS) if fmt == "csv" else None
        if writer:
            writer.writeheader()
        count = 0
        for record in self.records(tenant):
            data = record.to_dict()
            if writer:
                data["evidence"] = json.dumps(data["evidence"], ensure_ascii=False)
                writer.writerow(data)
            else:
                out.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
        return count

    def import_records(self, text: str, fmt: str, default_tenant: str = "default") -> ImportReport:
        """Import opt-ins, opt-outs and DND entries from CSV (header row) or JSONL; bad rows are reported.

        Fields: ``recipient`` (a number), ``status`` (opt_in | opt_out | dnd), ``signature``, ``time``,
        ``source``, ``disclosure``, ``campaign``, ``tenant``, ``evidence`` (JSON object).
        """
        report = ImportReport()
        known = {"recipient", "status", "signature", "scope", "time", "source", "disclosure", "campaign", "tenant",
                 "evidence"}
        if fmt == "csv":
            reader = csv.DictReader(io.StringIO(text))
            unknown = [f for f in reader.fieldnames or [] if f not in known]
            if unknown:
                raise ValueError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            rows: Iterable[tuple[int, Any]] = ((reader.line_num, row) for row in reader)
        elif fmt == "jsonl":
            rows = ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())
        else:
            raise ValueError(f"import format must be csv or jsonl, not {fmt!r}")
        for line_no, row in rows:
            try:
                if isinstance(row, str):
                    row = json.loads(row)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                    extra = set(row) - known
                    if extra:
                        raise ValueError(f"unknown field(s) {', '.join(sorted(extra))}")
                if None in row:
                    raise ValueError("more fields than the header has")
                self._import_one(row, default_tenant)
                report.imported += 1
            except (ValueError, TypeError) as exc:
                report.errors.append(f"row {line_no}: {exc}")
        return report

    def _import_one(self, row: dict[str, Any], default_tenant: str) -> None:
        status = (row.get("status") or "").strip()
        recipient = (row.get("recipient") or "").strip()
        tenant = (row.get("tenant") or "").strip() or default_tenant
        evidence = row.get("evidence") or {}
        if isinstance(evidence, str):
            evidence = json.loads(evidence) if evidence.strip() else {}
        if not recipient:
            raise ValueError("recipient is empty")
        if status == "dnd":
            self.add_dnd([recipient], source=row.get("source") or "import", note=row.get("disclosure") or "")
        elif status == OPT_IN:
            self.record_opt_in(tenant, row.get("signature") or row.get("scope") or "", recipient,
                               source=row.get("source") or "", disclosure=row.get("disclosure") or "",
                               time=row.get("time") or None, campaign=row.get("campaign") or "", evidence=evidence)
        elif status == OPT_OUT:
            self.record_opt_out(tenant, row.get("signature") or row.get("scope") or "", recipient,
                                source=row.get("source") or "import", time=row.get("time") or None,
                                evidence=evidence)
        else:
            raise ValueError(f"status must be opt_in, opt_out or dnd, not {status!r}")
