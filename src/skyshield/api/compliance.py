"""Compliance routes: template pre-audit and registration, consent records, opt-out replies, export.

- ``POST /v1/templates:audit``  JSON templates → pass / fix / reject with findings; a ``text/csv`` body is
  a whole campaign file (one row per send, see docs/compliance.md) and gets the campaign report.
- ``POST /v1/templates``        audit and register a template; approved (``pass``) ones are matched live.
- ``POST /v1/consents``         record opt-ins (with evidence) and opt-outs.
- ``GET  /v1/consents``         export every record with its evidence (``format=csv|jsonl``).
- ``POST /v1/replies``          a recipient's reply (MO): an opt-out is recorded, the confirmation returned.
"""

from __future__ import annotations

import io
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from skyshield.api.deps import ApiState, get_state
from skyshield.api.errors import ApiError, json_response
from skyshield.compliance.ledger import ConsentError, ConsentLedger
from skyshield.compliance.templates import Auditor, TemplateRegistry
from skyshield.security.api import effective_tenant

router = APIRouter(tags=["compliance"])
StateDep = Annotated[ApiState, Depends(get_state)]
_lock = threading.Lock()


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, description="template text; variables as ${code} or {name}")
    signature: str = Field("", max_length=40, description="signature the template is filed under")
    category: Literal["verification", "notification", "promotion"] | None = None
    variables: dict[str, str] = Field(default_factory=dict, description="variable name → kind (code, name, ...)")


class AuditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates: list[TemplateIn] = Field(min_length=1, max_length=1000)


class RegisterRequest(TemplateIn):
    tenant: str = "default"


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipient: str = Field(min_length=1, max_length=32)
    signature: str = Field(min_length=1, max_length=40)
    status: Literal["opt_in", "opt_out"] = "opt_in"
    source: str = Field("", max_length=200, description="where consent was given: web form URL, shop, app screen")
    disclosure: str = Field("", max_length=2000, description="the text the recipient agreed to")
    time: str | None = Field(None, description="when (ISO 8601); default now")
    campaign: str = ""
    tenant: str = "default"
    evidence: dict[str, Any] = Field(default_factory=dict)


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[ConsentIn] = Field(min_length=1, max_length=10000)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    text: str = Field(max_length=2000)
    from_: str = Field(alias="from", min_length=1, max_length=32, description="the recipient's number")
    to: str = Field(min_length=1, max_length=32, description="the sending number / short code replied to")
    signature: str | None = None
    tenant: str = "default"
    time: str | None = None


def ledger_for(state: ApiState) -> ConsentLedger:
    """One ledger per app, on the app's database; the engine's compliance detector is pointed at it too."""
    with _lock:
        ledger = getattr(state, "_compliance_ledger", None)
        if ledger is None:
            detector = next((d for d in state.engine.detectors if getattr(d, "name", "") == "compliance"), None)
            if detector is not None and detector._ledger is not None and not detector._ephemeral:
                ledger = detector._ledger
            else:
                ledger = ConsentLedger.from_settings(state.settings)
                if detector is not None:
                    detector._ledger, detector._ephemeral = ledger, False
                    detector._templates = None  # re-read approved templates from the app's database
            state._compliance_ledger = ledger  # type: ignore[attr-defined]
        return ledger


_AUDIT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["templates"], "additionalProperties": False,
            "properties": {"templates": {"type": "array", "minItems": 1, "maxItems": 1000,
                                         "items": TemplateIn.model_json_schema()}}}},
        "text/csv": {"schema": {"type": "string", "description": "a campaign file, one row per send: recipient, "
                                "template or template_id, variables, send_at, ... (see docs/compliance.md)"}},
    },
}


@router.post("/v1/templates:audit", summary="Pre-audit templates (JSON) or a campaign file (text/csv)",
             openapi_extra={"requestBody": _AUDIT_BODY})
