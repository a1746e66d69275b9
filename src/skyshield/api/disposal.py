"""After-sending routes: reports and complaints, campaigns, blocks and appeals, review queue, regulator reports.

- ``POST /v1/reports``                 a report by API (reporter, sender, text, time, verdict_id / message_id)
- ``POST /v1/reports:sms``             one SMS sent to a report number (7726 two-step, 12321 ``号码*内容``)
- ``GET  /v1/reports``                 recent reports
- ``GET  /v1/campaigns[/{id}]``        near-duplicate waves across senders
- ``POST /v1/blocks``, ``GET /v1/blocks[/{id}]``, ``POST /v1/blocks/{id}:lift``
- ``POST /v1/blocks/{id}/appeals``, ``POST /v1/appeals/{id}:decide``
- ``GET  /v1/review``, ``POST /v1/review/{id}:label``
- ``GET  /v1/regulator-report?tenant=&from=&to=&format=csv|html|json``
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from skyshield.api.deps import get_state
from skyshield.api.errors import ApiError, json_response
from skyshield.disposal.blocks import KINDS, BlockError
from skyshield.disposal.reports import ReportError
from skyshield.disposal.review import ReviewError
from skyshield.disposal.service import Disposal
from skyshield.security.api import effective_tenant, may_see

router = APIRouter(tags=["disposal"])
_OPEN_LOCK = threading.Lock()


def get_disposal(request: Request) -> Disposal:
    app = request.app
    found = getattr(app.state, "disposal", None)
    if found is None:
        with _OPEN_LOCK:
            found = getattr(app.state, "disposal", None)
            if found is None:
                state = get_state(request)
                found = Disposal(state.store, state.settings.hmac_key(), state.policy)
                app.state.disposal = found
    return found


DisposalDep = Annotated[Disposal, Depends(get_disposal)]


def blocks_changed(request: Request) -> None:
    """Blocks take effect in this process's engine at once (other processes within ``refresh``)."""
    for detector in get_state(request).engine.detectors:
        if getattr(detector, "name", "") == "blocklist":
            detector.invalidate()


def _refusal(exc: Exception) -> ApiError:
    code = {"ReportError": "invalid_report", "BlockError": "invalid_block", "ReviewError": "invalid_label"}
    return ApiError(422, code.get(type(exc).__name__, "invalid_request"), str(exc))


# ---------------------------------------------------------------------------------------- reports


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reporter: StrictStr = Field(min_length=1, max_length=64, description="The reporting person's number.")
    sender: StrictStr = Field(min_length=1, max_length=64, description="The number the message came from.")
    text: StrictStr = Field(min_length=1, max_length=2000, description="The reported message as received.")
    time: datetime | None = Field(None, description="When it was received (ISO 8601); default now.")
    tenant: StrictStr = Field("default", min_length=1, max_length=64)
    verdict_id: StrictInt | None = Field(None, description="The stored verdict, when the reporter's app knows it.")
    message_id: StrictStr | None = Field(None, max_length=128, description="The sender's message id, when known.")


class SmsReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    sender: StrictStr = Field(alias="from", min_length=1, max_length=64, description="The reporting person's number.")
    to: StrictStr = Field(min_length=1, max_length=32, description="The report number it was sent to (7726, 12321).")
    text: StrictStr = Field(max_length=2000)
    time: datetime | None = None
    tenant: StrictStr = Field("default", min_length=1, max_length=64)


@router.post("/v1/reports", status_code=201)
async def post_report(body: ReportIn, disposal: DisposalDep, request: Request) -> Response:
    tenant = effective_tenant(request, body.tenant)  # a tenant's key files reports for its own tenant only

    def run() -> dict:
        disposal.refresh()  # so the reported verdict already has its campaign
        return disposal.reports.submit(reporter=body.reporter, sender=body.sender, text=body.text, time=body.time,
                                       tenant=tenant, verdict_id=body.verdict_id, message_id=body.message_id)
    try:
        return json_response(await run_in_threadpool(run), 201)
    except ReportError as exc:
        raise _refusal(exc) from None


@router.post("/v1/reports:sms")
async def post_sms_report(body: SmsReportIn, disposal: DisposalDep, request: Request) -> Response:
    tenant = effective_tenant(request, body.tenant)

    def run() -> dict:
        disposal.refresh()
        return disposal.reports.sms(reporter=body.sender, to=body.to, text=body.text, time=body.time,
                                    tenant=tenant, numbers_7726=disposal.numbers_7726,
                                    numbers_12321=disposal.numbers_12321).to_dict()
    try:
        return json_response(await run_in_threadpool(run))
    except ReportError as exc:
        raise _refusal(exc) from None


