"""Liveness and readiness for load balancers; dependency health and metrics for monitoring (app/health.py)."""
from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, request

from app import health
from app.config import parse_networks
from app.web import services

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    """Say the process is alive (no dependency checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Say whether this instance can serve its pages (settings, database, schema); 503 names what cannot.

    AD, Graph and the rest are not asked (app/health.py): the portal's own page says when they are down.
    """
    checks = health.readiness(services().store)
    ready = all(v == health.OK for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503, NO_STORE


@bp.get("/health/dependencies")
def dependencies():
    """Report this process's last check of each dependency (for monitoring: opened like /metrics)."""
    _require_scraper()
    svc = services()
    return jsonify(svc.dependencies.report().as_json(svc.onboarding.clock())), NO_STORE


@bp.get("/metrics")
def metrics():
    """Answer Prometheus, if the scraper shows the metrics token or comes from an allowed network."""
    from app import metrics as m

    _require_scraper()
    svc = services()
    invites = svc.invites.invites if svc.invites is not None else None
    body = m.exposition(m.StateCollector(svc.store, svc.onboarding.clock, svc.outbox, invites),
                        health.DependencyCollector(svc.dependencies))
    return Response(body, content_type=m.CONTENT_TYPE, headers=NO_STORE)


def _require_scraper() -> None:
    """Refuse anyone but the metrics token's holder or an allowed network; 404 while neither is set."""
    settings = current_app.config["PROOFUP_SETTINGS"]
    if not settings.metrics_token and not settings.metrics_allow:
        abort(404)  # closed unless an admin opened it
    if not (_bearer_matches(settings.metrics_token) or _address_allowed(settings.metrics_allow)):
        log.warning("scrape of %s refused from %s", request.path, request.remote_addr)
        abort(403)


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
