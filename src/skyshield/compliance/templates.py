"""Template pre-audit and the registry of approved templates that live sends are matched against.

A template is the fixed text of a message with declared variables: ``${code}``, ``{name}`` or
``{{name}}``, each of a kind (code, number, amount, date, time, name, text). The audit says
``pass``, ``fix`` or ``reject`` with every finding; a registered template that passes is approved
and live sends that fill its variables match it (a send that matches none is TEMPLATE_UNMATCHED).
"""

from __future__ import annotations

import json
import re
import threading
import time as _time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyshield.compliance.ledger import ConsentLedger, clean_signature
from skyshield.policy import Policy
from skyshield.text.rules import fraud_phrase_pattern

PASS, FIX, REJECT = "pass", "fix", "reject"
_SEVERITY = {PASS: 0, FIX: 1, REJECT: 2}
CATEGORIES = {"verification", "notification", "promotion"}

VARIABLE = re.compile(r"\$\{\s*(\w+)\s*\}|\{\{\s*(\w+)\s*\}\}|\{\s*(\w+)\s*\}")
#: What a filled variable of each kind may look like (the length cap comes from the policy).
KIND_PATTERNS = {
    "code": r"[0-9A-Za-z]{4,8}",
    "number": r"[0-9][0-9,.]*",
    "amount": r"[¥￥$]?\s?[0-9][0-9,.]*\s?(?:元|万元|万|块|RMB|CNY|USD)?",
    "date": r"[0-9年月日号/.\- ]+",
    "time": r"[0-9:点分时 ]+",
    "name": r"[^\d\s:/<>{}【】\[\]]+(?: [^\d\s:/<>{}【】\[\]]+)?",
    "text": r"[^\n]+?",
}
#: Values used to fill variables before the text model reads a template.
SAMPLES = {"code": "482913", "number": "3", "amount": "100元", "date": "11月23日", "time": "10:00", "name": "张三",
           "text": "订单"}
_LINK_IN_VALUE = re.compile(r"(?i)https?://|www\.|\.(?:com|cn|net|top|xyz|cc|io|me)\b")
_LINK_AROUND = re.compile(r"(?i)(?:https?://|www\.)\S*$|[a-z0-9-]+\.(?:com|cn|net|top|xyz|cc|io|me)/\S*$")


def canonical(text: str) -> str:
    """The form templates and sends are compared in: NFKC (full width to half), whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


@dataclass(slots=True)
class Finding:
    code: str
    severity: str  # fix | reject
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TemplateAudit:
    outcome: str
    findings: list[Finding]
    category: str
    declared_category: str | None
    signature: str
    variables: dict[str, str]
    probabilities: dict[str, float] = field(default_factory=dict)
    text: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        return data


def template_variables(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each variable placeholder in a template."""
    return [(next(g for g in m.groups() if g), m.start(), m.end()) for m in VARIABLE.finditer(text)]


