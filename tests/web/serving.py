"""Run `proofup serve` (real gunicorn) against the simulator's cloud and Samba's directory, for tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.adapters.http import make_session
from app.demo import DemoStack, adfs_form_post


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def portal_env(stack: DemoStack, samba_dc, tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    """Return PROOFUP_* for a portal on the simulator's cloud and Samba (nothing inherited from the caller)."""
    both = tmp_path / "ca.pem"
    both.write_bytes(open(samba_dc.ca_file, "rb").read() + open(stack.settings.ca_bundle, "rb").read())
    s = stack.settings
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PROOFUP_", "PROMETHEUS_"))},
        **samba_dc.env(),
        "PROOFUP_SECRET_KEY": s.secret_key, "PROOFUP_AUTHORITY": s.authority, "PROOFUP_CLIENT_ID": s.client_id,
        "PROOFUP_CLIENT_SECRET": s.client_secret, "PROOFUP_TENANT_ID": s.tenant_id,
        "PROOFUP_GRAPH_AUTHORITY": s.graph_authority, "PROOFUP_GRAPH_CLIENT_ID": s.graph_client_id,
        "PROOFUP_GRAPH_CLIENT_SECRET": s.graph_client_secret, "PROOFUP_GRAPH_URL": s.graph_url,
        "PROOFUP_CA_BUNDLE": str(both), "PROOFUP_DATABASE_URL": database_url,
        "PROOFUP_MYSIGNINS_URL": s.mysignins_url, "PROOFUP_REPLICATION_WAIT_SECONDS": "2",
        **extra,
    }


@dataclass
class Served:
    """A running `proofup serve` and the demo stack behind it."""

    stack: DemoStack
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """Return what gunicorn and the portal wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def sign_in(self, upn: str):
        """Sign a student in through the simulated AD FS; return (the signed-in session, the page)."""
        portal = make_session(None)
        auth_uri = portal.get(self.url + "/sign-in", allow_redirects=False).headers["Location"]
        posted = adfs_form_post(auth_uri, upn, self.stack.seed.user(upn).password, self.stack.settings.ca_bundle)
        return portal, portal.post(posted.action, data=posted.fields)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_serve(env: dict[str, str], log_path: Path, stack: DemoStack, *, workers: int = 2,
                args: tuple[str, ...] = ()) -> Served:
    """Start `proofup serve` on a free loopback port and wait for /healthz."""
    port = free_port()
    env = {"PROOFUP_PUBLIC_URL": f"http://127.0.0.1:{port}", **env}  # the address the tests use, unless given
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), *args], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    served = Served(stack, f"http://127.0.0.1:{port}", process, log_path)
    session = make_session(None, retries=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if session.get(served.url + "/healthz", timeout=1).ok:
                return served
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    served.stop()
    pytest.fail("gunicorn did not start: " + served.log()[-3000:])
