"""Build the requests sessions the adapters use: explicit CA, no environment proxies, timeouts, bounded retries."""
from __future__ import annotations

import os
import ssl
import weakref

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 10.0
# Idempotent reads are retried on these answers; a POST only when it never reached the server.
RETRY_STATUSES = (502, 503, 504)


class TimeoutSession(requests.Session):
    """A requests.Session that applies a default timeout to every request that sets none."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        super().__init__()
        self.timeout = timeout

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, **kwargs)


def make_session(ca_file: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, retries: int = 2) -> TimeoutSession:
    """Return a session that verifies against ca_file (or the system store), ignoring REQUESTS_CA_BUNDLE and proxies."""
    session = TimeoutSession(timeout)
    # trust_env=False: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and *_PROXY would otherwise override verify= silently.
    session.trust_env = False
    session.verify = ca_file or True
    retry = Retry(
        total=retries,
        connect=retries,
        read=0,  # a POST that may have reached the server (auth code redemption) is never sent twice
        status=retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=0.2,
        respect_retry_after_header=False,  # a person is waiting: never sleep for a server-chosen time
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Return a client TLS context trusting ca_file, or the system store when none is given."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


_FORK_AWARE: "weakref.WeakSet" = weakref.WeakSet()


def forget_connections_after_fork(owner) -> None:
    """Have owner._after_fork() called in every forked child: pooled connections belong to the parent."""
    _FORK_AWARE.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_FORK_AWARE):
        owner._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
