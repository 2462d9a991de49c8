"""deploy/nginx/proofup.conf in front of `proofup serve`: Debian's nginx, TLS, loopback only.

What the proxy is there for: slow and half-sent requests stay in nginx (the portal's 8 gunicorn threads
keep serving), oversized bodies and headers are refused before the portal sees them, /metrics and
/health/dependencies are closed, and the portal trusts the proxy's forwarded scheme and address (PROOFUP_PROXY_HOPS=1).
Every test opens a bounded number of connections and closes them.
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.adapters.http import make_session
from app.demo import DemoStack, adfs_form_post
from tests.fixtures.nginx import start_nginx
from tests.web.serving import free_port, portal_env, start_serve

pytestmark = [pytest.mark.samba, pytest.mark.slow]

SLOW_CLIENTS = 40  # five times what stops `proofup serve` alone (2 workers x 4 threads)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, samba_dc):
    """`proofup serve` (2 workers x 4 threads, its defaults) behind a throw-away nginx with the shipped site."""
    workdir = tmp_path_factory.mktemp("proxy")
    stack = DemoStack(workdir / "sim", worker=False).start()
    port = free_port()  # nginx's: the portal's public address, which it must know when it starts
    env = portal_env(stack, samba_dc, workdir, f"sqlite:///{workdir}/portal.sqlite3", PROOFUP_PROXY_HOPS="1",
                     PROOFUP_PUBLIC_URL=f"https://127.0.0.1:{port}")
    served = start_serve(env, workdir / "serve.log", stack)
    try:
        proxy = start_nginx(workdir / "nginx", int(served.url.rsplit(":", 1)[1]), port=port)
    except BaseException:
        served.stop()
        stack.stop()
        raise
    yield served, proxy
    proxy.stop()
    served.stop()
    stack.stop()


def tls_connection(proxy) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=proxy.ca_file)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")




def portal_requests(served) -> list[str]:
    """The request lines gunicorn's access log has seen so far."""
    return [line for line in served.log().splitlines() if '"' in line and "HTTP/1." in line]


def test_a_sign_in_through_the_proxy(proxied):
    served, proxy = proxied
    portal = make_session(proxy.ca_file)
    home = portal.get(proxy.url + "/")
    assert home.status_code == 200 and "default-src 'none'" in home.headers["Content-Security-Policy"]
    assert "max-age=" in home.headers["Strict-Transport-Security"]  # the portal saw https through the proxy
    assert "Server" not in home.headers or "nginx/" not in home.headers["Server"]
    assert len(home.headers["X-Request-ID"]) == 32  # nginx's $request_id, passed on and echoed by the portal
    upn = "ada.lovelace@uni.test"
    auth_uri = portal.get(proxy.url + "/sign-in", allow_redirects=False).headers["Location"]
    assert f"redirect_uri=https%3A%2F%2F127.0.0.1%3A{proxy.port}%2Fauth%2Fcallback" in auth_uri
    posted = adfs_form_post(auth_uri, upn, served.stack.seed.user(upn).password, served.stack.settings.ca_bundle)
    page = portal.post(posted.action, data=posted.fields)
    assert page.status_code == 200 and 'data-state="stuck"' in page.text


def test_plain_http_is_sent_to_https(proxied):
    _, proxy = proxied
    answer = make_session(None).get(f"http://127.0.0.1:{proxy.http_port}/diagnosis", allow_redirects=False)
    assert answer.status_code == 301 and answer.headers["Location"] == "https://portal.example.edu/diagnosis"


def test_slow_and_half_sent_requests_do_not_take_the_portal_off_the_air(proxied):
    """Half the slow clients stall inside their headers, half inside a body nginx is buffering; every one
    sends a byte a second (straight to `proofup serve`, 8 such clients kept /healthz from answering)."""
    served, proxy = proxied
    slow: list[ssl.SSLSocket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for conn in slow:
                try:
                    conn.sendall(b"a")
                except OSError:
                    pass

    try:
        for i in range(SLOW_CLIENTS):
            conn = tls_connection(proxy)
            if i % 2:
                conn.sendall(b"GET /diagnosis HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slo")
            else:
                conn.sendall(b"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\nstate=")
            slow.append(conn)
        threading.Thread(target=trickle, daemon=True).start()
        before = len(portal_requests(served))
        portal = make_session(proxy.ca_file)

        def healthz(_: int) -> tuple[int, float]:
            started = time.monotonic()
            return portal.get(proxy.url + "/healthz", timeout=10).status_code, time.monotonic() - started

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(healthz, range(24)))
        assert [status for status, _ in answers] == [200] * 24
        assert time.monotonic() - started < 8, answers  # all 24 while 40 slow clients hang on
        assert portal.get(proxy.url + "/", timeout=10).status_code == 200
        # None of the slow requests reached the portal: nginx holds them until they are whole.
        assert not any("/auth/callback" in line or "/diagnosis" in line for line in portal_requests(served)[before:])
    finally:
        stop.set()
        for conn in slow:
            conn.close()


