"""Campaign pre-audit: a CSV of planned sends checked as the live traffic path would check them.

The file has a header row and one row per send (see docs/compliance.md):

    recipient,template,template_id,signature,category,variables,send_at,recipient_timezone,sender,tenant,
    consent_ref,campaign

``recipient`` and one of ``template`` / ``template_id`` are required; every other column is optional
and an unknown column is an error (a misspelt ``send_at`` must not silently skip the quiet-hours
check). Each distinct template is audited once (pass / fix / reject); each send is rendered and run
through the engine with a dry-run compliance detector (consent, opt-outs, DND, quiet hours, caps
within the campaign), so nothing is counted or stored. Malformed rows are reported with their line
number and skipped; the rest are still checked. Files that are not UTF-8 are read as GB18030 when
they decode as such; otherwise undecodable rows are reported.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from skyshield.compliance.detector import DECLARED_CATEGORIES, RECIPIENT_ZONES, ComplianceDetector
from skyshield.compliance.ledger import ConsentLedger, clean_signature, to_utc
from skyshield.compliance.templates import (
    FIX,
    PASS,
    REJECT,
    Auditor,
    TemplateAudit,
    TemplateRegistry,
    fill,
    template_variables,
)
from skyshield.engine import BatchContext, Engine
from skyshield.events import Action, Channel, Message, utcnow
from skyshield.policy import Policy

COLUMNS = ["recipient", "template", "template_id", "signature", "category", "variables", "send_at",
           "recipient_timezone", "sender", "tenant", "consent_ref", "campaign"]
_CHUNK = 1000
#: A signal worth this many points counts as a reason in "blocked sends by signal" (rules, confident models).
STRONG_POINTS = 10.0
_NUMBER = re.compile(r"\+?[0-9][0-9 ()\-]{4,24}")


class CampaignFileError(ValueError):
    """A campaign file that cannot be read at all (no header, unknown or missing columns)."""


@dataclass(slots=True)
class SendResult:
    row: int
    recipient: str  # masked: 138****8000
    template: int  # index into CampaignReport.templates
    action: str
    reasons: list[str]
    signals: list[str]  # every signal that added points
    notes: list[str] = field(default_factory=list)
    strong: list[str] = field(default_factory=list)  # signals worth STRONG_POINTS or more: what the summary counts


@dataclass(slots=True)
class CampaignReport:
    source: str
    outcome: str
    encoding: str
    templates: list[TemplateAudit]
    sends: list[SendResult]
    errors: list[str]  # "row N: why", rows that were skipped
    header: list[str] = field(default_factory=list)
    #: The fields of every well-formed row, by line number (to write the deliverable rows back out).
    fields: dict[int, list[str]] = field(default_factory=dict)

    def write_deliverable(self, out: Any) -> int:
        """Write the header and the rows that would not be blocked, as CSV; returns how many rows."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        kept = [s.row for s in self.sends if s.action != Action.BLOCK.value]
        writer.writerows(self.fields[row] for row in kept)
        return len(kept)

    def summary(self) -> dict[str, Any]:
        actions = Counter(s.action for s in self.sends)
        blocked_by = Counter(name for s in self.sends if s.action == Action.BLOCK.value for name in s.strong)
        return {
            "outcome": self.outcome,
            "templates": dict(Counter(t.outcome for t in self.templates)),
            "sends": len(self.sends),
            "actions": dict(actions),
            "blocked_by": dict(blocked_by.most_common()),
            "malformed_rows": len(self.errors),
        }

    def to_dict(self, with_sends: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "encoding": self.encoding, **self.summary(),
                                "template_audits": [t.to_dict() for t in self.templates], "errors": self.errors}
        if with_sends:
            data["send_results"] = [
                {"row": s.row, "recipient": s.recipient, "template": s.template, "action": s.action,
                 "reasons": s.reasons, "notes": s.notes} for s in self.sends]
        return data

    def render(self, limit_rows: int = 20) -> str:
        s = self.summary()
        actions = ", ".join(f"{n} {a}" for a, n in sorted(s["actions"].items())) or "none"
        lines = [f"{self.source}: {self.outcome.upper()} — {len(self.templates)} template(s) "
                 f"({', '.join(f'{n} {o}' for o, n in s['templates'].items()) or 'none'}), "
                 f"{s['sends']} send(s): {actions}; {s['malformed_rows']} malformed row(s)"]
        if self.encoding not in {"utf-8", "utf-8-sig"}:
            lines.append(f"  (read as {self.encoding})")
        for n, t in enumerate(self.templates, start=1):
            lines.append(f"template {n} [{t.outcome}] {t.category}: {t.text[:60]}")
            lines.extend(f"  - {f.severity} {f.code}: {f.message}" for f in t.findings)
        if s["blocked_by"]:
            counted = ", ".join(f"{k} {v}" for k, v in s["blocked_by"].items())
            lines.append(f"blocked sends by signal (10+ points): {counted}")
        shown = [x for x in self.sends if x.action == Action.BLOCK.value][:limit_rows]
        for x in shown:
            lines.append(f"  row {x.row} {x.recipient}: block — {'; '.join(x.reasons[:3])}")
        for err in self.errors[:limit_rows]:
            lines.append(f"  malformed {err}")
        if len(self.errors) > limit_rows:
            lines.append(f"  ... {len(self.errors) - limit_rows} more malformed rows")
        return "\n".join(lines)


