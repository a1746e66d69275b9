"""Reports for a regulator: per tenant, signature and period — volumes, what was blocked and why,
complaints, opt-outs honoured and how fast, top offenders — as CSV and as an HTML page that prints.

Everything is computed from the stored verdicts, the reports and the consent ledger's opt-outs, so the
numbers can be re-derived later from the same database.
"""

from __future__ import annotations

import csv
import html
import io
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skyshield.disposal.schema import DisposalDB, iso

_SIGNATURE = re.compile(r"^\s*[【\[]([^】\]]{1,24})[】\]]|[【\[]([^】\]]{1,24})[】\]]\s*$")
NO_SIGNATURE = "(none)"
#: The row screened calls are counted in (they have no text, so no signature).
CALLS = "(calls 电话)"
ACTIONS = ["deliver", "tag", "fold", "hold", "block"]
CATEGORIES = ["personal", "notification", "verification", "promotion", "fraud", "illicit"]
DELIVERED = {"deliver", "tag", "fold"}
#: Sends an opt-out forbids (a bill or a code may still go to someone who opted out of marketing).
MARKETING = {"promotion", "fraud", "illicit"}


def signature_of(text: str | None) -> str:
    if not text:
        return NO_SIGNATURE
    m = _SIGNATURE.search(text)
    return (m.group(1) or m.group(2)).strip() if m else NO_SIGNATURE


@dataclass
class SignatureRow:
    signature: str
    messages: int = 0
    by_action: Counter = field(default_factory=Counter)
    blocked_by_category: Counter = field(default_factory=Counter)
    complaints: int = 0
    opt_outs: int = 0
    opt_outs_honoured: int = 0
    opt_out_delays_s: list[float] = field(default_factory=list)


@dataclass
class RegulatorReport:
    tenant: str
    start: datetime
    end: datetime
    generated_at: str
    rows: list[SignatureRow]
    top_offenders: list[dict[str, Any]]
    violations: list[dict[str, Any]]   # marketing delivered after the recipient had opted out

    def totals(self) -> SignatureRow:
        total = SignatureRow("(all)")
        for r in self.rows:
            total.messages += r.messages
            total.by_action.update(r.by_action)
            total.blocked_by_category.update(r.blocked_by_category)
            total.complaints += r.complaints
            total.opt_outs += r.opt_outs
            total.opt_outs_honoured += r.opt_outs_honoured
            total.opt_out_delays_s.extend(r.opt_out_delays_s)
        return total


def build(db: DisposalDB, tenant: str, start: datetime, end: datetime, *, top: int = 10) -> RegulatorReport:
    if end <= start:
        raise ValueError(f"the period is empty: --from {start.isoformat()} is not before --to {end.isoformat()}")
    rows: dict[str, SignatureRow] = {}

    def row(sig: str) -> SignatureRow:
        return rows.setdefault(sig, SignatureRow(sig))

    offenders: dict[str, Counter] = defaultdict(Counter)
    args = (tenant, iso(start), iso(end))
    verdicts = db.rows("SELECT id, channel, sender, recipient, text, action, category, msg_time FROM verdicts"
                       " WHERE tenant = ? AND msg_time >= ? AND msg_time < ?", args)
    sig_of_verdict: dict[int, str] = {}
    sends: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (recipient, sig) -> [(time, action)]
    for v in verdicts:
        sig = CALLS if v["channel"] == "call" else signature_of(v["text"])
        sig_of_verdict[v["id"]] = sig
        r = row(sig)
        r.messages += 1
        r.by_action[v["action"]] += 1
        if v["action"] == "block":
            r.blocked_by_category[v["category"]] += 1
            offenders[v["sender"]]["blocked"] += 1
        offenders[v["sender"]]["messages"] += 1
        if v["category"] in MARKETING:
            when = v["msg_time"]  # text in SQLite, a timestamp in PostgreSQL
            sends[(v["recipient"], sig)].append((iso(when) if isinstance(when, datetime) else when, v["action"]))
    reports = db.rows("SELECT verdict_id, sender, sender_masked, text FROM disposal_reports"
                      " WHERE tenant = ? AND time >= ? AND time < ?", args)
    masked: dict[str, str] = {}
    for rep in reports:
        sig = sig_of_verdict.get(rep["verdict_id"]) or signature_of(rep["text"])
        row(sig).complaints += 1
        offenders[rep["sender"]]["complaints"] += 1
        masked[rep["sender"]] = rep["sender_masked"]
    violations: list[dict[str, Any]] = []
    for o in _opt_outs(db, tenant, start, end):
        sig = o["scope"]
        r = row(sig)
        r.opt_outs += 1
        r.opt_out_delays_s.append(max(0.0, o["recorded_ts"] - o["evidence_ts"]))
        opted = iso(datetime.fromtimestamp(o["recorded_ts"], UTC))
        after = [(t, a) for t, a in sends.get((o["recipient"], sig), []) if t > opted and a in DELIVERED]
        if after:
            violations.append({"signature": sig, "recipient": o["recipient"], "opted_out_at": opted,
                               "sent_after": len(after), "first_after": min(t for t, _ in after)})
        else:
            r.opt_outs_honoured += 1
    ranked = sorted(offenders.items(), key=lambda kv: (-(kv[1]["blocked"] + 5 * kv[1]["complaints"]), kv[0]))
    top_offenders = [{"sender": masked.get(s, s), "messages": c["messages"], "blocked": c["blocked"],
                      "complaints": c["complaints"]}
                     for s, c in ranked[:top] if c["blocked"] or c["complaints"]]
    ordered = sorted(rows.values(), key=lambda r: (-r.messages, r.signature))
    return RegulatorReport(tenant, start, end, iso(), ordered, top_offenders, violations)


