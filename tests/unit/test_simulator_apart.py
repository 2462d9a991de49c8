"""The portal runs without the demo's parts: no portal module imports the simulator, trustme or aiosmtpd."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The demo's own modules and the libraries of the `demo` extra. `proofup` loads them lazily, for `demo` and
# `simulator` only.
DEMO_ONLY = ("app.simulator", "app.demo", "app.demo_mailbox", "trustme", "aiosmtpd")
# Migrations run Alembic at import, so they are not imported here.
NOT_WALKED = ("app.simulator", "app.demo", "app.demo_mailbox", "app.migrations")


def demo_modules(loaded: list[str]) -> list[str]:
    """Return the loaded modules that belong to the demo, the simulator or the `demo` extra."""
    return [m for m in loaded if any(m == name or m.startswith(name + ".") for name in DEMO_ONLY)]


IMPORT_EVERY_PORTAL_MODULE = """
import importlib, json, pkgutil, sys
import app

allowed = tuple(sys.argv[1].split(","))
imported = []

def walk(path, prefix):
    for info in pkgutil.iter_modules(path, prefix):
        if info.name.startswith(allowed):
            continue
        module = importlib.import_module(info.name)
        imported.append(info.name)
        if info.ispkg:
            walk(module.__path__, info.name + ".")

walk(app.__path__, "app.")
print(json.dumps({"imported": imported, "loaded": sorted(sys.modules)}))
"""


def test_no_portal_module_imports_the_simulator():
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERY_PORTAL_MODULE, ",".join(NOT_WALKED)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    # The walk really covered the layers (a typo in it would make the check below pass vacuously).
    for layer in ("app.web.student", "app.services.onboarding", "app.adapters.directory", "app.domain.state",
                  "app.wiring", "app.cli", "app.worker"):
        assert layer in report["imported"]
    assert demo_modules(report["loaded"]) == []


def test_the_check_sees_the_simulator_when_it_is_loaded():
    probe = ("import json, sys, app.simulator.keys, aiosmtpd.controller, app.demo_mailbox; "
             "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    found = set(demo_modules(json.loads(result.stdout)))
    assert {"trustme", "app.simulator.keys", "aiosmtpd.controller", "app.demo_mailbox"} <= found