def decode(data: bytes) -> tuple[str, str, set[int]]:
    """Text of a file, the encoding used, and the (1-based) lines that could not be decoded."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text, ("utf-8" if encoding == "utf-8-sig" else encoding), set()
    lines = data.split(b"\n")
    bad = set()
    for n, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(n)
    return data.decode("utf-8", errors="replace").lstrip("\ufeff"), "utf-8 (with undecodable rows)", bad


def mask(number: str) -> str:
    digits = number.strip()
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 9 else "****"


def _guess_kind(name: str) -> str:
    """Kind of a variable in a template written into the campaign file, from its name."""
    lowered = name.lower()
    for kind, hints in (("code", ("code", "otp", "captcha")), ("name", ("name",)), ("amount", ("amount", "price")),
                        ("date", ("date", "day")), ("time", ("time",)), ("number", ("count", "num", "qty"))):
        if any(h in lowered for h in hints):
            return kind
    return "text"


def _variables(raw: str) -> dict[str, str]:
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"variables are not valid JSON ({exc.msg}, char {exc.pos})") from None
        if not isinstance(value, dict):
            raise ValueError("variables must be a JSON object")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"variables: {part!r} is not name=value")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@dataclass(slots=True)
class _Send:
    row: int
    message: Message
    template_key: tuple
    zone: str | None
    notes: list[str]


def audit_campaign(data: bytes, *, policy: Policy, engine: Engine, ledger: ConsentLedger,
                   source: str = "<campaign>", tenant: str = "default", region: str = "CN") -> CampaignReport:
    """Audit a campaign CSV (bytes as read from disk); see the module docstring for the format."""
    text, encoding, bad_lines = decode(data)
    registry = TemplateRegistry(ledger, policy)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CampaignFileError(f"{source}: empty file (a header row is needed: {', '.join(COLUMNS)})") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise CampaignFileError(f"{source}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    if "recipient" not in header or not ({"template", "template_id"} & set(header)):
        raise CampaignFileError(f"{source}: a campaign needs a recipient column and a template or template_id column")
    errors: list[str] = []
    sends: list[_Send] = []
    kept_fields: dict[int, list[str]] = {}
    templates: dict[tuple, dict[str, Any]] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            errors.append(f"row {start}: unreadable CSV ({exc})")
            continue
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        try:
            if bad_lines & set(range(start, line + 1)):
                raise ValueError("not valid UTF-8 (nor GB18030); fix the file's encoding")
            if any("\x00" in f for f in fields):
                raise ValueError("contains a NUL byte (binary data, or a UTF-16 file?)")
            if len(fields) != len(header):
                raise ValueError(f"{len(fields)} fields, the header has {len(header)}")
            row = dict(zip(header, (f.strip() for f in fields), strict=False))
            sends.append(_row_send(row, start, tenant, region, registry, templates, ledger))
            kept_fields[start] = fields
        except (ValueError, KeyError) as exc:
            errors.append(f"row {start}: {exc}")
    auditor = Auditor(policy, engine.analyse, engine.model)
    keys = list(templates)
    audits = auditor.audit([templates[k] for k in keys])
    index = {k: n for n, k in enumerate(keys)}
    results = _run_sends(sends, policy, engine, ledger, registry, index)
    outcome = max((a.outcome for a in audits), key={PASS: 0, FIX: 1, REJECT: 2}.__getitem__, default=PASS)
    if errors and outcome == PASS:
        outcome = FIX
    return CampaignReport(source, outcome, encoding, audits, results, errors, header, kept_fields)


def _row_send(row: dict[str, str], line: int, tenant: str, region: str, registry: TemplateRegistry,
              templates: dict[tuple, dict[str, Any]], ledger: ConsentLedger) -> _Send:
    recipient = row.get("recipient", "")
    if not recipient:
        raise ValueError("recipient is empty")
    if not _NUMBER.fullmatch(recipient):
        raise ValueError(f"recipient {recipient!r} is not a phone number")
    try:
        parsed = phonenumbers.parse(recipient, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"recipient {recipient!r} is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"recipient {recipient!r} is not a possible phone number")
    row_tenant = row.get("tenant") or tenant
    variables = _variables(row.get("variables", ""))
    if row.get("template_id"):
        try:
            stored = registry.get(int(row["template_id"]))
        except ValueError:
            raise ValueError(f"template_id {row['template_id']!r} is not a number") from None
        if stored is None or stored["tenant"] != row_tenant:
            raise ValueError(f"no template {row['template_id']} registered for tenant {row_tenant!r}")
        template, declared, kinds, signature = stored["text"], stored["category"], stored["variables"], \
            stored["signature"]
    else:
        template = row.get("template", "")
        if not template:
            raise ValueError("template is empty")
        declared, kinds, signature = row.get("category") or None, {}, row.get("signature") or ""
    try:
        text = fill(template, variables)
    except KeyError as exc:
        raise ValueError(f"no value for variable {exc.args[0]!r} in variables") from None
    if not kinds:  # a template written in the file: variables are declared by the values given, as text
        kinds = {name: _guess_kind(name) for name, _, _ in template_variables(template)}
    key = (row_tenant, template, clean_signature(signature), declared)
    templates.setdefault(key, {"text": template, "signature": signature, "category": declared, "variables": kinds})
    send_at = to_utc(row["send_at"]) if row.get("send_at") else utcnow()
    zone = row.get("recipient_timezone") or None
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown recipient_timezone {zone!r}") from None
    notes = []
    if row.get("consent_ref"):
        notes.extend(_check_consent_ref(row["consent_ref"], row_tenant, recipient, ledger))
    message = Message(text=text, sender=row.get("sender", ""), recipient=recipient, time=send_at,
                      channel=Channel.FILE, tenant=row_tenant, external_id=f"row {line}")
    return _Send(line, message, key, zone, notes)


def _check_consent_ref(ref: str, tenant: str, recipient: str, ledger: ConsentLedger) -> list[str]:
    try:
        record = ledger.get(int(ref))
    except ValueError:
        return [f"consent_ref {ref!r} is not a record id"]
    if record is None or record.tenant != tenant or record.recipient != ledger.pseudonym(recipient):
        return [f"consent_ref {ref} is not a consent record of this recipient"]
    if record.status != "opt_in" or not record.current:
        return [f"consent_ref {ref} is no longer the recipient's current consent"]
    return []


def _run_sends(sends: list[_Send], policy: Policy, engine: Engine, ledger: ConsentLedger,
               registry: TemplateRegistry, index: dict[tuple, int]) -> list[SendResult]:
    detector = ComplianceDetector(policy, ledger, dry_run=True, templates=registry)
    detectors = [d for d in engine.detectors if getattr(d, "name", "") != "compliance"]
    if policy.section("detectors.compliance")["enabled"]:
        detectors.append(detector)
    dry = Engine(policy, engine.analyse, engine.model, detectors)
    ordered = sorted(sends, key=lambda s: (s.message.time, s.row))  # caps slide in time order
    results: list[SendResult] = []
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        extra = {RECIPIENT_ZONES: [s.zone for s in chunk], DECLARED_CATEGORIES: [s.template_key[3] for s in chunk]}
        messages = [s.message for s in chunk]
        verdicts = dry.check(messages, extra)
        later = detector.settle(BatchContext(messages, [], [], extra), verdicts)
        if later is not None:
            later()
        for send, verdict in zip(chunk, verdicts, strict=False):
            results.append(SendResult(
                send.row, mask(send.message.recipient), index[send.template_key], verdict.action.value,
                verdict.reasons(), [s.name for s in verdict.signals if s.points > 0], send.notes,
                [s.name for s in verdict.signals if s.points >= STRONG_POINTS]))
    results.sort(key=lambda r: r.row)
    return results
