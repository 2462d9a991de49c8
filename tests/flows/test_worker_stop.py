"""`proofup worker` stops on SIGTERM (systemd) and SIGINT (Ctrl-C): it exits 0 within seconds and gives its lease back."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.adapters.lease import WORKER_LEASE
from app.adapters.store import Store
from app.config import read_env_file
from tests.fixtures.demo_process import DemoProcess

ROOT = Path(__file__).resolve().parents[2]
PROOFUP = [sys.executable, "-m", "app.cli"]
STOP_BOUND_SECONDS = 15.0  # a correctness bound (the worker abandons a step after 5 s), not a speed target
TAKE_LEASE_SECONDS = 30.0  # the demo's own worker gives the lease back after each pass

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("worker-stop")
    with DemoProcess(PROOFUP, work / "state", cwd=work, env=None) as running:
        yield running


def holds_lease(store: Store, pid: int) -> bool:
    """Tell whether the process `pid` of this host holds the worker lease (holder: host:pid:tag)."""
    current = store.lease_holder(WORKER_LEASE)
    return current is not None and current[0].split(":")[1] == str(pid)


def ignore_sigint() -> None:
    """Start the child with SIGINT ignored, as `&` in a script does (the bench's worker was started so)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_signal, inherit_ignored_sigint", [
    (signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)])
def test_the_worker_exits_0_and_frees_its_lease_on_a_stop_signal(demo, tmp_path, stop_signal,
                                                                   inherit_ignored_sigint):
    store = Store(read_env_file(str(demo.state_dir / "demo.env"))["PROOFUP_DATABASE_URL"])
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([*PROOFUP, "worker", "--demo", str(demo.state_dir)], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT,
                                  preexec_fn=ignore_sigint if inherit_ignored_sigint else None)
    try:
        deadline = time.monotonic() + TAKE_LEASE_SECONDS
        while not holds_lease(store, worker.pid):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the worker never took the lease:\n{log.read_text()}"
            time.sleep(0.1)
        worker.send_signal(stop_signal)
        try:
            returncode = worker.wait(timeout=STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not end within {STOP_BOUND_SECONDS:.0f} s of {stop_signal.name}")
        assert returncode == 0, log.read_text()
        assert not holds_lease(store, worker.pid)  # given back, so another worker takes over at once
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        store.engine.dispose()