def _opt_outs(db: DisposalDB, tenant: str, start: datetime, end: datetime) -> list[dict]:
    if not db.table_exists("compliance_consent"):
        return []
    return db.rows("SELECT scope, recipient, evidence_ts, recorded_ts FROM compliance_consent"
                   " WHERE tenant = ? AND status = 'opt_out' AND evidence_ts >= ? AND evidence_ts < ?",
                   (tenant, start.timestamp(), end.timestamp()))


# -------------------------------------------------------------------------------------------- output

COLUMNS = (["signature", "messages", *ACTIONS, *(f"blocked_{c}" for c in CATEGORIES), "complaints",
            "complaints_per_10k", "opt_outs", "opt_outs_honoured", "opt_out_delay_median_s", "opt_out_delay_max_s"])


def _values(r: SignatureRow) -> list[Any]:
    delays = r.opt_out_delays_s
    per_10k = round(10_000 * r.complaints / r.messages, 2) if r.messages else ""
    return [r.signature, r.messages, *(r.by_action[a] for a in ACTIONS),
            *(r.blocked_by_category[c] for c in CATEGORIES), r.complaints, per_10k, r.opt_outs, r.opt_outs_honoured,
            round(statistics.median(delays), 1) if delays else "", round(max(delays), 1) if delays else ""]


def to_csv(report: RegulatorReport) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["tenant", "from", "to", *COLUMNS])
    for r in [*report.rows, report.totals()]:
        w.writerow([report.tenant, iso(report.start), iso(report.end), *_values(r)])
    return out.getvalue()


_CSS = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;margin:2em;color:#111}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.85em}
th,td{border:1px solid #999;padding:.25em .4em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#eee}
tr.total td{font-weight:bold;border-top:2px solid #111}
.meta{color:#444}
@media print{body{margin:0}thead{display:table-header-group}tr{page-break-inside:avoid}
@page{size:A4 landscape;margin:12mm}}
"""


def to_html(report: RegulatorReport) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = []
    for r in report.rows:
        body.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in _values(r)) + "</tr>")
    body.append('<tr class="total">' + "".join(f"<td>{e(str(v))}</td>" for v in _values(report.totals())) + "</tr>")
    offenders = "".join(f"<tr><td>{e(o['sender'])}</td><td>{o['messages']}</td><td>{o['blocked']}</td>"
                        f"<td>{o['complaints']}</td></tr>" for o in report.top_offenders) or \
        '<tr><td colspan="4">none</td></tr>'
    violations = "".join(f"<tr><td>{e(v['signature'])}</td><td>{e(v['recipient'])}</td><td>{e(v['opted_out_at'])}</td>"
                         f"<td>{v['sent_after']}</td></tr>" for v in report.violations) or \
        '<tr><td colspan="4">none: every opt-out in the period was honoured</td></tr>'
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>Regulator report {e(report.tenant)} {e(iso(report.start)[:10])}</title><style>{_CSS}</style></head><body>
<h1>短信治理报告 · Messaging report — tenant {e(report.tenant)}</h1>
<p class="meta">Period {e(iso(report.start))} to {e(iso(report.end))} ·
generated {e(report.generated_at)} by skyshield</p>
<h2>By signature 按签名</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Top offenders 主要违规号码</h2><table><thead><tr><th>sender</th><th>messages</th><th>blocked</th>
<th>complaints</th></tr></thead><tbody>{offenders}</tbody></table>
<h2>Opt-outs not honoured 未执行的退订</h2><table><thead><tr><th>signature</th><th>recipient (pseudonym)</th>
<th>opted out at</th><th>sent after</th></tr></thead><tbody>{violations}</tbody></table>
</body></html>"""
