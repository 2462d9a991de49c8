"""`proofup serve`: the portal under real gunicorn (preloaded, threaded), against Samba and the simulator."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from app.adapters.http import make_session
from app.demo import DemoStack, adfs_form_post

pytestmark = [pytest.mark.samba, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, samba_dc):
    """Run `proofup serve` with PROOFUP_* from the environment: the simulator's cloud, Samba's directory."""
    stack = DemoStack(tmp_path / "sim", worker=False).start()
    both = tmp_path / "ca.pem"
    both.write_bytes(open(samba_dc.ca_file, "rb").read() + open(stack.settings.ca_bundle, "rb").read())
    s = stack.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PROOFUP_")},
        **samba_dc.env(),
        "PROOFUP_SECRET_KEY": s.secret_key, "PROOFUP_AUTHORITY": s.authority, "PROOFUP_CLIENT_ID": s.client_id,
        "PROOFUP_CLIENT_SECRET": s.client_secret, "PROOFUP_TENANT_ID": s.tenant_id,
        "PROOFUP_GRAPH_AUTHORITY": s.graph_authority, "PROOFUP_GRAPH_CLIENT_ID": s.graph_client_id,
        "PROOFUP_GRAPH_CLIENT_SECRET": s.graph_client_secret, "PROOFUP_GRAPH_URL": s.graph_url,
        "PROOFUP_CA_BUNDLE": str(both), "PROOFUP_DATABASE_URL": f"sqlite:///{tmp_path}/portal.sqlite3",
        "PROOFUP_MYSIGNINS_URL": s.mysignins_url, "PROOFUP_REPLICATION_WAIT_SECONDS": "2",
    }
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    session = make_session(None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if session.get(url + "/healthz", timeout=1).ok:
                break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("gunicorn did not start: " + process.stdout.read().decode(errors="replace")[-2000:])
    yield stack, url
    process.terminate()
    process.wait(timeout=20)
    stack.stop()


def test_serve_signs_in_and_diagnoses_under_gunicorn(served):
    stack, url = served
    portal = make_session(None)
    assert portal.get(url + "/readyz").json()["status"] == "ready"
    for upn, state in (("ada.lovelace@uni.test", "stuck"), ("barbara.liskov@uni.test", "registered")):
        portal.cookies.clear()
        auth_uri = portal.get(url + "/sign-in", allow_redirects=False).headers["Location"]
        posted = adfs_form_post(auth_uri, upn, stack.seed.user(upn).password, stack.settings.ca_bundle)
        page = portal.post(posted.action, data=posted.fields)
        assert page.status_code == 200 and f'data-state="{state}"' in page.text
