"""One entry point for the disposal area: reports, campaigns, blocks and the review queue over one store.

``refresh()`` brings campaigns and the review queue up to date with the verdicts stored since the last
call, in batches; routes and commands call it before they read (it is cheap when nothing is new).
"""

from __future__ import annotations

from typing import Any

from skyshield.disposal.blocks import BlockBook
from skyshield.disposal.campaigns import Campaigns
from skyshield.disposal.reports import Reports
from skyshield.disposal.review import ReviewQueue
from skyshield.disposal.schema import DisposalDB
from skyshield.policy import Policy, PolicyError, parse_duration
from skyshield.store import VerdictStore

WATERMARK = "scan.verdict_id"
BATCH = 2000


class Disposal:
    def __init__(self, store: VerdictStore, key: bytes, policy: Policy):
        self.policy = policy
        conf = policy.section("disposal")
        low, high = conf["review_uncertain"]
        self.band = (float(low), float(high))
        self.numbers_7726 = tuple(str(n) for n in conf["report_numbers_7726"])
        self.numbers_12321 = tuple(str(n) for n in conf["report_numbers_12321"])
        self.db = DisposalDB(store, key)
        self.campaigns = Campaigns(self.db)
        self.reports = Reports(self.db, self.campaigns, parse_duration(conf["report_session_expiry"]))
        self.blocks = BlockBook(self.db)
        try:
            self.review = ReviewQueue(self.db, [str(x) for x in conf["release_held"]])
        except ValueError as exc:
            raise PolicyError(f"{policy.source}: disposal.{exc}") from None

    @classmethod
    def open(cls, policy: Policy | None = None, settings: Any = None) -> Disposal:
        from skyshield.config import load_settings
        from skyshield.store import open_store_for

        policy = policy or Policy.load(None)
        settings = settings or load_settings()
        return cls(open_store_for(policy, settings), settings.hmac_key(), policy)

    def refresh(self, limit: int | None = None) -> dict[str, int]:
        """Cluster and queue the verdicts stored since the last refresh; returns what was done."""
        done = {"verdicts": 0, "queued": 0}
        with self.db.lock:
            while limit is None or done["verdicts"] < limit:
                after = int(self.db.state(WATERMARK, "0"))
                rows = self.db.rows(
                    "SELECT id, msg_time AS time, tenant, sender, text, action, category, unwanted FROM verdicts"
                    # calls have no text to cluster into campaigns or to label for the text model
                    " WHERE id > ? AND text IS NOT NULL AND channel <> 'call' ORDER BY id LIMIT ?", (after, BATCH))
                if not rows:
                    break
                try:
                    with self.db.write() as conn:
                        self.campaigns.assign(conn, rows)
                        done["queued"] += self.review.add_candidates(conn, rows, self.band)
                        self.db.set_state(conn, WATERMARK, str(rows[-1]["id"]))
                except BaseException:
                    self.campaigns = Campaigns(self.db)  # the in-memory index may hold rolled-back campaigns
                    self.reports.campaigns = self.campaigns
                    raise
                done["verdicts"] += len(rows)
        return done

    def close(self) -> None:
        self.db.close()
