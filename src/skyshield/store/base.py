"""The store's small interface: what every backend (SQLite now, PostgreSQL later) must do.

A verdict is stored with the message it judged (text, pseudonymised numbers, time, tenant,
channel, caller's id), every signal with its points and evidence, the category probabilities and
the model version, so "why was this blocked?" can be answered months later without the engine.

Other areas keep their own tables in the same database: they register schema migrations with
:func:`register_migration` (applied when a store opens, or on ``store.migrate()``) and use
``store.connect()`` for a connection of their own.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from skyshield.events import Action, Category, Channel, Message, Signal, Verdict


@dataclass(slots=True)
class StoredVerdict:
    """A verdict as read back from the store, with the message metadata it was given for."""

    id: int
    stored_at: datetime
    verdict: Verdict
    text: str | None
    #: Pseudonyms (``h:…``) unless pseudonymisation was off when the row was written.
    sender: str
    recipient: str
    time: datetime
    channel: Channel
    tenant: str
    external_id: str | None = None
    numbers_pseudonymised: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = self.verdict.to_dict()
        data["id"] = self.id
        data["stored_at"] = self.stored_at.isoformat()
        data["message"] = {
            "text": self.text,
            "sender": self.sender,
            "recipient": self.recipient,
            "time": self.time.isoformat(),
            "channel": self.channel.value,
            "tenant": self.tenant,
            "id": self.external_id,
            "numbers_pseudonymised": self.numbers_pseudonymised,
        }
        return data


@dataclass(slots=True)
class Counts:
    """How many verdicts, by action and by category."""

    total: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)


Migrate = str | Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step of one component: SQL (a script) or a function given a DB-API connection."""

    component: str
    version: int
    apply: Migrate
    dialect: str = "sqlite"
    description: str = ""


#: Every registered migration; backends apply the ones for their dialect, per component, in version order.
MIGRATIONS: list[Migration] = []


def register_migration(
    component: str, version: int, apply: Migrate, *, dialect: str = "sqlite", description: str = ""
) -> None:
    """Add a schema step for ``component`` (e.g. ``"compliance"``); versions start at 1 and count up.

    Register at import time of your module; a store opened later applies it, an open store applies
    it on ``store.migrate()``. Registering the same (component, version, dialect) twice is a no-op.
    """
    if version < 1:
        raise ValueError("migration versions start at 1")
    for m in MIGRATIONS:
        if (m.component, m.version, m.dialect) == (component, version, dialect):
            return
    MIGRATIONS.append(Migration(component, version, apply, dialect, description))


_NON_DIGITS = re.compile(r"[^\d]")


def normalise_number(number: str) -> str:
    """The same number written differently gives the same form: digits only, CN country prefix dropped.

    ``+86 138-0013-8000``, ``008613800138000`` and ``13800138000`` all become ``13800138000``; other
    international numbers keep their country code behind a ``+``.
    """
    raw = number.strip()
    digits = _NON_DIGITS.sub("", raw)
    if not digits:
        return raw
    international = raw.startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = digits[2:]
    if international:
        return digits[2:] if digits.startswith("86") else f"+{digits}"
    return digits


