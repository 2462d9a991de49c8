"""Health and readiness for load balancers and orchestrators."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from app.web import services

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """Say the process is alive (no dependency checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Say whether the database and the directory answer; 503 names what does not."""
    svc = services()
    checks: dict[str, str] = {}
    for name, probe in (("database", svc.store.ping), ("directory", lambda: svc.directory.find_user("readyz@invalid"))):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; the reason goes to the log, not the caller
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = "failed"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
