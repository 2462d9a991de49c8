"""The shipped alert rules: valid for Prometheus, tested with promtool, and only about metrics the portal exports."""
from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from app import metrics
from app.adapters.store import BypassCheck
from app.health import DependencyCollector, DependencyReport, DependencyStatus
from tests.support import real_tool

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "proofup-rules.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    return real_tool("promtool", "prometheus")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_rules_are_valid_for_prometheus(promtool):
    checked = run(promtool, "check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_when_it_should_and_stays_quiet_otherwise(promtool):
    tested = run(promtool, "test", "rules", "proofup-rules.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_every_alert_is_tested():
    tests = yaml.safe_load((RULES_DIR / "proofup-rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in rules()}


def exported_names() -> set[str]:
    """Every sample name the portal's /metrics can contain."""
    names = {sample.name for family in metrics.REGISTRY.collect() for sample in family.samples}
    names |= {family.name for family in metrics.REGISTRY.collect()}
    names |= {family.name + suffix for family in metrics.REGISTRY.collect() for suffix in ("_total", "_bucket")}

    class NoGrants:
        def grant_counts(self, now):
            return {}

        def last_bypass_check(self):
            return BypassCheck(datetime.now(timezone.utc), members=0, without_grant=0)

    names |= {family.name for family in metrics.StateCollector(NoGrants(), lambda: None).collect()}

    class Checked:
        def report(self):
            return DependencyReport((DependencyStatus("directory", "ldaps://dc1", True, "answered"),),
                                    datetime.now(timezone.utc), False, 15.0)

    names |= {family.name for family in DependencyCollector(Checked()).collect()}
    return names


def test_rules_name_only_metrics_the_portal_exports():
    used = {name for rule in rules() for name in re.findall(r"\bproofup_\w+", rule["expr"])}
    assert used and used <= exported_names(), used - exported_names()