@lru_cache(maxsize=65536)
def pseudonymise(number: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 of the normalised number (128 bits, hex): stable per key, not reversible without it.

    Cached: senders repeat a lot in real traffic, and this runs for every stored message.
    """
    if not number:
        return ""
    digest = hmac.digest(key, normalise_number(number).encode("utf-8"), "sha256")
    return f"h:{digest[:16].hex()}"


#: The ``verdicts`` table's columns, in the order every backend writes and reads a row.
COLUMNS = (
    "id, stored_at, msg_time, tenant, channel, external_id, sender, recipient, numbers_hashed, text, action, "
    "category, subtype, unwanted, score, model_version, probabilities, signals"
)

# default=str: evidence may carry values JSON cannot (sets, Paths); keep what they say, never fail the batch.
def _json(value: Any) -> str:
    """Compact JSON text for a stored column. orjson: this runs twice per stored verdict (probabilities,
    signals), and the json module took ~10 µs a row against orjson's ~1.6 (it was the largest single cost
    of the SMPP firewall's write-behind recording)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


#: Enum member → its value; ``.value`` is a slow descriptor and this runs several times per stored row.
_VALUE: dict[Any, str] = {m: m.value for enum in (Action, Category, Channel) for m in enum}


def _signal_dict(s: Signal) -> dict[str, Any]:
    return {"name": s.name, "score": s.score, "points": s.points, "evidence": s.evidence}


def pending_order(dialect: str) -> list[Migration]:
    """The registered migrations of one dialect in the order to apply them: core first, then per component."""
    ours = (m for m in MIGRATIONS if m.dialect == dialect)
    return sorted(ours, key=lambda m: (m.component != "core", m.component, m.version))


def row_to_stored(row: Sequence[Any], *, decoded: bool) -> StoredVerdict:
    """A ``SELECT COLUMNS`` row as a :class:`StoredVerdict`. ``decoded``: the driver already gives datetimes
    and decoded JSON (psycopg); otherwise they are ISO 8601 and JSON text (SQLite)."""
    (vid, stored_at, msg_time, tenant, channel, external_id, sender, recipient, hashed, text, action, category,
     subtype, unwanted, score, model_version, probabilities, signals) = row
    if not decoded:
        stored_at, msg_time = datetime.fromisoformat(stored_at), datetime.fromisoformat(msg_time)
        probabilities, signals = json.loads(probabilities), json.loads(signals)
    verdict = Verdict.from_dict(
        {
            "id": vid,
            "action": action,
            "category": category,
            "subtype": subtype,
            "unwanted": unwanted,
            "score": score,
            "model_version": model_version,
            "probabilities": probabilities,
            "signals": signals,
        }
    )
    return StoredVerdict(
        id=vid,
        stored_at=stored_at,
        verdict=verdict,
        text=text,
        sender=sender,
        recipient=recipient,
        time=msg_time,
        channel=Channel(channel),
        tenant=tenant,
        external_id=external_id,
        numbers_pseudonymised=bool(hashed),
    )


def tally(rows: Iterable[tuple[str, str, int]]) -> Counts:
    """``Counts`` from (action, category, n) rows."""
    result = Counts()
    for action, category, n in rows:
        result.total += n
        result.by_action[action] = result.by_action.get(action, 0) + n
        result.by_category[category] = result.by_category.get(category, 0) + n
    return result


class VerdictStore(ABC):
    """Persistence for verdicts. Implementations are safe to share between threads of one process.

    A SQL backend gives :meth:`_query` (and, where its driver differs from SQLite's, the class attributes
    and hooks below); reading, searching and counting are then written once, here.
    """

    #: The driver's parameter placeholder.
    placeholder: ClassVar[str] = "?"
    #: Whether the driver gives datetimes and decoded JSON for the verdicts' columns (see :func:`row_to_stored`).
    decoded_rows: ClassVar[bool] = False

    def __init__(self, key: bytes | None, *, pseudonymise_numbers: bool = True):
        if pseudonymise_numbers and not key:
            raise ValueError("pseudonymising phone numbers needs a key (Settings.hmac_key())")
        self._key = key
        self.pseudonymise_numbers = pseudonymise_numbers

    # -- hooks for SQL backends ---------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Every row of one statement (under the store's lock)."""
        raise NotImplementedError

    @staticmethod
    def _moment(moment: datetime) -> Any:
        """A datetime as the backend binds it."""
        return moment

    @staticmethod
    def _text(text: str | None) -> str | None:
        """A message text as the backend can store it."""
        return text

    def _any_of(self, column: str, values: list[str]) -> tuple[str, list[Any]]:
        """``column`` equals one of ``values``: the SQL and its parameters."""
        return f"{column} IN ({', '.join([self.placeholder] * len(values))})", values

    # -- shared by the SQL backends ----------------------------------------------------------------

    def _open(self) -> None:
        """Open the store's connection (shared by threads under ``_lock``) and apply pending migrations;
        the connection is closed again when they fail."""
        self._lock = threading.Lock()
        self._conn = self.connect()
        try:
            self.migrate()
        except BaseException:
            self._conn.close()
            raise

    def _number(self, number: str) -> str:
        return pseudonymise(number, self._key) if self.pseudonymise_numbers and self._key else number

    def _search_numbers(self, number: str) -> list[str]:
        """What a number searched for may be stored as: rows written with pseudonymisation off hold it as written."""
        candidates = {number}
        if self._key:
            candidates.add(pseudonymise(number, self._key))
        return sorted(candidates)

    def _rows(self, items: Sequence[tuple[Message, Verdict]], stored_at: datetime) -> list[list[Any]]:
        """The rows to insert for a batch, in ``COLUMNS`` order (``id`` left ``None``)."""
        moment, clean, number = self._moment, self._text, self._number
        stored = moment(stored_at)
        hashed = self.pseudonymise_numbers
        return [
            [
                None,
                stored,
                moment(message.time),
                message.tenant,
                _VALUE[message.channel],
                message.external_id,
                number(message.sender),
                number(message.recipient),
                hashed,
                clean(message.text),
                _VALUE[verdict.action],
                _VALUE[verdict.category],
                verdict.subtype,
                float(verdict.unwanted),
                float(verdict.score),
                verdict.model_version,
                _json(verdict.probabilities),
                _json([_signal_dict(s) for s in verdict.signals]),
            ]
            for message, verdict in items
        ]

    def schema_versions(self) -> dict[str, int]:
        """The latest applied migration version per component."""
        return dict(self._query("SELECT component, MAX(version) FROM schema_version GROUP BY component"))

    @abstractmethod
    def save(self, items: Sequence[tuple[Message, Verdict]], *, idempotent: bool = False) -> list[int]:
        """Store a batch in one transaction; returns the verdict ids in order and sets ``verdict.id``.

        ``idempotent``: a message whose (tenant, channel, external_id) is already stored is not stored
        again; its id is the stored one (checked inside the write transaction, so concurrent retries
        of the same message id still give one record).
        """

    @abstractmethod
    def find_external(
        self, keys: Sequence[tuple[str, str]], channel: str = "api"
    ) -> dict[tuple[str, str], StoredVerdict]:
        """Stored verdicts by (tenant, external_id) for one channel; the oldest when there are several."""

    def get(self, verdict_id: int) -> StoredVerdict | None:
        """One verdict with its message metadata, signals and evidence; ``None`` when there is none."""
        if not -(2**63) <= verdict_id < 2**63:  # beyond a 64-bit integer column: there is no such row
            return None
        rows = self._query(f"SELECT {COLUMNS} FROM verdicts WHERE id = {self.placeholder}", (verdict_id,))
        return row_to_stored(rows[0], decoded=self.decoded_rows) if rows else None

    def search(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        action: str | None = None,
        category: str | None = None,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
        channel: str | None = None,
    ) -> list[StoredVerdict]:
        """Recent verdicts, newest first. ``sender``/``recipient`` take the number as written (it is
        pseudonymised the same way for the lookup); ``since``/``until`` bound the time stored;
        ``before_id`` pages backwards."""
        p = self.placeholder
        where: list[str] = []
        args: list[Any] = []
        for column, number in (("sender", sender), ("recipient", recipient)):
            if number:
                clause, values = self._any_of(column, self._search_numbers(number))
                where.append(clause)
                args.extend(values)
        for column, value in (("action", action), ("category", category), ("tenant", tenant), ("channel", channel)):
            if value:
                where.append(f"{column} = {p}")
                args.append(value)
        if since:
            where.append(f"stored_at >= {p}")
            args.append(self._moment(since))
        if until:
            where.append(f"stored_at < {p}")
            args.append(self._moment(until))
        if before_id:
            where.append(f"id < {p}")
            args.append(before_id)
        sql = f"SELECT {COLUMNS} FROM verdicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id DESC LIMIT {p}"
        args.append(max(0, int(limit)))
        return [row_to_stored(r, decoded=self.decoded_rows) for r in self._query(sql, args)]

    def counts(self, *, since: datetime | None = None, tenant: str | None = None) -> Counts:
        """Verdict counts by action and category."""
        p = self.placeholder
        where: list[str] = []
        args: list[Any] = []
        if since:
            where.append(f"stored_at >= {p}")
            args.append(self._moment(since))
        if tenant:
            where.append(f"tenant = {p}")
            args.append(tenant)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        sql = f"SELECT action, category, COUNT(*) FROM verdicts{clause} GROUP BY action, category"
        return tally(self._query(sql, args))

    @abstractmethod
    def migrate(self) -> None:
        """Apply registered migrations not yet applied (idempotent)."""

    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection to the same database, for another area's own tables."""

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> None:
        """Raise if the database cannot be read (health checks)."""
        self.get(0)

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