def fill(text: str, values: dict[str, str]) -> str:
    """Put values into a template's placeholders; a missing value raises KeyError naming it."""
    def put(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(name)
        return str(values[name])
    return VARIABLE.sub(put, text)


def sample_text(text: str, variables: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: SAMPLES.get(variables.get(next(g for g in m.groups() if g), "text"), "订单"), text)


class Auditor:
    """Audits templates with the text side of an engine (its analyser and model) and the policy's rules."""

    def __init__(self, policy: Policy, analyse: Any, model: Any):
        self.policy = policy
        self.analyse = analyse
        self.model = model
        conf = policy.section("detectors.compliance.templates")
        self.variable_kinds = set(conf["variable_kinds"])
        self.promotion_kinds = set(conf["promotion_variable_kinds"])
        self.reject_p = float(conf["reject_probability"])
        self.review_p = float(conf["review_probability"])
        self.banned = [(b["name"], [t.lower() for t in b["terms"]]) for b in conf["banned_industries"]]
        self.short_domains = set(policy.section("detectors.structure")["short_link_domains"])
        self.fraud_phrases = fraud_phrase_pattern(policy.section("detectors.structure")["fraud_phrases"])

    def audit(self, items: Sequence[dict[str, Any]]) -> list[TemplateAudit]:
        """Audit templates given as ``{"text", "signature"?, "category"?, "variables"?: {name: kind}}``."""
        texts = [sample_text(it["text"], it.get("variables") or {}) for it in items]
        analyses = self.analyse(texts) if texts else []
        predictions = self.model.predict(analyses) if texts else []
        return [self._one(it, a, p) for it, a, p in zip(items, analyses, predictions, strict=False)]

    def _one(self, item: dict[str, Any], analysis: Any, prediction: Any) -> TemplateAudit:
        text: str = item["text"]
        declared = item.get("category") or None
        variables: dict[str, str] = dict(item.get("variables") or {})
        ent = analysis.entities
        findings: list[Finding] = []
        written_sig = clean_signature(ent.signature.text) if ent.signature else ""
        signature = clean_signature(item.get("signature") or "") or written_sig
        if declared and declared not in CATEGORIES:
            findings.append(Finding("UNKNOWN_CATEGORY", FIX, f"category {declared!r} is not one of "
                                    f"{', '.join(sorted(CATEGORIES))}", {"category": declared}))
            declared = None
        probs = dict(prediction.probabilities)
        category = declared or prediction.category
        if not written_sig:
            findings.append(Finding("MISSING_SIGNATURE", FIX, "no 【signature】 naming the sender in the text"))
        elif item.get("signature") and clean_signature(item["signature"]) != written_sig:
            findings.append(Finding("SIGNATURE_MISMATCH", FIX, f"text is signed 【{written_sig}】 but the "
                                    f"template is filed under {item['signature']!r}", {"written": written_sig}))
        is_promo = category == "promotion" or probs.get("promotion", 0.0) >= 0.5
        if is_promo and ent.opt_out is None:
            findings.append(Finding("MISSING_OPT_OUT", FIX, "promotion without opt-out text (回T退订, reply STOP)"))
        if declared in {"verification", "notification"} and probs.get("promotion", 0.0) >= 0.5:
            findings.append(Finding("CATEGORY_MISMATCH", FIX, f"filed as {declared} but reads as promotion "
                                    f"(p={probs['promotion']:.2f})", {"promotion": round(probs["promotion"], 3)}))
        short = sorted({d for d in ent.link_domains if d in self.short_domains})
        if short:
            findings.append(Finding("SHORT_LINK", FIX, "short link hides where it goes: use the full domain",
                                    {"links": short}))
        if ent.ip_links:
            findings.append(Finding("IP_LINK", REJECT, "link to a bare IP address",
                                    {"links": [s.text for s in ent.ip_links]}))
        is_code = category == "verification" or "code" in variables.values()
        if is_code and ent.links:
            findings.append(Finding("LINK_IN_CODE_TEMPLATE", REJECT, "one-time-code template with a link",
                                    {"links": [s.text for s in ent.links]}))
        phrases = sorted(set(self.fraud_phrases.findall(analysis.normalised))) if self.fraud_phrases else []
        if phrases:
            findings.append(Finding("FRAUD_PHRASE", REJECT, "uses a phrase only fraud scripts use",
                                    {"matched": phrases}))
        for cat in ("fraud", "illicit"):
            p = probs.get(cat, 0.0)
            if p >= self.review_p:
                severity = REJECT if p >= self.reject_p else FIX
                terms = [t for t, _ in prediction.top_terms[:5]]
                findings.append(Finding(f"{cat.upper()}_LIKE", severity, f"reads like {cat} (p={p:.2f})",
                                        {"probability": round(p, 3), "terms": terms, "subtype": prediction.subtype}))
        lowered = canonical(text).lower()
        for name, terms in self.banned:
            hit = [t for t in terms if t in lowered]
            if hit:
                findings.append(Finding("BANNED_INDUSTRY", REJECT, f"the platform carries no {name} marketing",
                                        {"industry": name, "matched": hit}))
        findings.extend(self._variable_findings(text, variables, category))
        outcome = max((f.severity for f in findings), key=_SEVERITY.__getitem__, default=PASS)
        return TemplateAudit(outcome, findings, category, declared, signature, variables, probs, text)

    def _variable_findings(self, text: str, variables: dict[str, str], category: str) -> list[Finding]:
        findings = []
        used = template_variables(text)
        for name, start, _ in used:
            kind = variables.get(name)
            if kind is None:
                findings.append(Finding("VARIABLE_UNDECLARED", FIX, f"variable {name!r} is not declared with a kind",
                                        {"variable": name}))
            elif kind not in self.variable_kinds:
                findings.append(Finding("VARIABLE_KIND_UNKNOWN", FIX, f"variable {name!r} has unknown kind {kind!r}",
                                        {"variable": name, "kinds": sorted(self.variable_kinds)}))
            elif category == "promotion" and kind not in self.promotion_kinds:
                findings.append(Finding("VARIABLE_NOT_ALLOWED", FIX, f"a promotion may not vary {kind!r} "
                                        f"({name}); allowed: {', '.join(sorted(self.promotion_kinds))}",
                                        {"variable": name, "kind": kind}))
            if _LINK_AROUND.search(text[:start]):
                findings.append(Finding("VARIABLE_IN_LINK", REJECT, f"variable {name!r} is part of a link: the "
                                        "link target must be fixed when the template is approved", {"variable": name}))
        fixed = canonical(VARIABLE.sub("", text))
        fixed = re.sub(r"【[^】]*】|\[[^\]]*\]", "", fixed)
        if used and len(re.sub(r"\W", "", fixed)) < 6:
            findings.append(Finding("TEMPLATE_TOO_OPEN", REJECT, "almost all of the text is variables",
                                    {"fixed_chars": len(fixed)}))
        for name in sorted(set(variables) - {n for n, _, _ in used}):
            findings.append(Finding("VARIABLE_UNUSED", FIX, f"declared variable {name!r} is not in the text",
                                    {"variable": name}))
        return findings


@dataclass(slots=True)
class ApprovedTemplate:
    id: int
    tenant: str
    signature: str
    category: str
    text: str
    variables: dict[str, str]
    pattern: re.Pattern[str]


def _literal(text: str) -> str:
    return r"\s?".join(re.escape(part) for part in text.split(" "))


def compile_template(text: str, variables: dict[str, str]) -> re.Pattern[str]:
    """A regex that matches the template with its variables filled (each as its kind allows)."""
    parts, last = [], 0
    text = canonical(text)
    seen: set[str] = set()
    for m in VARIABLE.finditer(text):
        name = next(g for g in m.groups() if g)
        parts.append(_literal(text[last:m.start()]))
        body = KIND_PATTERNS.get(variables.get(name, "text"), KIND_PATTERNS["text"])
        value = f"(?P={name})" if name in seen else f"(?P<{name}>{body})"  # a repeat must repeat the value
        parts.append(rf"\s?{value}\s?")  # senders often pad a filled value with spaces
        seen.add(name)
        last = m.end()
    parts.append(_literal(text[last:]))
    return re.compile("".join(parts))


class TemplateRegistry:
    """Approved templates per tenant, stored in the ledger's database and kept compiled in memory."""

    def __init__(self, ledger: ConsentLedger, policy: Policy):
        self.ledger = ledger
        self.max_chars = int(policy.section("detectors.compliance.templates")["max_variable_chars"])
        self._lock = threading.Lock()
        self._by_tenant: dict[str, list[ApprovedTemplate]] | None = None

    def _load(self) -> dict[str, list[ApprovedTemplate]]:
        with self._lock:
            if self._by_tenant is None:
                loaded: dict[str, list[ApprovedTemplate]] = {}
                rows = self.ledger.db.rows(
                    "SELECT id, tenant, signature, category, text, variables FROM compliance_templates "
                    "WHERE outcome = 'pass' ORDER BY id")
                for row in rows:
                    variables = json.loads(row["variables"])
                    loaded.setdefault(row["tenant"], []).append(ApprovedTemplate(
                        row["id"], row["tenant"], row["signature"], row["category"], row["text"], variables,
                        compile_template(row["text"], variables)))
                self._by_tenant = loaded
            return self._by_tenant

    def register(self, tenant: str, audit: TemplateAudit) -> int:
        """File an audited template; only one whose outcome is ``pass`` is approved for matching."""
        row_id = self.ledger.db.insert(
            "INSERT INTO compliance_templates (tenant, signature, category, text, variables, outcome, findings,"
            " created_ts) VALUES (?,?,?,?,?,?,?,?)",
            (tenant, audit.signature, audit.category, audit.text, json.dumps(audit.variables, ensure_ascii=False),
             audit.outcome, json.dumps([asdict(f) for f in audit.findings], ensure_ascii=False), _time.time()),
        )
        with self._lock:
            self._by_tenant = None
        audit.id = int(row_id)
        return audit.id

    def get(self, template_id: int) -> dict[str, Any] | None:
        if not -(2**63) <= template_id < 2**63:
            return None
        data = self.ledger.db.one("SELECT * FROM compliance_templates WHERE id=?", (template_id,))
        if data is None:
            return None
        data["variables"] = json.loads(data["variables"])
        data["findings"] = json.loads(data["findings"])
        return data

    def has_templates(self, tenant: str) -> bool:
        return bool(self._load().get(tenant))

    def count(self, tenant: str) -> int:
        return len(self._load().get(tenant, []))

    def match(self, tenant: str, text: str, signature: str = "") -> ApprovedTemplate | None:
        """The approved template this send fills in, or None. Templates of the send's signature are tried first."""
        text = canonical(text)
        candidates = self._load().get(tenant, [])
        if signature:
            candidates = sorted(candidates, key=lambda t: t.signature != signature)
        for template in candidates:
            m = template.pattern.fullmatch(text)
            if m and all(len(v) <= self.max_chars and not _LINK_IN_VALUE.search(v) for v in m.groupdict().values()):
                return template
        return None
