"""The control endpoint, only on the simulator: inject faults per path, read the request log, move the clock.

Every call needs `Authorization: Bearer <DIR/control-token>`.
"""
from __future__ import annotations

import collections
import hmac
import itertools
import threading
import time
from dataclasses import asdict, dataclass

from flask import Blueprint, abort, jsonify, request

from app.domain.directory import DirectoryError

FAULT_KINDS = ("latency", "429", "503", "hang")
CONTROL_PREFIX = "/_simulator"
TUNABLE_MINIMUMS = {"method_delay_seconds": 0, "report_lag_seconds": 0, "notice_seconds": 0,
                    "directory_limit": 1, "reports_limit": 1}


@dataclass
class Fault:
    """Answer requests whose path starts with `path` (and whose method matches) with a fault."""

    id: int
    path: str
    kind: str
    seconds: float
    method: str = ""
    remaining: int | None = None  # None: until removed

    def matches(self, method: str, path: str) -> bool:
        return path.lower().startswith(self.path.lower()) and (not self.method or self.method == method)


class FaultBook:
    """Faults tests have asked for, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, path: str, kind: str, seconds: float, method: str = "", count: int | None = None) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        if seconds < 0 or (count is not None and count < 1):
            raise ValueError("seconds must be >= 0 and count >= 1")
        fault = Fault(next(self._ids), path, kind, seconds, method.upper(), count)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Return the first fault for this request, spending one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._faults]


class RequestLog:
    """The last requests received (no headers, bodies or tokens: only what tests count)."""

    def __init__(self, size: int = 5000) -> None:
        self._entries: collections.deque[dict] = collections.deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, **entry: object) -> None:
        with self._lock:
            self._entries.append({"seq": next(self._seq), "time": time.time(), **entry})

    def since(self, seq: int = 0) -> list[dict]:
        with self._lock:
            return [e for e in self._entries if e["seq"] > seq]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _number(body: dict, name: str, default: float | None = None) -> float | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        abort(_bad(f"{name} must be a number"))
    return float(value)


def _bad(message: str):
    response = jsonify({"error": message})
    response.status_code = 400
    return response


def make_blueprint(get_sim) -> Blueprint:
    """Build the control blueprint; `get_sim` returns the Simulator of the running app."""
    bp = Blueprint("control", __name__, url_prefix=CONTROL_PREFIX)

    @bp.before_request
    def require_control_token():
        if request.endpoint == "control.health":
            return None
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), get_sim().control_token.encode()):
            return jsonify({"error": "control token missing or wrong (see DIR/control-token)"}), 401
        return None

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(_bad("send a JSON object"))
        return data

    @bp.get("/health")
    def health():
        return jsonify({"ok": True})

    @bp.post("/faults")
    def add_fault():
        data = body()
        count = _number(data, "count")
        try:
            fault = get_sim().faults.add(
                path=str(data.get("path", "")), kind=str(data.get("kind", "")),
                seconds=_number(data, "seconds", 0.0 if data.get("kind") != "hang" else 300.0),
                method=str(data.get("method", "")), count=None if count is None else int(count))
        except ValueError as exc:
            return _bad(str(exc))
        return jsonify(asdict(fault)), 201

    @bp.get("/faults")
    def list_faults():
        return jsonify({"faults": get_sim().faults.list()})

    @bp.delete("/faults")
    def clear_faults():
        get_sim().faults.clear()
        return "", 204

    @bp.get("/requests")
    def requests_log():
        since = request.args.get("since", "0")
        if not since.isdigit():
            return _bad("since must be a sequence number")
        return jsonify({"requests": get_sim().log.since(int(since))})

    @bp.delete("/requests")
    def clear_requests():
        get_sim().log.clear()
        return "", 204

    @bp.post("/clock")
    def advance_clock():
        seconds = _number(body(), "advance_seconds")
        if seconds is None or seconds < 0:
            return _bad("advance_seconds must be a number >= 0")
        get_sim().world.clock.advance(seconds)
        return jsonify({"now": get_sim().world.clock.now().isoformat()})

    @bp.post("/tunables")
    def set_tunables():
        """Change delays and bucket sizes; all values are checked before any is applied."""
        data, simulator = body(), get_sim()
        unknown = set(data) - set(TUNABLE_MINIMUMS)
        if unknown:
            return _bad(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {name: _number(data, name) for name in data}
        for name, value in values.items():
            if value < TUNABLE_MINIMUMS[name]:
                return _bad(f"{name} must be >= {TUNABLE_MINIMUMS[name]}")
        for name, value in values.items():
            if name.endswith("_limit"):
                simulator.throttle.limits[name.removesuffix("_limit")] = int(value)
            else:
                setattr(simulator.world.tunables, name, int(value) if name == "notice_seconds" else value)
        return jsonify({**asdict(simulator.world.tunables),
                        **{f"{k}_limit": v for k, v in simulator.throttle.limits.items()}})

    @bp.delete("/throttle")
    def reset_throttle():
        get_sim().throttle.reset()
        return "", 204

    @bp.post("/membership")
    def set_membership():
        """Add or remove a user in the bypass or MFA-required group, through the directory interface."""
        data, simulator = body(), get_sim()
        group_dn = {"bypass": simulator.bypass_group_dn, "required": simulator.required_group_dn}.get(
            str(data.get("group")))
        if group_dn is None:
            return _bad("group must be 'bypass' or 'required'")
        user = simulator.directory.find_user(str(data.get("upn", "")))
        if user is None:
            return _bad("no such user in the directory")
        member = data.get("member", True)
        if not isinstance(member, bool):
            return _bad("member must be true or false")
        try:
            changed = (simulator.directory.add_member(group_dn, user.dn) if member
                       else simulator.directory.remove_member(group_dn, user.dn))
        except DirectoryError as exc:
            return jsonify({"error": str(exc)}), 409
        return jsonify({"changed": changed, "member": member})

    @bp.post("/methods")
    def add_method():
        """Register a method for a user (as an admin would in the Entra admin centre); it shows after `delay` s."""
        from app.simulator.graph import BY_KIND

        data, world = body(), get_sim().world
        user = world.find_user(str(data.get("upn", "")))
        if user is None:
            return _bad("no such user in Entra")
        kind = str(data.get("kind", ""))
        if kind not in BY_KIND or kind in ("password", "temporaryAccessPass"):
            return _bad("kind must be a method kind the simulator serves (not password or temporaryAccessPass)")
        delay = _number(data, "delay", 0.0)
        if delay < 0:
            return _bad("delay must be >= 0")
        method = world.add_method(user.id, kind, delay=delay)
        return jsonify({"id": method.id, "kind": kind}), 201

    @bp.post("/tap-policy")
    def set_tap_policy():
        """Change the tenant's Temporary Access Pass policy (as an admin would); every value is checked first."""
        data, world = body(), get_sim().world
        known = {"state": str, "include_group_ids": list, "exclude_group_ids": list, "minimum_minutes": int,
                 "maximum_minutes": int, "default_minutes": int, "usable_once": bool, "default_length": int}
        unknown = set(data) - set(known)
        if unknown:
            return _bad(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, kind in known.items():
            if name in data and (type(data[name]) is not kind
                                 or (kind is list and not all(isinstance(g, str) for g in data[name]))):
                return _bad(f"{name} must be a {kind.__name__}")
        merged = {**asdict(world.tap_policy), **data}
        if merged["state"] not in ("enabled", "disabled"):
            return _bad("state must be enabled or disabled")
        if not (10 <= merged["minimum_minutes"] <= merged["default_minutes"] <= merged["maximum_minutes"] <= 43200
                and 8 <= merged["default_length"] <= 48):
            return _bad("lifetimes must satisfy 10 <= minimum <= default <= maximum <= 43200; length 8 to 48")
        for name, value in data.items():
            setattr(world.tap_policy, name, value)
        return jsonify(asdict(world.tap_policy))

    @bp.post("/entra-groups")
    def set_entra_group():
        """Put a user in (or out of) an Entra group, by the group's id (for the TAP policy's targets)."""
        data, world = body(), get_sim().world
        user = world.find_user(str(data.get("upn", "")))
        group = str(data.get("group_id", ""))
        if user is None or not group or not isinstance(data.get("member", True), bool):
            return _bad("send upn (a user in Entra), group_id and member (true or false)")
        with world.lock:
            members = world.entra_groups.setdefault(group, set())
            (members.add if data.get("member", True) else members.discard)(user.id)
        return jsonify({"group_id": group, "members": len(members)})

    @bp.post("/federation")
    def set_federation():
        """Set the federated domain's federatedIdpMfaBehavior."""
        value = str(body().get("federatedIdpMfaBehavior", ""))
        if value not in ("acceptIfMfaDoneByFederatedIdp", "enforceMfaByFederatedIdp", "rejectMfaByFederatedIdp"):
            return _bad("federatedIdpMfaBehavior must be acceptIfMfaDoneByFederatedIdp, enforceMfaByFederatedIdp "
                        "or rejectMfaByFederatedIdp")
        get_sim().world.federated_idp_mfa_behavior = value
        return jsonify({"federatedIdpMfaBehavior": value})

    @bp.get("/users")
    def users():
        """List the seeded Entra users and their state (never passwords)."""
        world = get_sim().world
        return jsonify({"users": [
            {"id": u.id, "upn": u.upn, "state": u.state,
             "methods": [m.kind for m in world.methods_of(u.id) if m.kind != "password"]}
            for u in world.users.values()]})

    return bp