async def audit_templates(request: Request, state: StateDep, tenant: str = "default") -> Response:
    tenant = effective_tenant(request, tenant) or "default"
    body = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
        from skyshield.compliance.campaign import CampaignFileError, audit_campaign

        def run() -> Any:
            return audit_campaign(body, policy=state.policy, engine=state.engine, ledger=ledger_for(state),
                                  source="request", tenant=tenant)
        try:
            report = await run_in_threadpool(run)
        except CampaignFileError as exc:
            raise ApiError(422, "invalid_campaign", str(exc)) from None
        return json_response(report.to_dict())
    try:
        req = AuditRequest.model_validate_json(body)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", _first_error(exc)) from None
    audits = await run_in_threadpool(
        Auditor(state.policy, state.engine.analyse, state.engine.model).audit, [t.model_dump() for t in req.templates])
    worst = max((a.outcome for a in audits), key=["pass", "fix", "reject"].index)
    return json_response({"outcome": worst, "templates": [a.to_dict() for a in audits]})


@router.post("/v1/templates", summary="Audit and register a template; it is approved when the audit passes")
def register_template(req: RegisterRequest, state: StateDep, request: Request) -> Response:
    tenant = effective_tenant(request, req.tenant) or req.tenant
    item = req.model_dump(exclude={"tenant"})
    audit = Auditor(state.policy, state.engine.analyse, state.engine.model).audit([item])[0]
    ledger = ledger_for(state)
    registry = _registry(state, ledger)
    template_id = registry.register(tenant, audit)
    return json_response({"id": template_id, "approved": audit.outcome == "pass", "audit": audit.to_dict()},
                         status=201)


def _registry(state: ApiState, ledger: ConsentLedger) -> TemplateRegistry:
    detector = next((d for d in state.engine.detectors if getattr(d, "name", "") == "compliance"), None)
    if detector is not None:
        return detector.templates  # the live matcher, so a new template is used at once
    return TemplateRegistry(ledger, state.policy)


@router.post("/v1/consents", summary="Record opt-ins (with their evidence) and opt-outs")
def record_consents(req: ConsentRequest, state: StateDep, request: Request) -> Response:
    ledger = ledger_for(state)
    results: list[dict[str, Any]] = []
    failed = False
    for n, rec in enumerate(req.records):
        rec.tenant = effective_tenant(request, rec.tenant) or rec.tenant
        try:
            if rec.status == "opt_in":
                record = ledger.record_opt_in(rec.tenant, rec.signature, rec.recipient, source=rec.source,
                                              disclosure=rec.disclosure, time=rec.time, campaign=rec.campaign,
                                              evidence=rec.evidence)
            else:
                record, _ = ledger.record_opt_out(rec.tenant, rec.signature, rec.recipient,
                                                  source=rec.source or "api", time=rec.time, evidence=rec.evidence)
            results.append({"index": n, "record": record.to_dict()})
        except (ConsentError, ValueError) as exc:
            failed = True
            results.append({"index": n, "error": {"code": "consent_refused", "message": str(exc)}})
    return json_response({"results": results}, status=422 if failed else 201)


@router.get("/v1/consents", summary="Export consent records with their evidence (CSV or JSONL)")
def export_consents(request: Request, state: StateDep, format: Literal["csv", "jsonl"] = "csv",
                    tenant: Annotated[str | None, Query()] = None) -> Response:
    tenant = effective_tenant(request, tenant)
    out = io.StringIO()
    ledger_for(state).export(out, format, tenant)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return Response(out.getvalue().encode("utf-8"), media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="consents.{format}"'})


@router.post("/v1/replies", summary="A recipient's reply: record an opt-out, return the one confirmation")
def handle_reply_route(req: ReplyIn, state: StateDep, request: Request) -> Response:
    from skyshield.compliance.optout import handle_reply

    req.tenant = effective_tenant(request, req.tenant) or req.tenant

    try:
        outcome = handle_reply(ledger_for(state), state.policy, text=req.text, recipient=req.from_, sender=req.to,
                               tenant=req.tenant, signature=req.signature, time=req.time)
    except (ConsentError, ValueError) as exc:
        raise ApiError(422, "invalid_reply", str(exc)) from None
    return json_response(outcome.to_dict())


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
