"""Core routes: check messages, read stored verdicts, health and metrics.

``POST /v1/messages:check`` validates each item on its own: broken items get an ``error`` entry with
their index, the good ones are scored and stored, and the answer is HTTP 200 when every item was
checked, HTTP 422 (with the good items' verdicts still in ``results``) when any was refused.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from skyshield.api.deps import ApiState, get_state, get_store
from skyshield.api.errors import ApiError, error_body, json_response, pydantic_code
from skyshield.api.schemas import (
    CheckResponse,
    ErrorResponse,
    MessageIn,
    PartialCheckResponse,
)
from skyshield.events import Action, Category, Channel, Message, Verdict, utcnow
from skyshield.explain import verdict_summary
from skyshield.metrics import REQUEST_SECONDS, STORE_SECONDS, exposition, record_batch, record_error
from skyshield.security.api import effective_tenant, may_see, principal_of
from skyshield.security.failsafe import engine_failed, journal, journal_path, store_failed
from skyshield.store import VerdictStore

router = APIRouter()
StateDep = Annotated[ApiState, Depends(get_state)]
StoreDep = Annotated[VerdictStore, Depends(get_store)]

_ITEMS = TypeAdapter(list[MessageIn])
_ALLOWED_ITEM_FIELDS = ", ".join(MessageIn.model_fields)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request_too_large", f"request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "request_too_large", f"request body exceeds the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _batch_items(body: bytes, max_batch: int) -> list[Any]:
    if not body.strip():
        raise ApiError(400, "invalid_json", 'empty request body; send {"messages": [{"text": "..."}]}')
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ApiError(400, "invalid_json", f"request body is not JSON: {exc.msg} at {where}") from None
    except RecursionError:  # [[[[... thousands deep: refuse it as bad JSON, not as a server error
        raise ApiError(400, "invalid_json", "request body is nested too deeply to be a message batch") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_type", 'the body must be a JSON object: {"messages": [...]}', field="")
    unknown = sorted(set(data) - {"messages"})
    if unknown:
        message = f"unknown field {unknown[0]!r} in the request body (allowed: messages)"
        raise ApiError(422, "unknown_field", message, field=unknown[0])
    if "messages" not in data:
        raise ApiError(422, "missing_field", "the body needs a 'messages' list", field="messages")
    items = data["messages"]
    if not isinstance(items, list):
        raise ApiError(422, "invalid_type", f"'messages' must be a list, got {type(items).__name__}", field="messages")
    if not items:
        raise ApiError(422, "empty_batch", f"'messages' is empty; send 1 to {max_batch:,} messages", field="messages")
    if len(items) > max_batch:
        message = f"{len(items):,} messages in one request; the limit is {max_batch:,}: split the batch"
        raise ApiError(413, "batch_too_large", message, field="messages", limit=max_batch)
    return items


def _item_error(index: int, code: str, message: str, field: str | None) -> dict[str, Any]:
    where = f"messages[{index}]" + (f".{field}" if field else "")
    return {"code": code, "message": f"{where}: {message}", "field": field}


def _validate_items(items: list[Any], max_chars: int) -> tuple[list[tuple[int, MessageIn]], dict[int, dict]]:
    """Split a batch into valid messages (with their index) and an error per broken index."""
    errors: dict[int, dict] = {}
    try:
        pairs = list(enumerate(_ITEMS.validate_python(items)))
    except ValidationError as exc:
        found: dict[int, list[dict]] = {}
        for e in exc.errors():
            loc = e["loc"]
            index = int(loc[0])
            field = str(loc[1]) if len(loc) > 1 else None
            if any(x["field"] == field for x in found.get(index, [])):
                continue  # one error per field (a union reports each member)
            code = pydantic_code(e["type"])
            if code == "unknown_field":
                message = f"unknown field (allowed: {_ALLOWED_ITEM_FIELDS})"
            elif code == "missing_field":
                message = "required field is missing"
            elif field is None:
                message = f"must be an object like {{\"text\": \"...\"}}, got {type(items[index]).__name__}"
            else:
                message = e["msg"]
            found.setdefault(index, []).append(_item_error(index, code, message, field))
        for index, item_errors in found.items():
            # A misspelt field also makes the real one missing: name the misspelling first.
            item_errors.sort(key=lambda x: x["code"] != "unknown_field")
            first = dict(item_errors[0])
            first["message"] = "; ".join(x["message"] for x in item_errors)
            errors[index] = first
        good = [i for i in range(len(items)) if i not in errors]
        pairs = list(zip(good, _ITEMS.validate_python([items[i] for i in good]), strict=True))
    valid = []
    for index, item in pairs:
        if not item.text.strip():
            errors[index] = _item_error(index, "empty_text", "text is empty", "text")
        elif len(item.text) > max_chars:
            errors[index] = _item_error(
                index, "text_too_long", f"text has {len(item.text):,} characters; the limit is {max_chars:,}", "text"
            )
        elif not item.text.isascii() and _lone_surrogate(item.text) is not None:
            # JSON may escape half a UTF-16 pair ("\ud83d"); such text cannot be stored, so refuse this item alone.
            at = _lone_surrogate(item.text)
            message = f"text has a lone UTF-16 surrogate at character {at}; send valid Unicode"
            errors[index] = _item_error(index, "invalid_text", message, "text")
        else:
            valid.append((index, item))
    return valid, errors


def _lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in ``text``, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _to_message(item: MessageIn) -> Message:
    when = item.time or utcnow()
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return Message(
        text=item.text,
        sender=item.sender,
        recipient=item.recipient,
        time=when,
        channel=Channel.API,
        tenant=item.tenant,
        external_id=item.id,
    )


def save_verdicts(state: ApiState, items: list[tuple[Message, Verdict]]) -> str | None:
    """Store a checked batch (idempotent on the caller's ids); when the store fails, the policy's fail-safe
    (``on_failure``) marks the verdicts, the journal keeps the decisions, and this returns "store_unavailable"."""
    try:
        state.store.save(items, idempotent=True)
    except Exception as exc:  # noqa: BLE001
        verdicts = [v for _, v in items]
        store_failed(state.policy, verdicts, exc)
        journal(journal_path(state.settings), [m for m, _ in items], verdicts)
        return "store_unavailable"
    return None


def _score_and_store(state: ApiState, valid: list[tuple[int, MessageIn]]) -> dict[int, dict[str, Any]]:
    """Verdict summaries by index. A message whose ``id`` (per tenant) was checked before is not scored or
    stored again: it gets the stored verdict, marked ``replayed`` (so a client may safely resend a batch)."""
    keys = sorted({(item.tenant, item.id) for _, item in valid if item.id is not None})
    try:
        known = state.store.find_external(keys) if keys else {}
    except Exception:  # noqa: BLE001 - the store is down: score anyway, the save below takes the fail-safe path
        known = {}
    out: dict[int, dict[str, Any]] = {}
    first_of: dict[tuple[str, str], int] = {}
    repeats: dict[int, int] = {}
    fresh: list[tuple[int, MessageIn]] = []
    for index, item in valid:
        key = (item.tenant, item.id) if item.id is not None else None
        if key in known:
            stored = verdict_summary(known[key].verdict)
            out[index] = {"index": index, "message_id": item.id, **stored, "replayed": True}
        elif key in first_of:
            repeats[index] = first_of[key]
        else:
            if key is not None:
                first_of[key] = index
            fresh.append((index, item))
    if fresh:
        messages = [_to_message(item) for _, item in fresh]
        failsafe: str | None = None
        with state.engine_lock:
            started = time.perf_counter()
            try:
                verdicts = state.engine.check(messages)
            except Exception as exc:  # noqa: BLE001 - [engine] on_failure decides; the verdict says why
                verdicts = engine_failed(state.policy, messages, exc, state.engine.model.version)
                failsafe = "engine_unavailable"
            record_batch("api", verdicts, time.perf_counter() - started)
        started = time.perf_counter()
        failsafe = save_verdicts(state, list(zip(messages, verdicts, strict=True))) or failsafe
        STORE_SECONDS.labels("api").observe(time.perf_counter() - started)
        for (index, item), verdict in zip(fresh, verdicts, strict=True):
            out[index] = {"index": index, "message_id": item.id, **verdict_summary(verdict), "replayed": False}
            if failsafe:
                out[index]["failsafe"] = failsafe
    for index, first in repeats.items():
        out[index] = {**out[first], "index": index, "replayed": True}
    return out


_CHECK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckRequest"}}},
}


@router.post(
    "/v1/messages:check",
    summary="Check a batch of messages",
    description=(
        "Scores 1 to 10,000 messages and stores every verdict. An item whose `id` was checked before (per tenant) "
        "gets its stored verdict back (`replayed: true`) and is not stored twice, so resending a batch is safe. "
        "Each item is validated on its own: a broken item "
        "gets `error` (with its index) in `results` and the others are still checked and stored. HTTP 200 when "
        "every item was checked; HTTP 422 with `error.code = invalid_items` and the same `results` when any was "
        "refused; HTTP 413 for more than 10,000 messages or an oversized body; HTTP 400 for a body that is not JSON. "
        "When the engine or the store fails, items get the `[engine] on_failure` action with `failsafe` set "
        "(`engine_unavailable` / `store_unavailable`) and an ENGINE_UNAVAILABLE / STORE_UNAVAILABLE signal. With API "
        "keys, the tenant is the key's (an admin key may name any)."
    ),
    openapi_extra={"requestBody": _CHECK_BODY},
    response_model=None,
    responses={
        200: {"model": CheckResponse, "description": "Every message has a verdict, in request order."},
        400: {"model": ErrorResponse, "description": "The body is not JSON."},
        413: {"model": ErrorResponse, "description": "More than 10,000 messages, or the body is too large."},
        422: {
            "model": PartialCheckResponse,
            "description": "The body's shape is wrong (error only), or some items are broken (error + results).",
        },
        401: {"model": ErrorResponse, "description": "API keys exist and this request has no valid one."},
        403: {"model": ErrorResponse, "description": "The key lacks the `check` scope."},
        429: {"model": ErrorResponse, "description": "The key is over its rate (`[security] key_rate`)."},
    },
    tags=["messages"],
)
async def check_messages(request: Request, state: StateDep) -> Response:
    started = time.perf_counter()
    body = await _read_body(request, state.settings.max_body_bytes)
    items = _batch_items(body, state.settings.max_batch)
    valid, errors = _validate_items(items, state.settings.max_text_chars)
    if not principal_of(request).any_tenant:  # a tenant's key checks that tenant's traffic, whatever the body says
        valid = [(i, item.model_copy(update={"tenant": effective_tenant(request, item.tenant)})) for i, item in valid]
    answered = await run_in_threadpool(_score_and_store, state, valid) if valid else {}

    results: list[dict[str, Any] | None] = [None] * len(items)
    for index, result in answered.items():
        results[index] = result
    for index, error in errors.items():
        results[index] = {"index": index, "message_id": _raw_id(items[index]), "error": error}
        record_error("api", error["code"])
    body_out: dict[str, Any] = {
        "results": results,
        "checked": len(answered),
        "failed": len(errors),
        "replayed": sum(1 for r in answered.values() if r["replayed"]),
        "model_version": state.engine.model.version,
    }
    status = 200
    if errors:
        status = 422
        shown = sorted(errors)[:10]
        first = errors[shown[0]]["message"]
        more = "" if len(errors) <= len(shown) else f" (and {len(errors) - len(shown)} more)"
        body_out.update(
            error_body(
                "invalid_items",
                f"{len(errors)} of {len(items)} messages could not be checked (index {', '.join(map(str, shown))}"
                f"{more}); first: {first}. Verdicts for the remaining {len(answered)} are in results (and stored).",
                indexes=sorted(errors),
            )
        )
    REQUEST_SECONDS.labels("/v1/messages:check").observe(time.perf_counter() - started)
    return json_response(body_out, status)


def _raw_id(item: Any) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) and not isinstance(item.get("id"), bool):
        return str(item["id"])
    return None


@router.get(
    "/v1/verdicts/{verdict_id}",
    summary="A stored verdict with every reason behind it",
    response_model=None,
    responses={404: {"model": ErrorResponse, "description": "No verdict with this id."}},
    tags=["verdicts"],
)
def get_verdict(verdict_id: int, store: StoreDep, request: Request) -> Response:
    stored = store.get(verdict_id)
    if stored is None or not may_see(request, stored.tenant):  # another tenant's verdict does not exist for you
        raise ApiError(404, "verdict_not_found", f"no verdict with id {verdict_id}", id=verdict_id)
    data = stored.to_dict()
    data["reasons"] = stored.verdict.reasons()
    return json_response(data)


@router.get(
    "/v1/verdicts",
    summary="Recent stored verdicts, newest first",
    description="Filter by sender or recipient (the number as written; a call's caller and callee), action, "
    "category, tenant, channel (`call` for screened calls) and time; "
    "page backwards with `before_id` (the `next_before_id` of the previous page).",
    response_model=None,
    tags=["verdicts"],
)
def list_verdicts(
    store: StoreDep,
    request: Request,
    sender: str | None = None,
    recipient: str | None = None,
    action: Action | None = None,
    category: Category | None = None,
    tenant: str | None = None,
    channel: Channel | None = None,
    since: Annotated[datetime | None, Query(description="Stored at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Stored before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    found = store.search(
        sender=sender,
        recipient=recipient,
        action=action.value if action else None,
        category=category.value if category else None,
        tenant=effective_tenant(request, tenant),
        since=since,
        until=until,
        limit=limit,
        before_id=before_id,
        channel=channel.value if channel else None,
    )
    rows = []
    for s in found:
        row = {"stored_at": s.stored_at.isoformat(), "message_id": s.external_id, "tenant": s.tenant,
               "channel": s.channel.value}
        row.update(verdict_summary(s.verdict))
        rows.append(row)
    next_before = found[-1].id if len(found) == limit else None
    return json_response({"verdicts": rows, "next_before_id": next_before})


@router.get("/healthz", summary="Liveness and readiness", tags=["service"])
def healthz(state: StateDep) -> Response:
    try:
        state.store.ping()
    except Exception as exc:  # noqa: BLE001 - health reports any storage failure
        raise ApiError(503, "store_unavailable", f"store not readable: {exc}") from exc
    return json_response(
        {"status": "ok", "model_version": state.engine.model.version, "policy": state.policy.source}
    )


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", tags=["service"])
def metrics() -> Response:
    payload, content_type = exposition()
    return Response(payload, media_type=content_type)

