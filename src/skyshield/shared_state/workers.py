"""``skyshield serve --workers N``: N uvicorn worker processes, each with its own engine and store handle.

Uvicorn starts workers from an import string, so each builds its app here from what the parent put in
the environment: the policy file (``SKYSHIELD_POLICY_FILE``) and the database (``SKYSHIELD_DB``, set by
``--db``). What the workers must agree on lives outside them: records in the database (SQLite in WAL
mode on one host, PostgreSQL across hosts) and the counters in ``[state] url`` (Redis).
"""

from __future__ import annotations

import os
from typing import Any

POLICY_ENV = "SKYSHIELD_POLICY_FILE"
APP_FACTORY = "skyshield.shared_state.workers:create_worker_app"


def create_worker_app() -> Any:
    """The API app of one worker process (called by uvicorn in each worker)."""
    from skyshield.api.app import create_app
    from skyshield.config import load_settings
    from skyshield.policy import Policy

    policy = Policy.load(os.environ.get(POLICY_ENV) or None)
    if policy.section("privacy")["mask_logs"]:
        from skyshield.security.logmask import install_log_masking

        install_log_masking()
    app = create_app(policy, load_settings())
    from skyshield.assembly import tune_gc_for_serving

    tune_gc_for_serving()
    return app


def worker_warning(policy: Any, workers: int) -> str | None:
    """What an operator should know before running ``workers`` processes with this policy."""
    from skyshield.shared_state import state_url

    if workers > 1 and not state_url(policy):
        return (f"{workers} workers without [state] url: each worker keeps its own frequency-cap counters, so a cap "
                f"lets through up to {workers}x its limit (set [state] url = \"redis://127.0.0.1:6379/0\")")
    return None