def test_oversized_bodies_are_refused_by_nginx(proxied):
    served, proxy = proxied
    before = len(portal_requests(served))
    with tls_connection(proxy) as conn:
        conn.sendall(b"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 104857600\r\n\r\n"
                     + b"state=x&" * 128)
        started = time.monotonic()
        answer = conn.recv(65536)
        answered_after = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert answered_after < 5  # at once: nginx judged the Content-Length, not a spooled body
    # Just over the portal's 64 KiB limit: nginx refuses; just under: the portal decides (here: a bad callback).
    portal = make_session(proxy.ca_file)
    over = portal.post(proxy.url + "/auth/callback", data={"state": "x", "pad": "a" * (64 * 1024)})
    under = portal.post(proxy.url + "/auth/callback", data={"state": "x", "pad": "a" * (15 * 1024)})
    assert over.status_code == 413 and under.status_code == 400
    deadline = time.monotonic() + 5
    while True:  # gunicorn writes its access line just after the answer
        reached = [line for line in portal_requests(served)[before:] if "/auth/callback" in line]
        if reached or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Only the one under the limit; the callback sends every answer on to /auth/complete (303), which refuses it.
    assert len(reached) == 1 and '" 303 ' in reached[0], reached


def test_oversized_headers_are_refused_by_nginx(proxied):
    _, proxy = proxied
    portal = make_session(proxy.ca_file)
    assert portal.get(proxy.url + "/healthz", headers={"X-Padding": "a" * 7000}).status_code == 200
    assert portal.get(proxy.url + "/healthz", headers={"X-Padding": "a" * 9000}).status_code == 400
    assert portal.get(proxy.url + "/healthz?" + "q" * 9000).status_code == 414


def test_metrics_are_closed_to_the_world(proxied):
    _, proxy = proxied
    assert make_session(proxy.ca_file).get(proxy.url + "/metrics").status_code == 403
    assert make_session(proxy.ca_file).get(proxy.url + "/health/dependencies").status_code == 403
    assert make_session(proxy.ca_file).get(proxy.url + "/readyz").status_code == 200


def test_no_access_log_holds_an_invite_links_token(proxied):
    """nginx's log and the portal's (gunicorn) write /invite/(token), and nginx logs no referrer."""
    from app.domain.invites import new_token

    served, proxy = proxied
    token = new_token()
    session = make_session(proxy.ca_file)
    answer = session.get(f"{proxy.url}/invite/{token}", headers={"Referer": f"{proxy.url}/invite/{token}"})
    assert answer.status_code == 404  # no such invite: the one answer for every dead link
    session.get(f"{proxy.url}/static/shared/portal.css", headers={"Referer": f"{proxy.url}/invite/{token}"})
    time.sleep(0.5)  # nginx writes its access line after the answer
    nginx_log = (proxy.prefix / "proofup-access.log").read_text()
    assert "/invite/(token)" in nginx_log and token not in nginx_log
    assert "/invite/(token)" in served.log() and token not in served.log()


def test_the_batch_upload_route_alone_takes_a_bigger_body_and_a_too_big_one_gets_the_portals_page(proxied):
    _, proxy = proxied
    portal = make_session(proxy.ca_file)
    csv_file = {"file": ("week.csv", b"upn\n" + b"student@uni.test\n" * 12_000, "text/csv")}  # about 200 KB
    elsewhere = portal.post(proxy.url + "/sign-out", files=csv_file, allow_redirects=False)
    assert elsewhere.status_code == 413 and "X-Request-ID" not in elsewhere.headers  # nginx's own: 64 KiB there
    fits = portal.post(proxy.url + "/helpdesk/batches/upload", files=csv_file, allow_redirects=False)
    assert fits.status_code != 413 and "X-Request-ID" in fits.headers  # the portal answered (staff sign-in first)
    huge = {"file": ("week.csv", b"upn\n" + b"student@uni.test\n" * 600_000, "text/csv")}  # about 10 MB
    too_big = portal.post(proxy.url + "/helpdesk/batches/upload", files=huge, allow_redirects=False)
    assert "X-Request-ID" in too_big.headers, too_big.status_code  # nginx handed its 413 to the portal's page
    # Without a staff session the portal's answer is its sign-in redirect; a desk member reads its "too big" page
    # (tests/web/test_batches.py), with nginx's 413 status either way.
    assert (too_big.status_code, too_big.headers.get("Location", "")) == (413, "/helpdesk/sign-in")
