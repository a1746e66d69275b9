"""The review queue: messages a person should look at, and the labels they give.

Items come from three places: verdicts the policy sent to ``hold``; delivered or tagged verdicts whose
unwanted score lies in the uncertain band (``[disposal] review_uncertain``); and reported messages the
engine let through (added by :mod:`skyshield.disposal.reports`). A reviewer labels an item with a
category (optionally ``category/subtype``) or skips it; labels feed ``skyshield retrain``.

A label is also the decision on a message the SMPP firewall holds under that verdict
(:mod:`skyshield.disposal.held`): a wanted category (``[disposal] release_held``) releases it, any other
label rejects it. Skipping decides nothing: it waits until ``[gateway.smpp] hold_expiry``.
"""

from __future__ import annotations

from collections.abc import Iterable

from skyshield.disposal import held
from skyshield.disposal.schema import DisposalDB, iso
from skyshield.events import UNWANTED_CATEGORIES, Category, FraudSubtype, IllicitSubtype

#: What a reviewer may answer, in the order of the console's keys 1-6.
LABELS = [c.value for c in Category]
SUBTYPES = {Category.FRAUD.value: [s.value for s in FraudSubtype],
            Category.ILLICIT.value: [s.value for s in IllicitSubtype]}
#: Labels that release a held message by default: the categories a recipient asked for.
WANTED_LABELS = tuple(c.value for c in Category if c not in UNWANTED_CATEGORIES)


class ReviewError(ValueError):
    pass


def check_label(label: str) -> str:
    label = (label or "").strip().lower()
    category, _, subtype = label.partition("/")
    if category not in LABELS:
        raise ReviewError(f"unknown label {label!r}; one of: {', '.join(LABELS)} (fraud/illicit may add /subtype)")
    if subtype and subtype not in SUBTYPES.get(category, []):
        allowed = ", ".join(SUBTYPES.get(category, [])) or "none"
        raise ReviewError(f"unknown subtype {subtype!r} for {category} (allowed: {allowed})")
    return label


def training_class(label: str) -> str:
    """A reviewer's label as the text model's class: wanted categories are all ``ham`` to the model."""
    category, _, subtype = label.partition("/")
    if category in {"personal", "notification", "verification"}:
        return "ham"
    if category in {"fraud", "illicit"}:
        return f"{category}/{subtype or ('other' if category == 'fraud' else 'link_spam')}"
    return category


class ReviewQueue:
    def __init__(self, db: DisposalDB, release_labels: Iterable[str] = WANTED_LABELS):
        self.db = db
        self.release_labels = frozenset(release_labels)
        unknown = self.release_labels - set(LABELS)
        if unknown:
            raise ReviewError(f"release_held: unknown label(s) {', '.join(sorted(unknown))}; "
                              f"one of: {', '.join(LABELS)}")

    def add_candidates(self, conn, rows: list[dict], band: tuple[float, float]) -> int:
        """Queue held verdicts and uncertain let-through ones among ``rows`` (inside the caller's transaction)."""
        added = 0
        low, high = band
        for r in rows:
            if r["action"] == "hold":
                source = "hold"
            elif r["action"] in {"deliver", "tag"} and low <= r["unwanted"] <= high:
                source = "uncertain"
            else:
                continue
            cur = conn.execute(
                "INSERT INTO disposal_review (verdict_id, source, tenant, text, sender, action, category,"
                " unwanted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (r["id"], source, r["tenant"], r["text"], r["sender"], r["action"], r["category"], r["unwanted"],
                 iso()))
            added += cur.rowcount
        return added

    def open_items(self, *, limit: int = 50) -> list[dict]:
        # Reported ones first: a person complained and the message went through.
        return self.db.rows(
            "SELECT * FROM disposal_review WHERE status = 'open'"
            " ORDER BY CASE source WHEN 'reported' THEN 0 WHEN 'hold' THEN 1 ELSE 2 END, id LIMIT ?", (limit,))

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self.db.rows(
            "SELECT status, COUNT(*) AS n FROM disposal_review GROUP BY status")}

    def label(self, item_id: int, label: str, *, reviewer: str) -> dict:
        """Label an item; a message held under its verdict is released or rejected in the same transaction. The
        item comes back with ``held``: that message's status afterwards (``None`` when nothing is held)."""
        label = check_label(label)
        if not reviewer:
            raise ReviewError("a label needs the reviewer's name")
        with self.db.write() as conn:
            cur = conn.execute("UPDATE disposal_review SET status = 'labelled', label = ?, labelled_by = ?,"
                               " labelled_at = ? WHERE id = ? AND status != 'labelled'",
                               (label, reviewer, iso(), item_id))
            if cur.rowcount == 0:
                row = conn.execute("SELECT status FROM disposal_review WHERE id = ?", (item_id,)).fetchone()
                raise ReviewError(f"no review item {item_id}" if row is None else f"item {item_id} is already labelled")
            verdict_id = conn.execute("SELECT verdict_id FROM disposal_review WHERE id = ?", (item_id,)).fetchone()[0]
            released = label.partition("/")[0] in self.release_labels
            status = held.decide(conn, verdict_id, released, reviewer)
        item = self.db.one("SELECT * FROM disposal_review WHERE id = ?", (item_id,)) or {}
        return item | {"held": status}

    def skip(self, item_id: int, *, reviewer: str) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE disposal_review SET status = 'skipped', labelled_by = ?, labelled_at = ?"
                         " WHERE id = ? AND status = 'open'", (reviewer, iso(), item_id))

    def labelled(self, *, untrained_only: bool = False) -> list[dict]:
        where = "status = 'labelled'" + (" AND trained_in IS NULL" if untrained_only else "")
        return self.db.rows(f"SELECT id, text, label FROM disposal_review WHERE {where} ORDER BY id")

    def mark_trained(self, ids: list[int], version: str) -> None:
        with self.db.write() as conn:
            conn.executemany("UPDATE disposal_review SET trained_in = ? WHERE id = ?", [(version, i) for i in ids])
