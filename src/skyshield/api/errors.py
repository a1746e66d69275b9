"""One error shape for every route: ``{"error": {"code", "message", ...}}``.

Routers raise :class:`ApiError` (or FastAPI's ``HTTPException``); FastAPI's own validation errors and
any unexpected exception are turned into the same shape here, so a client never parses two formats.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyshield.metrics import record_error

log = logging.getLogger("skyshield.api")


class ApiError(Exception):
    """A refusal with an HTTP status, a stable machine code and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        #: Response headers (``Retry-After`` on 429, ``WWW-Authenticate`` on 401).
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with UTF-8 text as written (Chinese stays readable) and any odd evidence value as a string."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "messages", 3, "text")`` → ``messages[3].text``."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def pydantic_code(error_type: str) -> str:
    """A stable code for a pydantic error type."""
    if error_type == "extra_forbidden":
        return "unknown_field"
    if error_type == "missing":
        return "missing_field"
    if error_type.endswith("_type") or (error_type.endswith("_parsing") and "datetime" not in error_type):
        return "invalid_type"
    if error_type.endswith("too_long") or error_type.endswith("too_short"):
        return "invalid_length"
    return "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        record_error("api", exc.code)
        return json_response(error_body(exc.code, exc.message, **exc.extra), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        fields = [
            {"field": field_path(e.get("loc", ())), "code": pydantic_code(e.get("type", "")), "message": e.get("msg")}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "", "code": "invalid_request", "message": "invalid request"}
        code = first["code"]
        record_error("api", code)
        message = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        return json_response(error_body(code, message, fields=fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        record_error("api", code)
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return json_response(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        record_error("api", "internal_error")
        message = f"internal error ({type(exc).__name__}); see the server log"
        return json_response(error_body("internal_error", message), 500)