@router.get("/v1/reports")
async def list_reports(disposal: DisposalDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    return json_response({"reports": disposal.reports.list(limit=limit)})


# -------------------------------------------------------------------------------------- campaigns


@router.get("/v1/campaigns")
async def list_campaigns(disposal: DisposalDep, min_size: Annotated[int, Query(ge=1)] = 2,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
    def run() -> dict:
        disposal.refresh()
        return {"campaigns": disposal.campaigns.top(min_size=min_size, limit=limit)}
    return json_response(await run_in_threadpool(run))


@router.get("/v1/campaigns/{campaign_id}")
async def get_campaign(campaign_id: int, disposal: DisposalDep) -> Response:
    disposal.refresh()
    found = disposal.campaigns.get(campaign_id)
    if found is None:
        raise ApiError(404, "not_found", f"no campaign {campaign_id}")
    return json_response(found)


# ----------------------------------------------------------------------------------------- blocks


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["number", "signature", "template", "link_domain", "campaign"] = Field(
        description=f"What is blocked: {', '.join(KINDS)}.")
    value: StrictStr = Field(min_length=1, max_length=2000,
                             description="The number, 【signature】, template text, domain or campaign id.")
    reason: StrictStr = Field(min_length=1, max_length=1000)
    decided_by: StrictStr = Field(min_length=1, max_length=64)
    tenant: StrictStr = Field("", max_length=64, description="Only this tenant's traffic; empty for all.")
    expires: StrictStr | None = Field(None, max_length=64, description="A duration (30d) or ISO time; none: never.")
    evidence: dict = Field(default_factory=dict, description="Report ids, verdict ids, notes.")


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: StrictStr = Field(min_length=1, max_length=64)
    note: StrictStr = Field(min_length=1, max_length=1000)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    appellant: StrictStr = Field(min_length=1, max_length=128)
    statement: StrictStr = Field(min_length=1, max_length=4000)


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["keep", "lift"]
    actor: StrictStr = Field(min_length=1, max_length=64)
    note: StrictStr = Field(min_length=1, max_length=1000)


@router.post("/v1/blocks", status_code=201)
async def create_block(body: BlockIn, request: Request, disposal: DisposalDep) -> Response:
    try:
        if body.kind == "campaign":
            disposal.refresh()
        block = disposal.blocks.create(body.kind, body.value, reason=body.reason, decided_by=body.decided_by,
                                       tenant=body.tenant, expires=body.expires, evidence=body.evidence)
    except (BlockError, ValueError) as exc:
        raise _refusal(exc) from None
    blocks_changed(request)
    return json_response(block, 201)


@router.get("/v1/blocks")
async def list_blocks(disposal: DisposalDep, active: bool = False) -> Response:
    return json_response({"blocks": disposal.blocks.list(active_only=active)})


@router.get("/v1/blocks/{block_id}")
async def get_block(block_id: int, disposal: DisposalDep) -> Response:
    block = disposal.blocks.get(block_id)
    if block is None:
        raise ApiError(404, "not_found", f"no block {block_id}")
    return json_response(block)


@router.post("/v1/blocks/{block_id}:lift")
async def lift_block(block_id: int, body: LiftIn, request: Request, disposal: DisposalDep) -> Response:
    try:
        block = disposal.blocks.lift(block_id, actor=body.actor, note=body.note)
    except BlockError as exc:
        raise _refusal(exc) from None
    blocks_changed(request)
    return json_response(block)


@router.post("/v1/blocks/{block_id}/appeals", status_code=201)
async def appeal_block(block_id: int, body: AppealIn, disposal: DisposalDep) -> Response:
    try:
        return json_response(disposal.blocks.appeal(block_id, appellant=body.appellant, statement=body.statement),
                             201)
    except BlockError as exc:
        raise _refusal(exc) from None


@router.post("/v1/appeals/{appeal_id}:decide")
async def decide_appeal(appeal_id: int, body: DecideIn, request: Request, disposal: DisposalDep) -> Response:
    try:
        block = disposal.blocks.decide_appeal(appeal_id, decision=body.decision, actor=body.actor, note=body.note)
    except BlockError as exc:
        raise _refusal(exc) from None
    blocks_changed(request)
    return json_response(block)


# ----------------------------------------------------------------------------------------- review


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: StrictStr = Field(min_length=1, max_length=64, description="A category, or fraud/<subtype>.")
    reviewer: StrictStr = Field(min_length=1, max_length=64)


@router.get("/v1/review")
async def review_queue(disposal: DisposalDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
    def run() -> dict:
        disposal.refresh()
        return {"items": disposal.review.open_items(limit=limit), "counts": disposal.review.counts()}
    return json_response(await run_in_threadpool(run))


@router.post("/v1/review/{item_id}:label")
async def label_item(item_id: int, body: LabelIn, disposal: DisposalDep) -> Response:
    try:
        return json_response(disposal.review.label(item_id, body.label, reviewer=body.reviewer))
    except ReviewError as exc:
        raise _refusal(exc) from None


# -------------------------------------------------------------------------------------- regulator


@router.get("/v1/regulator-report")
async def regulator_report(
    disposal: DisposalDep,
    tenant: Annotated[str, Query(min_length=1)],
    start: Annotated[datetime, Query(alias="from")],
    end: Annotated[datetime, Query(alias="to")],
    request: Request,
    format: Literal["csv", "html", "json"] = "csv",
) -> Response:
    from skyshield.disposal import regulator
    from skyshield.disposal.schema import parse_time

    if not may_see(request, tenant):
        raise ApiError(404, "not_found", f"no report for tenant {tenant!r} under this key")

    try:
        report = regulator.build(disposal.db, tenant, parse_time(start), parse_time(end))
    except ValueError as exc:
        raise ApiError(422, "invalid_period", str(exc)) from None
    if format == "csv":
        return Response(regulator.to_csv(report), media_type="text/csv; charset=utf-8")
    if format == "html":
        return Response(regulator.to_html(report), media_type="text/html; charset=utf-8")
    data = asdict(report)
    return json_response(data)
