"""Behaviour routes: screen call attempts, read and block a number's profile.

- ``POST /v1/calls:check``            call attempts → verdicts (allow / suspect / block with reasons)
- ``GET  /v1/numbers/{number}``       what the engine knows: features, fraud probability and reasons, lists
- ``POST /v1/numbers/{number}:block`` block a number; fresh numbers that share its callees/device inherit it
- ``POST /v1/numbers/{number}:unblock`` lift the block (appeal upheld, or a false positive)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from skyshield.api.core import save_verdicts
from skyshield.api.deps import ApiState, get_state
from skyshield.api.errors import ApiError, json_response
from skyshield.behaviour.calls import CallScreener, call_decision, epoch
from skyshield.behaviour.service import shared_service
from skyshield.events import Call, utcnow
from skyshield.explain import verdict_summary
from skyshield.gateway.recording import call_message
from skyshield.security.api import effective_tenant

router = APIRouter(tags=["calls"])
StateDep = Annotated[ApiState, Depends(get_state)]


class CallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caller: StrictStr = Field(min_length=1, max_length=64, description="Calling number as presented.")
    callee: StrictStr = Field(min_length=1, max_length=64, description="Called number.")
    start: datetime | None = Field(None, description="Call set-up time (ISO 8601); default now.")
    duration: float = Field(0.0, ge=0, description="Seconds, when screening a finished call record.")
    answered: bool = False
    cell: StrictStr | None = Field(None, max_length=64, description="Cell / area id of the caller.")
    device: StrictStr | None = Field(None, max_length=64, description="Device id (IMEI hash) of the caller.")
    tenant: StrictStr = Field("default", min_length=1, max_length=64)
    id: StrictStr | None = Field(None, max_length=128, description="Your id for the call, echoed back.")


class CallCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calls: list[CallIn] = Field(min_length=1, max_length=10_000)


class BlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr = Field(min_length=1, max_length=500)


def _screen(state: ApiState, calls: list[CallIn]) -> list[dict[str, Any]]:
    screener = CallScreener(state.policy)
    screened = []
    for c in calls:
        call = Call(c.caller, c.callee, c.start or utcnow(), c.duration, c.answered, c.tenant)
        screened.append((call_message(call, c.id), screener.screen(call, c.cell, c.device)))
    # Recorded like the SIP proxy's decisions (channel "call"), so `why`, the console and reports find them.
    failsafe = save_verdicts(state, screened)
    results = []
    for index, (c, (_, verdict)) in enumerate(zip(calls, screened, strict=True)):
        results.append({"index": index, "call_id": c.id, "decision": call_decision(verdict),
                        **verdict_summary(verdict)})
        if failsafe:
            results[-1]["failsafe"] = failsafe
    return results


@router.post("/v1/calls:check", summary="Screen call attempts",
             description="Each call updates the caller's behaviour profile and gets a verdict like a message: "
                         "`action` (deliver/tag/fold/hold/block), `decision` (allow/suspect/block for a switch), "
                         "score, reasons and the signals with their evidence.")
async def check_calls(body: CallCheckRequest, state: StateDep, request: Request) -> Response:
    for c in body.calls:  # a tenant's key screens that tenant's calls
        c.tenant = effective_tenant(request, c.tenant) or c.tenant
    results = await run_in_threadpool(_screen, state, body.calls)
    svc = shared_service(state.policy)
    return json_response({"results": results, "checked": len(results),
                          "model_version": getattr(svc.model, "version", "behaviour-rules")})


@router.get("/v1/numbers/{number}", summary="A number's behaviour profile",
            description="Window features (1h/24h/7d), the fraud-number model's probability with the features "
                        "that pushed it, reputation lists, block status, rotation link and SIM-box evidence.")
def number_profile(number: str, state: StateDep) -> Response:
    if not number.strip() or len(number) > 64:
        raise ApiError(422, "invalid_number", "number must be 1 to 64 characters")
    svc = shared_service(state.policy)
    with svc.lock:
        return json_response(svc.profile(number))


@router.post("/v1/numbers/{number}:block", summary="Block a number",
             description="Blocks the number in the behaviour engine (BLOCKED_NUMBER on its traffic); fresh numbers "
                         "that call the same people or use the same device get ROTATED_NUMBER.")
def block_number(number: str, body: BlockRequest, state: StateDep) -> Response:
    svc = shared_service(state.policy)
    with svc.lock:
        svc.block(number.strip(), body.reason, epoch(utcnow(), svc.timezone))
        return json_response({"number": number.strip(), "blocked": svc.rotation.blocked[number.strip()]})


@router.post("/v1/numbers/{number}:unblock", summary="Lift a number's block",
             description="Removes the block (automatic or by an operator) and its evidence for rotation links.")
def unblock_number(number: str, state: StateDep) -> Response:
    svc = shared_service(state.policy)
    with svc.lock:
        if not svc.unblock(number.strip()):
            raise ApiError(404, "not_blocked", f"{number.strip()} is not blocked")
        return json_response({"number": number.strip(), "blocked": None})
