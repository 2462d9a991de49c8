"""A stand-in for AD FS 2019, Entra ID, Microsoft Graph and My Sign-Ins, served as one WSGI app over https.

The portal never imports this package; it talks to it over HTTP like to Microsoft's cloud.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from flask import Flask, Response, g, jsonify, render_template, request

from app.domain.directory import DirectoryError
from app.seed import Seed
from app.simulator import adfs, control, entra, graph, mysignins
from app.simulator.clients import ClientRegistry
from app.simulator.context import PasswordDirectory, Simulator, ensure_control_token, sim
from app.simulator.errors import graph_error
from app.simulator.keys import SigningKey
from app.simulator.throttle import Throttle, directory_limit_for
from app.simulator.world import Tunables, World

REPEATED_SLASHES = re.compile(r"/{2,}")
# Query parameters whose values never reach the request log.
SECRET_PARAMETERS = frozenset({"code", "client_secret", "refresh_token", "access_token", "id_token", "wresult",
                               "password", "code_verifier", "client_assertion"})


class CollapseSlashes:
    """Treat `//` in a path as `/`, as Graph does, instead of Werkzeug's redirect (which doubles every call)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        environ["PATH_INFO"] = REPEATED_SLASHES.sub("/", environ.get("PATH_INFO", ""))
        return self.wsgi_app(environ, start_response)


def create_simulator(state_dir: str | Path, seed: Seed, directory: PasswordDirectory | None = None,
                     tunables: Tunables | None = None, directory_limit: int | None = None,
                     extra_redirect_uris: tuple[str, ...] = (), required_group_dn: str = "",
                     bypass_group_dn: str = "", portal_url: str = "") -> Flask:
    """Build the simulator app; `directory` defaults to an embedded one made from the same seed."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    if directory is None:
        from app.adapters.directory_embedded import EmbeddedDirectory

        directory = EmbeddedDirectory(seed)
    app = Flask(__name__)
    app.url_map.merge_slashes = False
    app.extensions["simulator"] = Simulator(
        state_dir=state, seed=seed, world=World(seed, tunables=tunables), directory=directory,
        keys=SigningKey(state), clients=ClientRegistry(state, extra_redirect_uris),
        control_token=ensure_control_token(state),
        required_group_dn=required_group_dn, bypass_group_dn=bypass_group_dn, portal_url=portal_url,
        throttle=Throttle(directory_limit=directory_limit or directory_limit_for(len(seed.users))),
    )
    for blueprint in (adfs.bp, entra.bp, graph.bp, mysignins.bp, control.make_blueprint(sim)):
        app.register_blueprint(blueprint)
    app.before_request(apply_faults)
    app.after_request(log_request)
    for status in (404, 405, 500):
        app.register_error_handler(status, http_error)
    app.register_error_handler(DirectoryError, directory_down)
    app.add_url_rule("/", "index", index)
    app.wsgi_app = CollapseSlashes(app.wsgi_app)
    return app


def is_graph_path() -> bool:
    return request.path.startswith(graph.PREFIX + "/")


def apply_faults():
    """Serve an injected fault for this path, if a test asked for one (never on the control endpoint)."""
    g.started = time.monotonic()
    if request.path.startswith(control.CONTROL_PREFIX):
        return None
    fault = sim().faults.take(request.method, request.path)
    if fault is None:
        return None
    if fault.kind == "latency":
        time.sleep(fault.seconds)
        return None
    if fault.kind == "hang":
        time.sleep(fault.seconds)
        return fault_response(504, "GatewayTimeout", "The request hung (injected fault).", None)
    if fault.kind == "429":
        return fault_response(429, "TooManyRequests", "Too many requests.", fault.seconds or 1)
    return fault_response(503, "serviceNotAvailable", "Service unavailable.", fault.seconds or None)


def fault_response(status: int, code: str, message: str, retry_after: float | None) -> Response:
    if is_graph_path():
        return graph_error(status, code, message, retry_after)
    response = jsonify({"error": code, "error_description": message})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


def log_request(response: Response) -> Response:
    if not request.path.startswith(control.CONTROL_PREFIX):
        sim().log.add(method=request.method, path=request.path, query=redacted_query(),
                      status=response.status_code, app_id=request.environ.get("simulator.app_id", ""),
                      batch_part=bool(request.environ.get(graph.BATCH_PART)),
                      duration_ms=round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 1))
    return response


def redacted_query() -> str:
    pairs = parse_qsl(request.query_string.decode(errors="replace"), keep_blank_values=True)
    return urlencode([(k, "(redacted)" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs])


def directory_down(error: DirectoryError):
    """A DC that does not answer: AD FS shows its generic error page (the real one logs event 364)."""
    return render_template("adfs_error.html", message="An error occurred. Contact your administrator for more "
                                                      "information."), 503


def http_error(error):
    """Answer unknown paths and methods in Graph's shape under /v1.0, plainly elsewhere; never a bare 500 page."""
    status = getattr(error, "code", 500) or 500
    if is_graph_path():
        if status == 404:
            segment = request.path.rstrip("/").rsplit("/", 1)[-1]
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        if status == 405:
            return graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request "
                                                          "target.")
        return graph_error(500, "generalException", "An unexpected error occurred.")
    return jsonify({"error": getattr(error, "name", "Internal Server Error")}), status


def index():
    base = sim().base_url
    return jsonify({
        "adfs": base + "/adfs", "entra": f"{base}/{sim().seed.tenant_id}",
        "graph": base + graph.PREFIX, "my_sign_ins": base + "/security-info",
    })
