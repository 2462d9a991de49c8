"""The two WSGI apps bench/bench_status.py serves under the same gunicorn set-up as `proofup serve`.

portal(): the real portal (settings from PROOFUP_*, the real store, Flask-Limiter, sessions, headers),
with the embedded directory and a Graph that must never be called (the benchmark's grants have no
Entra id, so /status is the database-only poll); the Graph models are imported as in production.
bare(): a Flask app with one JSON view of the same shape, nothing else.
"""
from __future__ import annotations

from flask import Flask, jsonify


class NoGraph:
    """Graph for a poll that must stay in the database: any call is a bug in the benchmark."""

    def __getattr__(self, name):
        raise AssertionError(f"the /status benchmark called Graph ({name})")


def portal() -> Flask:
    from app import create_app
    from app.adapters.directory_embedded import EmbeddedDirectory
    from app.adapters.graph import GraphClient
    from app.adapters.budget import UnlimitedBudget
    from app.config import load_settings
    from app.seed import load_seed
    from app.wiring import build_services

    settings = load_settings()
    services = build_services(settings, directory=EmbeddedDirectory(load_seed()), graph=NoGraph(),
                              budget=UnlimitedBudget())
    # As create_wsgi_app does: the typed Graph models are imported before the fork (they count in the RSS).
    GraphClient("https://login.microsoftonline.com/bench", "bench", "bench", "https://graph.microsoft.com/v1.0").warm_up()
    return create_app(settings, services=services)


def bare() -> Flask:
    app = Flask(__name__)

    @app.get("/status")
    def status():
        return jsonify(phase="waiting", expires_at="2026-09-01T09:30:00+00:00", method="", note="")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app
