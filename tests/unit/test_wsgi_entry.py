"""The pre-forking entry point warms the Graph models once, before gunicorn forks its workers."""
from types import SimpleNamespace

from flask import Flask

import app as portal


def test_create_wsgi_app_warms_up_the_graph_client(monkeypatch):
    calls = []
    built = Flask("probe")
    built.extensions["proofup"] = SimpleNamespace(graph=SimpleNamespace(warm_up=lambda: calls.append("warm")))
    monkeypatch.setattr(portal, "create_app", 
                        lambda **options: built if options == {"upgrade_in_child": True} else None)
    assert portal.create_wsgi_app() is built
    assert calls == ["warm"]


def test_create_wsgi_app_accepts_a_graph_without_warm_up(monkeypatch):
    built = Flask("probe")
    built.extensions["proofup"] = SimpleNamespace(graph=object())
    monkeypatch.setattr(portal, "create_app", 
                        lambda **options: built if options == {"upgrade_in_child": True} else None)
    assert portal.create_wsgi_app() is built
