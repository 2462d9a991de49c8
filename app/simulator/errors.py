"""Error answers in the shapes Microsoft uses: Graph's `error` object, and Entra's and AD FS's OAuth errors."""
from __future__ import annotations

import datetime as dt
import uuid

from flask import Response, jsonify, request


def graph_error(status: int, code: str, message: str, retry_after: float | None = None) -> Response:
    """Answer as Graph does: {"error": {"code", "message", "innerError": {date, request-id, client-request-id}}}."""
    request_id = str(uuid.uuid4())
    body = {"error": {"code": code, "message": message, "innerError": {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request.headers.get("client-request-id", request_id),
    }}}
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
    return response


def entra_error(status: int, error: str, aadsts: int, description: str) -> Response:
    """Answer as Entra's token endpoint does: error, error_description "AADSTSnnnn: ...", error_codes, ids."""
    trace_id, correlation_id = str(uuid.uuid4()), request.headers.get("client-request-id", str(uuid.uuid4()))
    now = dt.datetime.now(dt.timezone.utc)
    response = jsonify({
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace_id} Correlation ID: "
                             f"{correlation_id} Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}",
        "error_codes": [aadsts],
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{request.host_url.rstrip('/')}/error?code={aadsts}",
    })
    response.status_code = status
    return response


def adfs_error(status: int, error: str, description: str) -> Response:
    """Answer as AD FS's token endpoint does: error and an MSISnnnn error_description."""
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response
