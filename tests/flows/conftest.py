"""The whole demo stack for browser journeys: simulator + directory + portal + worker, fresh per test."""
from __future__ import annotations

import pytest

from app.demo import DemoStack

# Compressed time so a journey takes seconds: methods appear in Graph after 1 s, the worker checks every 1 s.
FAST = dict(method_delay_seconds=1.0, check_interval_seconds=1.0, worker_interval_seconds=30.0,
            confirm_interval_seconds=1.0, replication_wait_seconds=2.0)
SERIOUS = ("serious", "critical")


@pytest.fixture
def demo_stack(tmp_path):
    """The demo configuration: embedded directory from the demo seed."""
    stack = DemoStack(tmp_path / "demo", **FAST).start()
    yield stack
    stack.stop()


@pytest.fixture
def samba_stack(tmp_path, clean_bypass_group):
    """The same stack, but the portal and the simulator's AD FS both read and write the Samba DC."""
    samba_dc = clean_bypass_group
    stack = DemoStack(tmp_path / "samba", directory=samba_dc.directory(), **FAST).start()
    yield stack
    stack.stop()


@pytest.fixture
def mailing_stack(tmp_path, smtp_server):
    """The demo stack (its worker sends mail every few seconds) mailing to the test's SMTP server (aiosmtpd)."""
    server = smtp_server("none")
    stack = DemoStack(tmp_path / "demo", mail=False, smtp_host=server.host, smtp_port=server.port,
                      smtp_security="none", smtp_from="proofup@uni.test", **FAST).start()
    stack.smtp = server
    yield stack
    stack.stop()


@pytest.fixture
def accessible():
    """Return a checker that runs axe-core on the page and fails on serious or critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page, what: str) -> None:
        results = axe.run(page)
        bad = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
        summary = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad]
        assert not bad, f"accessibility violations on {what}: {summary}"

    return check
