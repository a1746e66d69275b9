"""The compliance detector: consent, opt-outs, do-not-disturb, quiet hours, frequency caps, templates.

Signals (weights in ``[signals]``): NO_CONSENT, OPTED_OUT, DND_LISTED, CONSENT_ON_RECORD (marketing
only), QUIET_HOURS, FREQUENCY_CAP, TEMPLATE_UNMATCHED / TEMPLATE_MATCHED. Each names its rule and
evidence: the consent record id, the local time and zone, the window, the count and the limit.

How caps count real sends: ``detect`` counts each message as a send in its windows at once (so two
messages of one batch see each other) and writes it to the ledger's send log, unless its own
signals already reach the ``block`` threshold; ``settle(ctx, verdicts)`` then un-counts the
messages whose final verdict is ``block``. An ingress (or the engine) calls
``settle`` after deciding; where nobody does, blocked messages stay counted, which errs on the side
of fewer sends. ``dry_run`` (used by the pre-audit) counts in memory only and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from skyshield.compliance.caps import CapHit, SlidingCounter, parse_rates
from skyshield.compliance.ledger import OPT_IN, OPT_OUT, SENDER_SCOPE, ConsentLedger, ConsentRecord, clean_signature
from skyshield.compliance.quiet_hours import QuietHours
from skyshield.engine import BatchContext
from skyshield.events import Action, Signal, Verdict
from skyshield.policy import Policy, PolicyError, parse_duration
from skyshield.shared_state import open_counter

log = logging.getLogger("skyshield.compliance")

RESERVATIONS = "compliance.reservations"
#: ``ctx.extra`` key: a list (one per message) of IANA zones given by the sender, or None.
RECIPIENT_ZONES = "compliance.recipient_zones"
#: ``ctx.extra`` key: a list (one per message) of the category the sender declared (campaign files), or None.
DECLARED_CATEGORIES = "compliance.declared_categories"

_RULE_NAMES = {"sig": "per signature and recipient", "platform": "per recipient, platform-wide"}


def _window_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class ComplianceDetector:
    name = "compliance"

    def __init__(self, policy: Policy, ledger: ConsentLedger | None = None, *, dry_run: bool = False,
                 templates: Any = None, settings: Any = None):
        conf = policy.section("detectors.compliance")
        self.policy = policy
        self.marketing = set(conf["marketing_categories"])
        self.promotion_probability = float(conf["promotion_probability"])
        consent = conf["consent"]
        if consent["missing"] not in {"refuse", "allow"}:
            raise PolicyError(f"detectors.compliance.consent.missing must be \"refuse\" or \"allow\", "
                              f"not {consent['missing']!r}")
        self.refuse_missing = consent["missing"] == "refuse"
        self.max_age = timedelta(seconds=parse_duration(consent["max_age"])) if consent["max_age"] else None
        quiet = conf["quiet_hours"]
        self.quiet = (QuietHours(quiet["allowed"], quiet["default_timezone"], conf["default_region"])
                      if quiet["enabled"] else None)
        self.quiet_categories = set(quiet["categories"])
        caps = conf["caps"]
        self.caps_enabled = bool(caps["enabled"])
        self.rates = {k: parse_rates(v) for k, v in caps.items() if k != "enabled"}
        self.platform_rates = {k: parse_rates(v) for k, v in conf["platform_caps"].items()}
        longest = [r.window_s for rates in (*self.rates.values(), *self.platform_rates.values()) for r in rates]
        self.longest_window = max(longest, default=0)
        self.template_categories = set(conf["templates"]["require_match_for"])
        self.dry_run = dry_run
        self.block_at = float(policy.section("actions").get("block", float("inf")))
        # [state] url: in this process, or shared by every worker (Redis); a dry run never touches shared state
        self.counter = SlidingCounter() if dry_run else open_counter(policy)
        self._ledger = ledger
        self._settings = settings  # where the ledger lives when none is given (default: load_settings())
        self._ephemeral = False  # True when the ledger is an in-memory stand-in (no database configured yet)
        self._templates = templates
        self._warm = dry_run  # a dry run starts from empty counters

    @property
    def ledger(self) -> ConsentLedger:
        """The ledger given, else the one in the configured database (``SKYSHIELD_DB``) once that exists.

        The database is created by whoever owns the process's state (the API and gateways open the verdict
        store at start; ``skyshield consent import`` creates it). An engine built without one, e.g. a script
        or a test calling ``build_engine``, gets an in-memory ledger instead of leaving files in the
        working folder, and says so in the log.
        """
        if self._ledger is None:
            from skyshield.config import load_settings

            settings = self._settings or load_settings()
            path = settings.sqlite_path if settings.db_url.startswith("sqlite:///") else None
            if path is not None and not path.exists():
                log.warning("consent ledger: %s does not exist yet; consent, opt-outs and send counts are kept in "
                            "memory for this engine only", path)
                self._ledger = ConsentLedger(":memory:", b"\0" * 32)
                self._ephemeral = True
            else:
                self._ledger = ConsentLedger.from_settings(settings)
        return self._ledger

    @property
    def templates(self) -> Any:
        if self._templates is None:
            from skyshield.compliance.templates import TemplateRegistry

            self._templates = TemplateRegistry(self.ledger, self.policy)
        return self._templates

    def _warm_up(self) -> None:
        """Load the sends of the longest window from the ledger, so caps survive a restart."""
        if self._warm:
            return
        self._warm = True
        if not self.longest_window:
            return
        since = datetime.now(UTC).timestamp() - self.longest_window
        # The send log also attributes replies to a signature, so it keeps at least 30 days.
        self.ledger.purge_sends(since - max(30 * 86400 - self.longest_window, 0))
        self.counter.warm((key, ts) for tenant, scope, _sender, pseudo, category, ts in self.ledger.recent_sends(since)
                          for key in self._keys(tenant, scope, pseudo, category))

    def _keys(self, tenant: str, scope: str, pseudo: str, category: str) -> list[tuple]:
        keys: list[tuple] = []
        if self.rates.get(category):
            keys.append(("sig", tenant, scope, pseudo, category))
        if self.platform_rates.get(category):
            keys.append(("platform", pseudo, category))
        return keys

    def is_marketing(self, category: str, probabilities: dict[str, float]) -> bool:
        return category in self.marketing or probabilities.get("promotion", 0.0) >= self.promotion_probability

    def detect(self, ctx: BatchContext) -> list[list[Signal]]:
        out: list[list[Signal]] = [[] for _ in ctx.messages]
        self._warm_up()
        zones = ctx.extra.get(RECIPIENT_ZONES) or [None] * len(ctx.messages)
        signatures = [clean_signature(a.entities.signature.text if a.entities.signature else "") for a in ctx.analyses]
        pseudonyms: dict[str, str] = {"": ""}  # one keyed hash per distinct recipient of the batch
        pseudos = [pseudonyms.get(m.recipient) or pseudonyms.setdefault(m.recipient, self.ledger.pseudonym(m.recipient))
                   for m in ctx.messages]
        matches = self._find_templates(ctx, signatures)
        declared = ctx.extra.get(DECLARED_CATEGORIES) or [None] * len(ctx.messages)
        # Marketing by the model, or by the sender's own word (declared, or the approved template it fills):
        # a declaration can only add obligations, never remove them.
        marketing = [bool(m.recipient) and (self.is_marketing(p.category, p.probabilities) or d in self.marketing
                                            or (t is not None and t.category in self.marketing))
                     for m, p, d, t in zip(ctx.messages, ctx.predictions, declared, matches, strict=False)]
        self._consent(ctx, signatures, pseudos, marketing, out)
        for i, (msg, pred) in enumerate(zip(ctx.messages, ctx.predictions, strict=False)):
            category = "promotion" if marketing[i] else pred.category
            if self.quiet and msg.recipient and category in self.quiet_categories:
                found = self.quiet.check(msg.time, msg.recipient, zones[i])
                if not found.allowed:
                    out[i].append(Signal("QUIET_HOURS", 1.0, {
                        "rule": "quiet_hours", "allowed": self.quiet.window, "local_time": found.local_time,
                        "zone": found.zone,
                        "why": f"{category} at {found.local_time} {found.zone}, outside {self.quiet.window} local",
                    }))
        if self.caps_enabled:
            self._caps(ctx, signatures, pseudos, marketing, out)
        self._template_signals(ctx, matches, marketing, out)
        return out

    def _consent(self, ctx: BatchContext, signatures: list[str], pseudos: list[str], marketing: list[bool],
                 out: list[list[Signal]]) -> None:
        wanted = [i for i, m in enumerate(marketing) if m]
        if not wanted:
            return
        dnd = self.ledger.dnd_listed([pseudos[i] for i in wanted])
        by_tenant: dict[str, list[int]] = {}
        for i in wanted:
            by_tenant.setdefault(ctx.messages[i].tenant, []).append(i)
        for tenant, indices in by_tenant.items():
            current = self.ledger.current(tenant, [pseudos[i] for i in indices])
            for i in indices:
                msg, sig, pseudo = ctx.messages[i], signatures[i], pseudos[i]
                if pseudo in dnd:
                    out[i].append(Signal("DND_LISTED", 1.0, {
                        "rule": "dnd", "why": "recipient is on the do-not-disturb list"}))
                scopes = ([sig] if sig else []) + ([SENDER_SCOPE + msg.sender] if msg.sender else [])
                found = [current[(pseudo, s)] for s in scopes if (pseudo, s) in current]
                latest = max(found, key=lambda r: (r.time, r.id), default=None)
                out[i].extend(self._consent_signals(latest, sig or msg.sender, msg.time))

    def _consent_signals(self, latest: ConsentRecord | None, who: str, when: datetime) -> list[Signal]:
        if latest is not None and latest.status == OPT_OUT:
            return [Signal("OPTED_OUT", 1.0, {
                "rule": "opt_out", "record": latest.id, "scope": latest.scope, "opted_out_at": latest.time.isoformat(),
                "keyword": latest.evidence.get("keyword", ""),
                "why": f"recipient opted out of {latest.scope} on {latest.time:%Y-%m-%d %H:%M} UTC "
                       f"(record {latest.id})",
            })]
        if latest is not None and latest.status == OPT_IN:
            if self.max_age is None or when - latest.time <= self.max_age:
                return [Signal("CONSENT_ON_RECORD", 1.0, {
                    "rule": "consent", "record": latest.id, "source": latest.source, "campaign": latest.campaign,
                    "given_at": latest.time.isoformat(),
                    "why": f"consent record {latest.id} ({latest.source}, {latest.time:%Y-%m-%d})"})]
            if self.refuse_missing:
                return [Signal("NO_CONSENT", 1.0, {
                    "rule": "consent", "record": latest.id, "given_at": latest.time.isoformat(),
                    "why": f"consent record {latest.id} for {who} is older than "
                           f"{_window_text(int(self.max_age.total_seconds()))}",
                })]
            return []
        if self.refuse_missing:
            return [Signal("NO_CONSENT", 1.0, {
                "rule": "consent",
                "why": f"no consent on record for {who or 'an unsigned sender'}: no clear consent counts as refusal",
            })]
        return []

    def _caps(self, ctx: BatchContext, signatures: list[str], pseudos: list[str], marketing: list[bool],
              out: list[list[Signal]]) -> None:
        reservations: dict[int, list[tuple]] = ctx.extra.setdefault(RESERVATIONS, {})
        weights = self.policy.data["signals"]
        rows = []
        checks: list[tuple] = []  # (key, t, rates, rule, add) in message order
        owners: list[tuple[int, str]] = []  # (message index, category) of each check
        for i, (msg, pred) in enumerate(zip(ctx.messages, ctx.predictions, strict=False)):
            if not msg.recipient:
                continue
            category = "promotion" if marketing[i] else pred.category
            scope = signatures[i] or (SENDER_SCOPE + msg.sender if msg.sender else "")
            keys = self._keys(msg.tenant, scope, pseudos[i], category)
            if not keys:
                continue
            t = msg.time.timestamp()
            # A send this detector already refuses (no consent, quiet hours...) will be blocked: do not count it,
            # so a later send in the same batch is not capped by it.
            doomed = sum(weights.get(s.name, 0.0) * s.score for s in out[i]) >= self.block_at
            for key in keys:
                rates = self.rates[category] if key[0] == "sig" else self.platform_rates[category]
                checks.append((key, t, rates, f"{category} {_RULE_NAMES[key[0]]}", not doomed))
                owners.append((i, category))
            if not doomed:
                row = (msg.tenant, scope, msg.sender, pseudos[i], category, t)
                reservations[i] = [keys, t, row]
                rows.append(row)
        # One call for the whole batch, in message order (a shared counter sends it in one round trip).
        hits_of: dict[int, tuple[str, list[CapHit]]] = {}
        for (i, category), hits in zip(owners, self.counter.check_and_add_many(checks), strict=True):
            hits_of.setdefault(i, (category, []))[1].extend(hits)
        for i, (category, hits) in hits_of.items():
            if hits:
                first = hits[0]
                out[i].append(Signal("FREQUENCY_CAP", 1.0, {
                    "rule": first.rule, "rate": first.rate, "window": _window_text(first.window_s),
                    "count": first.count, "limit": first.limit,
                    "why": f"{first.count} {category} sends already in the last {_window_text(first.window_s)} "
                           f"({first.rule}; limit {first.rate})",
                    "hits": [{"rule": h.rule, "rate": h.rate, "count": h.count} for h in hits],
                }))
        # The rows are written by settle(), once the verdicts say which sends really go out: one write
        # transaction per batch instead of an insert here and a delete of the blocked ones there.
        if self.longest_window and rows:
            newest = max(r[5] for r in rows)
            self.counter.prune(newest - self.longest_window - 86400)

    def _find_templates(self, ctx: BatchContext, signatures: list[str]) -> list[Any]:
        """The approved template each message fills in (None where none, or its tenant registered none)."""
        found: list[Any] = [None] * len(ctx.messages)
        if not self.template_categories:
            return found
        for i, msg in enumerate(ctx.messages):
            if self.templates.has_templates(msg.tenant):
                found[i] = self.templates.match(msg.tenant, ctx.analyses[i].original, signatures[i])
        return found

    def _template_signals(self, ctx: BatchContext, matches: list[Any], marketing: list[bool],
                          out: list[list[Signal]]) -> None:
        for i, (msg, pred) in enumerate(zip(ctx.messages, ctx.predictions, strict=False)):
            category = "promotion" if marketing[i] else pred.category
            if matches[i] is not None:
                out[i].append(Signal("TEMPLATE_MATCHED", 1.0, {"rule": "template", "template": matches[i].id,
                                                               "category": matches[i].category}))
            elif category in self.template_categories and self.templates.has_templates(msg.tenant):
                n = self.templates.count(msg.tenant)
                out[i].append(Signal("TEMPLATE_UNMATCHED", 1.0, {
                    "rule": "template", "checked": n, "why": f"matches none of the tenant's {n} approved templates"}))

    def settle(self, ctx: BatchContext, verdicts: Sequence[Verdict]) -> Callable[[], None] | None:
        """Un-count the sends of blocked messages; the others stay counted, and the returned call records them
        in the ledger's send log (which no decision reads: the counters are in memory or in Redis)."""
        reservations = ctx.extra.pop(RESERVATIONS, {})
        sent = []
        for i, (keys, t, row) in reservations.items():
            if verdicts[i].action == Action.BLOCK:
                for key in keys:
                    self.counter.remove(key, t)
            else:
                sent.append(row)
        if sent and not self.dry_run:
            return partial(self.ledger.record_sends, sent)
        return None
