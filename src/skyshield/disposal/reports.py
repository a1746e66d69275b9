"""Reports and complaints: by API, and by the SMS forms people already use.

* ``POST /v1/reports``: reporter, reported sender, text, time, optionally the verdict id or message id.
* GSMA **7726** ("SPAM" on a keypad), two steps: the reporter forwards the spam to 7726, is asked for the
  number it came from, and replies with it. A small state machine per reporter (``disposal_sms_sessions``).
* **12321** (China's reporting centre) in one message: ``号码*内容`` (``13800138000*您的账户异常…``).

A report is tied to the sender, to the stored verdict when there is one (the caller's verdict or message
id; else the verdict from the same sender, pseudonymised, with the same normalised text — the reporter's own
copy first, else the one nearest the reported time) and to the
campaign. A message the engine let through that people report goes to the review queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from skyshield.disposal.schema import DisposalDB, iso, mask_number, parse_time

MAX_TEXT = 2000
_NUMBER = re.compile(r"^\s*\+?[\d\s\-()]{3,24}\s*$")
_12321 = re.compile(r"^\s*(\+?[\d\-\s()]{3,24}?)\s*[*＊]\s*(.+)$", re.S)

REPLY_ASK_NUMBER = "已收到您举报的短信。请回复发送该短信的号码。Thanks - now reply with the number the spam came from."
REPLY_THANKS = "举报已受理，感谢您的支持。Thank you, your report has been received."
REPLY_FORWARD_FIRST = ("请先转发垃圾短信，再回复发送号码。"
                       "Please forward the spam message first, then its sender's number.")
REPLY_12321_FORMAT = "举报格式：号码*短信内容。Please send: number*message text."


class ReportError(ValueError):
    """A report that cannot be taken; the message says what to send instead."""


@dataclass(slots=True)
class SmsOutcome:
    state: str                 # awaiting_sender, reported, invalid
    reply: str                 # the SMS to send back to the reporter
    report: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reply": self.reply, "report": self.report}


class Reports:
    def __init__(self, db: DisposalDB, campaigns: Any, session_expiry_s: float = 86400.0):
        self.db = db
        self.campaigns = campaigns
        self.session_expiry = timedelta(seconds=session_expiry_s)

    # -- one report -------------------------------------------------------------------------------

    def submit(self, *, reporter: str, sender: str, text: str, time: str | datetime | None = None,
               tenant: str = "default", verdict_id: int | None = None, message_id: str | None = None,
               channel: str = "api", note: str = "") -> dict:
        if not reporter or not any(c.isdigit() for c in reporter):
            raise ReportError("reporter: the reporting person's phone number is required")
        if not sender or not any(c.isdigit() for c in sender):
            raise ReportError("sender: the number the message came from is required")
        if not text or not text.strip():
            raise ReportError("text: the reported message text is required")
        if len(text) > MAX_TEXT:
            raise ReportError(f"text: {len(text):,} characters; the limit is {MAX_TEXT:,}")
        when = parse_time(time)
        stored = self._match(reporter, sender, text, when, tenant, verdict_id, message_id)
        campaign_id = None
        if stored is not None:
            campaign_id = self.campaigns.of_verdict(stored.id)
        if campaign_id is None:
            campaign_id = self.campaigns.match([text])[0]
        sender_pseudo = stored.sender if stored is not None else self.db.pseudonym(sender)
        with self.db.write() as conn:
            report_id = conn.insert(
                "INSERT INTO disposal_reports (received_at, time, tenant, channel, reporter, sender, sender_masked,"
                " text, verdict_id, campaign_id, verdict_action, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iso(), iso(when), tenant, channel, self.db.pseudonym(reporter), sender_pseudo, mask_number(sender),
                 text, stored.id if stored else None, campaign_id,
                 stored.verdict.action.value if stored else None, note))
            if stored is not None and stored.verdict.action.value in {"deliver", "tag"} and stored.channel != "call":
                # The engine let it through and a person says it is unwanted: a reviewer should look (the review
                # queue labels texts for the text model; a call has none, its report still counts against the caller).
                conn.execute(
                    "INSERT INTO disposal_review (verdict_id, report_id, source, tenant, text, sender, action,"
                    " category, unwanted, created_at) VALUES (?, ?, 'reported', ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(verdict_id) DO UPDATE SET source = 'reported', report_id = excluded.report_id,"
                    " status = CASE WHEN disposal_review.status = 'skipped' THEN 'open'"
                    " ELSE disposal_review.status END",
                    (stored.id, report_id, stored.tenant, stored.text or text, stored.sender,
                     stored.verdict.action.value, stored.verdict.category.value, stored.verdict.unwanted, iso()))
        return self.get(report_id) or {}

    def _match(self, reporter: str, sender: str, text: str, when: datetime, tenant: str, verdict_id: int | None,
               message_id: str | None):
        store = self.db.store
        if verdict_id is not None:
            stored = store.get(int(verdict_id))
            if stored is None:
                raise ReportError(f"verdict_id: there is no verdict {verdict_id}")
            return stored
        if message_id:
            for channel in ("api", "smpp", "file", "sms", "call"):  # a call's message id is its SIP Call-ID
                found = store.find_external([(tenant, message_id)], channel=channel)
                if found:
                    return next(iter(found.values()))
        from skyshield.text.normalise import normalise

        wanted = normalise(text).strip()
        # The reporter received it: their copy first; else the sender's copy nearest the reported time.
        for recipient in (reporter, None):
            same = [s for s in store.search(sender=sender, recipient=recipient, tenant=tenant, limit=500)
                    if s.text is not None and normalise(s.text).strip() == wanted]
            if same:
                return min(same, key=lambda s: (abs((s.time - when).total_seconds()), -s.id))
        return None

    def get(self, report_id: int) -> dict | None:
        return self.db.one("SELECT * FROM disposal_reports WHERE id = ?", (report_id,))

    def list(self, *, limit: int = 100, sender: str | None = None, since: datetime | None = None) -> list[dict]:
        where, args = ["1 = 1"], []
        if sender:
            where.append("sender = ?")
            args.append(self.db.pseudonym(sender))
        if since:
            where.append("received_at >= ?")
            args.append(iso(since))
        return self.db.rows(f"SELECT * FROM disposal_reports WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                            [*args, limit])

    def top_senders(self, *, limit: int = 10, since: datetime | None = None) -> list[dict]:
        where, args = "", []
        if since:
            where, args = "WHERE received_at >= ?", [iso(since)]
        return self.db.rows(
            f"SELECT sender, MAX(sender_masked) AS sender_masked, COUNT(*) AS reports,"
            f" COUNT(DISTINCT reporter) AS reporters FROM disposal_reports {where}"
            f" GROUP BY sender ORDER BY reports DESC, sender LIMIT ?", [*args, limit])

    # -- SMS forms --------------------------------------------------------------------------------

    def sms(self, *, reporter: str, to: str, text: str, time: str | datetime | None = None,
            tenant: str = "default", numbers_7726: tuple[str, ...] = ("7726",),
            numbers_12321: tuple[str, ...] = ("12321",)) -> SmsOutcome:
        """One SMS a person sent to a report number; returns what to reply and the report once complete."""
        to_digits = re.sub(r"\D", "", to or "")
        if not reporter or not any(c.isdigit() for c in reporter):
            raise ReportError("from: the reporting person's phone number is required")
        if to_digits in numbers_12321:
            return self._sms_12321(reporter, text, time, tenant)
        if to_digits in numbers_7726:
            return self._sms_7726(reporter, text, time, tenant)
        known = ", ".join([*numbers_7726, *numbers_12321])
        raise ReportError(f"to: {to!r} is not a report number (known: {known})")

    def _sms_12321(self, reporter: str, text: str, time: Any, tenant: str) -> SmsOutcome:
        m = _12321.match(text or "")
        if not m or not any(c.isdigit() for c in m.group(1)) or not m.group(2).strip():
            return SmsOutcome("invalid", REPLY_12321_FORMAT)
        report = self.submit(reporter=reporter, sender=m.group(1), text=m.group(2).strip(), time=time, tenant=tenant,
                             channel="sms-12321")
        return SmsOutcome("reported", REPLY_THANKS, report)

    def _sms_7726(self, reporter: str, text: str, time: Any, tenant: str) -> SmsOutcome:
        if not text or not text.strip():
            return SmsOutcome("invalid", REPLY_ASK_NUMBER)
        who = self.db.pseudonym(reporter)
        now = parse_time(time)
        pending = self.db.one("SELECT * FROM disposal_sms_sessions WHERE reporter = ?", (who,))
        if pending and parse_time(pending["started_at"]) + self.session_expiry < now:
            pending = None  # too old: this message starts afresh
        if pending and _NUMBER.match(text):
            report = self.submit(reporter=reporter, sender=text.strip(), text=pending["text"],
                                 time=pending["started_at"], tenant=pending["tenant"], channel="sms-7726")
            with self.db.write() as conn:
                conn.execute("DELETE FROM disposal_sms_sessions WHERE reporter = ?", (who,))
            return SmsOutcome("reported", REPLY_THANKS, report)
        if not pending and _NUMBER.match(text):
            return SmsOutcome("invalid", REPLY_FORWARD_FIRST)
        if len(text) > MAX_TEXT:
            raise ReportError(f"text: {len(text):,} characters; the limit is {MAX_TEXT:,}")
        # A forwarded spam (or a new one replacing an unfinished report): wait for the sender's number.
        with self.db.write() as conn:
            conn.execute("INSERT INTO disposal_sms_sessions VALUES (?, ?, ?, ?) ON CONFLICT(reporter) DO UPDATE SET"
                         " tenant = excluded.tenant, text = excluded.text, started_at = excluded.started_at",
                         (who, tenant, text.strip(), iso(now)))
        return SmsOutcome("awaiting_sender", REPLY_ASK_NUMBER)
