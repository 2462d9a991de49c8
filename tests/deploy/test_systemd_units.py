"""The shipped systemd units: `systemd-analyze verify` accepts them, their hardening scores "OK", their commands parse."""
from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser
from tests.support import real_tool

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("proofup-portal.service", "proofup-worker.service", "proofup-backup.service")
TIMERS = ("proofup-backup.timer",)
INSTALLED_PROOFUP = "/opt/proofup/venv/bin/proofup"  # where docs/deploy.md installs the portal


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    return real_tool("systemd-analyze", "systemd")


@pytest.fixture
def units(tmp_path) -> Path:
    """The units as shipped, pointing at this test's proofup (verify checks the command exists)."""
    here = Path(sys.executable).parent / "proofup"
    for name in UNITS + TIMERS:
        (tmp_path / name).write_text((UNITS_DIR / name).read_text().replace(INSTALLED_PROOFUP, str(here)))
    return tmp_path


def service_section(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNITS_DIR / name)
    return parser["Service"]


@pytest.mark.parametrize("name", UNITS + TIMERS)
def test_systemd_accepts_the_unit(systemd_analyze, units, name):
    verified = subprocess.run([systemd_analyze, "verify", name], cwd=units, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), verified.stderr


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_is_hardened(systemd_analyze, units, name):
    # An exposure of at most 2.0 of 10 is what systemd calls "OK" (a unit without hardening scores 9.6).
    scored = subprocess.run([systemd_analyze, "security", "--offline=true", "--threshold=20", name], cwd=units,
                            capture_output=True, text=True, timeout=60)
    assert scored.returncode == 0, scored.stdout[-2000:]


@pytest.mark.parametrize(("name", "command"), [(UNITS[0], "serve"), (UNITS[1], "worker"), (UNITS[2], "backup")])
def test_the_unit_runs_a_command_proofup_knows(name, command):
    argv = shlex.split(service_section(name)["ExecStart"])
    assert argv[0] == INSTALLED_PROOFUP and argv[1] == command
    build_parser().parse_args(argv[1:])  # exits (SystemExit) on an option the command does not have


def test_portal_and_worker_share_settings_and_metrics():
    portal, worker = (service_section(name) for name in UNITS[:2])
    for key in ("EnvironmentFile", "Environment", "User", "StateDirectory", "RuntimeDirectory"):
        assert portal[key] == worker[key], key
    assert portal["Environment"].startswith("PROMETHEUS_MULTIPROC_DIR=/run/proofup")
    assert portal["RuntimeDirectoryPreserve"] == "yes"  # one unit stopping must not delete the other's metrics
    assert portal["Restart"] == worker["Restart"] == "always"
