"""Health and readiness for load balancers and orchestrators; metrics for Prometheus."""
from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, request

from app.config import parse_networks
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


@bp.get("/metrics")
def metrics():
    """Answer Prometheus, if the scraper shows the metrics token or comes from an allowed network."""
    from app import metrics as m

    settings = current_app.config["PROOFUP_SETTINGS"]
    if not settings.metrics_token and not settings.metrics_allow:
        abort(404)  # closed unless an admin opened it
    if not (_bearer_matches(settings.metrics_token) or _address_allowed(settings.metrics_allow)):
        log.warning("metrics scrape refused from %s", request.remote_addr)
        abort(403)
    svc = services()
    body = m.exposition(m.StateCollector(svc.store, svc.onboarding.clock, svc.outbox))
    return Response(body, content_type=m.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _address_allowed(allow: str) -> bool:
    """Tell whether the client (as ProxyFix sees it) lies in one of the allowed networks."""
    try:
        ip = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return any(ip in net for net in parse_networks(allow))
