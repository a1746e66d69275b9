"""The FastAPI application: core routes live here, each area adds its own router module.

Area routers (``skyshield.api.<area>``) expose ``router: fastapi.APIRouter`` and are listed in
``ROUTER_MODULES``; they are included under the same error handling and state. A route gets the
engine, store, settings and policy through the dependencies in :mod:`skyshield.api.deps`, and refuses
input by raising :class:`skyshield.api.errors.ApiError` (or ``HTTPException``): every error is JSON
``{"error": {"code", "message", ...}}``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from skyshield.api import core
from skyshield.api.deps import ApiState
from skyshield.api.errors import install_error_handlers
from skyshield.api.schemas import CheckRequest
from skyshield.config import Settings, load_settings
from skyshield.engine import Engine
from skyshield.policy import Policy
from skyshield.security.api import SecurityState, authorize
from skyshield.security.failsafe import failure_action
from skyshield.security.retention import start_purger
from skyshield.store import VerdictStore, open_store_for

#: Modules with ``router``; each adds its own endpoints.
ROUTER_MODULES: list[str] = [
    "skyshield.api.compliance",  # templates:audit, templates, consents, replies
    "skyshield.api.behaviour",  # calls:check, numbers/{number}
    "skyshield.api.disposal",  # reports, campaigns, blocks, appeals, review, regulator-report
    "skyshield.console.routes",  # /console: operator web console (own login, outside /v1)
]

DESCRIPTION = """Stops spam, unlawful marketing and fraud in SMS: every message gets a verdict
(action, category, score) with the signals and evidence behind it, stored so it can be explained later.

Errors are always JSON: `{"error": {"code": "...", "message": "..."}}`."""


def create_app(
    policy: Policy | str | Path | None = None,
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: VerdictStore | None = None,
) -> FastAPI:
    """The API with the engine the policy asks for and the store the settings name (both built now, so a
    bad policy or database fails at start, not on the first request)."""
    if not isinstance(policy, Policy):
        policy = Policy.load(policy)
    settings = settings or load_settings()
    owns_store = store is None
    store = store or open_store_for(policy, settings)  # first: the engine's detectors may use the same database
    if engine is None:
        from skyshield.assembly import build_engine

        engine = build_engine(policy, settings)
    failure_action(policy)  # a bad [engine] on_failure fails at start
    security = SecurityState.for_app(store, policy)  # API keys, rate limits (open local mode while none exist)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_purger = start_purger(store, policy)  # [privacy] retain_text: now and every purge_every
        yield
        stop_purger()
        security.keyring.close()
        if owns_store:
            store.close()

    app = FastAPI(title="skyshield", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.skyshield = ApiState(engine=engine, store=store, settings=settings, policy=policy)
    app.state.security = security
    install_error_handlers(app)
    # Every router behind the key check (it passes anything outside /v1, and everything in open local mode).
    gate = [Depends(authorize)]
    app.include_router(core.router, dependencies=gate)
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router, dependencies=gate)

    def openapi() -> dict[str, Any]:
        # The check route reads its body itself (to validate item by item); publish its schema here.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request_schema = CheckRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["CheckRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
