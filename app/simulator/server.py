"""Serve the simulator over https: gunicorn (keep-alive, threads) for `proofup simulator`, or a background thread."""
from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass

from flask import Flask
from gunicorn.app.base import BaseApplication
from werkzeug.serving import make_server

from app.simulator.keys import TlsFiles


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self._app, self._options = app, options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def run_gunicorn(app: Flask, host: str, port: int, tls: TlsFiles, threads: int = 16) -> None:
    """Run in the foreground: one process (the simulated cloud's state is in memory), many threads, keep-alive."""
    _Gunicorn(app, {
        "bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": threads,
        "certfile": str(tls.cert), "keyfile": str(tls.key), "keepalive": 5,
        "timeout": 900,  # injected hangs may hold a thread for minutes
        "graceful_timeout": 2, "accesslog": None, "errorlog": "-", "loglevel": "warning",
    }).run()


@dataclass
class BackgroundServer:
    """A simulator served from a thread of the current process (for `proofup demo`)."""

    base_url: str
    _server: object
    _thread: threading.Thread

    def shutdown(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


def serve_in_background(app: Flask, host: str, port: int, tls: TlsFiles) -> BackgroundServer:
    """Serve over https from a daemon thread; port 0 picks a free port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    server = make_server(host, port, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="proofup-simulator", daemon=True)
    thread.start()
    return BackgroundServer(f"https://{host}:{server.server_port}", server, thread)
