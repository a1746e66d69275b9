"""The FastAPI application: core routes live here, each area adds its own router module.

Area routers (``skyshield.api.<area>``) expose ``router: fastapi.APIRouter`` and are listed in
``ROUTER_MODULES``; they are included under the same error handling and state.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

#: Modules with ``router``; each adds its own endpoints.
ROUTER_MODULES: list[str] = []


def create_app() -> FastAPI:
    app = FastAPI(title="skyshield", version="0.1.0")
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
