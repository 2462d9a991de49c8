"""Microsoft Graph v1.0, the subset the portal uses, with app-only token checks, permissions and throttling.

JSON follows the resource types on learn.microsoft.com/graph/api/resources/* (user, authenticationMethod and
its subtypes, device, userRegistrationDetails, signIn) and json-batching (at most 20 requests).
Permissions are the least privileged application permissions each API page lists, plus the higher ones.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import secrets
import string
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.test import EnvironBuilder

from app.simulator.clients import GRAPH_APP_ID, GRAPH_RESOURCE
from app.simulator.context import sim
from app.simulator.errors import graph_error
from app.simulator.keys import TokenVerificationError
from app.simulator.throttle import category_of
from app.simulator.world import EntraUser, Method, iso

PREFIX = "/v1.0"
BATCH_LIMIT = 20
BATCH_PART = "simulator.batch_part"

READ_USERS = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
READ_METHODS = ("UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All")
WRITE_METHODS = ("UserAuthenticationMethod.ReadWrite.All",)
READ_AUDIT = ("AuditLog.Read.All",)
READ_METHOD_POLICY = ("Policy.Read.AuthenticationMethod", "Policy.ReadWrite.AuthenticationMethod")
READ_FEDERATION = ("Domain-InternalFederation.Read.All", "Domain-InternalFederation.ReadWrite.All", "Domain.Read.All",
                   "Domain.ReadWrite.All")
READ_GROUP_MEMBERS = ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All")
# What Graph answers when the TAP policy does not cover the user (or TAP is off): azure-docs issue #111778.
TAP_POLICY_REFUSAL = ("Converged UserCredentialPolicy does not allow creating or updating this authentication "
                      "method. AuthMethodType [TemporaryAccessPass].")

# Typed method collections: segment -> (kind, @odata.type, fields shown besides id).
COLLECTIONS = {
    "passwordMethods": ("password", "#microsoft.graph.passwordAuthenticationMethod", ("password", "createdDateTime")),
    "microsoftAuthenticatorMethods": ("microsoftAuthenticator",
                                      "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
                                      ("displayName", "deviceTag", "phoneAppVersion", "createdDateTime")),
    "phoneMethods": ("phone", "#microsoft.graph.phoneAuthenticationMethod",
                     ("phoneNumber", "phoneType", "smsSignInState")),
    "fido2Methods": ("fido2", "#microsoft.graph.fido2AuthenticationMethod",
                     ("displayName", "createdDateTime", "aaGuid", "model", "attestationCertificates",
                      "attestationLevel")),
    "softwareOathMethods": ("softwareOath", "#microsoft.graph.softwareOathAuthenticationMethod", ("secretKey",)),
    "windowsHelloForBusinessMethods": ("windowsHelloForBusiness",
                                       "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod",
                                       ("displayName", "createdDateTime", "keyStrength")),
    "emailMethods": ("email", "#microsoft.graph.emailAuthenticationMethod", ("emailAddress",)),
    "temporaryAccessPassMethods": ("temporaryAccessPass", "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
                                   ("temporaryAccessPass", "createdDateTime", "startDateTime", "lifetimeInMinutes",
                                    "isUsableOnce", "isUsable", "methodUsabilityReason")),
    "platformCredentialMethods": ("platformCredential", "#microsoft.graph.platformCredentialAuthenticationMethod",
                                  ("displayName", "createdDateTime", "keyStrength", "platform")),
    "externalAuthenticationMethods": ("externalAuthentication", "#microsoft.graph.externalAuthenticationMethod",
                                      ("displayName", "createdDateTime", "configurationId")),
    "hardwareOathMethods": ("hardwareOath", "#microsoft.graph.hardwareOathAuthenticationMethod",
                            ("createdDateTime", "serialNumber", "manufacturer", "model")),
}
# Listed under /authentication/methods only: QR code + PIN is a single object (qrCodePinMethod) in Graph, not a
# collection; FUTURE_METHOD is no Microsoft type: it stands for one Microsoft adds after the portal was written.
FUTURE_METHOD = "futureMethod"
LISTED_ONLY = {
    "qrCodePin": (None, "#microsoft.graph.qrCodePinAuthenticationMethod", ("createdDateTime",)),
    FUTURE_METHOD: (None, "#microsoft.graph.proofupFutureAuthenticationMethod", ("displayName", "createdDateTime")),
}
BY_KIND = {kind: (segment, odata_type, shown) for segment, (kind, odata_type, shown) in COLLECTIONS.items()}
BY_KIND.update(LISTED_ONLY)
# userRegistrationDetails.methodsRegistered values.
REGISTRATION_NAMES = {"microsoftAuthenticator": "microsoftAuthenticatorPush", "phone": "mobilePhone",
                      "fido2": "passKeyDeviceBound", "softwareOath": "softwareOneTimePasscode",
                      "windowsHelloForBusiness": "windowsHelloForBusiness", "email": "email",
                      "temporaryAccessPass": "temporaryAccessPass", "hardwareOath": "hardwareOneTimePasscode",
                      "platformCredential": "macOsSecureEnclaveKey", "externalAuthentication": "externalAuthMethod"}
USER_DEFAULT_PROPERTIES = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                           "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
USER_SELECTABLE = USER_DEFAULT_PROPERTIES + ("accountEnabled", "userType", "onPremisesImmutableId",
                                             "onPremisesSyncEnabled", "createdDateTime")
TAP_MIN_MINUTES, TAP_MAX_MINUTES = 10, 43200  # Graph's own range; the tenant's policy narrows it
SIGNIN_MAX_TOP = 1000
USERS_DEFAULT_TOP, USERS_MAX_TOP = 100, 999  # Graph's list users: 100 a page unless $top says up to 999
EXPAND_LIMIT = 100  # "registeredDevices ... Supports $expand and returns up to 100 objects" (user resource)
IN_FILTER_LIMIT = 15  # Graph's default limit of values in one `in` clause (filter-query-parameter, limitations)
USERS_FILTER = re.compile(r"^\s*userPrincipalName\s+(eq|in)\s+(.+?)\s*$", re.IGNORECASE)
STRING_LITERAL = re.compile(r"'((?:[^']|'')*)'")
EXPAND_DEVICES = re.compile(r"^registeredDevices(?:\(\$select=([\w,]+)\))?$")
DEVICE_FIELDS = ("id", "deletedDateTime", "accountEnabled", "approximateLastSignInDateTime", "deviceId", "displayName",
                 "isCompliant", "isManaged", "operatingSystem", "operatingSystemVersion", "registrationDateTime",
                 "trustType")
FILTER_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ge|gt|le|lt)\s+('(?:[^']|'')*'|[\w:.\-+]+)\s*$", re.IGNORECASE)

bp = Blueprint("graph", __name__, url_prefix=PREFIX)


def unauthorized(message: str) -> Response:
    response = graph_error(401, "InvalidAuthenticationToken", message)
    response.headers["WWW-Authenticate"] = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                            f'common/oauth2/authorize", client_id="{GRAPH_APP_ID}"')
    return response


@bp.before_request
def authenticate_and_throttle():
    """Verify the bearer token (signature, audience, issuer, expiry), then charge the right bucket."""
    simulator = sim()
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        return unauthorized("Access token is empty.")
    try:
        claims = simulator.keys.verify(header[7:].strip())
    except TokenVerificationError:
        return unauthorized("Access token validation failure. Invalid signature.")
    if claims.get("aud") not in (GRAPH_RESOURCE, GRAPH_RESOURCE + "/", GRAPH_APP_ID):
        return unauthorized("Access token validation failure. Invalid audience.")
    if claims.get("iss") != f"https://sts.windows.net/{simulator.seed.tenant_id}/":
        return unauthorized("Access token validation failure. Invalid issuer.")
    if claims.get("exp", 0) <= simulator.world.clock.time():
        return unauthorized("Lifetime validation failed, the token is expired.")
    g.app_id = str(claims.get("appid", ""))
    g.roles = frozenset(claims.get("roles") or ()) if claims.get("idtyp") == "app" else frozenset()
    request.environ["simulator.app_id"] = g.app_id
    graph_path = request.path[len(PREFIX):]
    if graph_path == "/$batch":
        return None  # each part is throttled on its own
    wait = simulator.throttle.take(category_of(graph_path), g.app_id, simulator.seed.tenant_id,
                                   simulator.world.clock.time())
    if wait is not None:
        return graph_error(429, "TooManyRequests", "Too many requests.", retry_after=wait)
    return None


class GraphProblem(Exception):
    """Stop handling a request and answer with this (already Graph-shaped) error response."""

    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


@bp.errorhandler(GraphProblem)
def answer_problem(problem: GraphProblem) -> Response:
    return problem.response


def require(*permissions: str) -> None:
    """Answer 403 unless the app-only token carries one of the permissions Microsoft lists for the API."""
    if g.roles.isdisjoint(permissions):
        raise GraphProblem(graph_error(403, "Authorization_RequestDenied",
                                       "Insufficient privileges to complete the operation."))


def not_found(what: str) -> Response:
    return graph_error(404, "Request_ResourceNotFound",
                       f"Resource '{what}' does not exist or one of its queried reference-property objects are not "
                       "present.")


def context_url(fragment: str) -> str:
    return f"{sim().base_url}{PREFIX}/$metadata#{fragment}"


def permitted_user(user_ref: str, permissions: tuple[str, ...]) -> EntraUser:
    """Check the permission first (Graph answers 403 before 404), then find the user or answer 404."""
    require(*permissions)
    user = sim().world.find_user(user_ref)
    if user is None:
        raise GraphProblem(not_found(user_ref))
    return user


def method_or_404(user: EntraUser, method_id: str, kind: str | None = None) -> Method:
    for method in sim().world.methods_of(user.id, kind):
        if method.id == method_id:
            return method
    raise GraphProblem(graph_error(404, "itemNotFound", f"Authentication method '{method_id}' was not found."))


def user_properties(user: EntraUser) -> dict:
    """Return every property of a user this simulator knows, as Graph names them."""
    given, _, surname = user.display_name.partition(" ")
    return {
        "businessPhones": [], "displayName": user.display_name, "givenName": given, "jobTitle": None,
        "mail": user.mail, "mobilePhone": None, "officeLocation": None, "preferredLanguage": None,
        "surname": surname or None, "userPrincipalName": user.upn, "id": user.id,
        "accountEnabled": user.account_enabled, "userType": "Member", "onPremisesSyncEnabled": True,
        "onPremisesImmutableId": user.id.replace("-", "")[:24], "createdDateTime": iso(sim().world.clock.now()
                                                                                       - dt.timedelta(days=400)),
    }


def selected_user_fields() -> list[str]:
    """Return the user properties $select asks for (the defaults without it); answer 400 for an unknown one."""
    selected = [p.strip() for p in request.args.get("$select", "").split(",") if p.strip()]
    for name in selected:
        if name not in USER_SELECTABLE:
            raise GraphProblem(graph_error(400, "Request_BadRequest",
                                           f"Could not find a property named '{name}' on type 'microsoft.graph.user'."))
    return selected or list(USER_DEFAULT_PROPERTIES)


@bp.get("/users/<user_ref>")
def get_user(user_ref: str):
    user = permitted_user(user_ref, READ_USERS)
    fields = selected_user_fields()
    everything = user_properties(user)
    fragment = f"users({','.join(fields)})/$entity" if request.args.get("$select") else "users/$entity"
    return jsonify({"@odata.context": context_url(fragment), **{f: everything[f] for f in fields}})


def wanted_upns(text: str) -> set[str] | None:
    """Parse `userPrincipalName eq '..'` or `userPrincipalName in ('..', ..)`; None for no filter; raise ValueError."""
    if not text.strip():
        return None
    match = USERS_FILTER.match(text)
    if not match:
        raise ValueError(text)
    op, rest = match.group(1).lower(), match.group(2)
    if op == "in":
        if not (rest.startswith("(") and rest.endswith(")")):
            raise ValueError(text)
        inner = rest[1:-1]
        values = STRING_LITERAL.findall(inner)
        if not values or STRING_LITERAL.sub("", inner).replace(",", "").strip():
            raise ValueError(text)
        if len(values) > IN_FILTER_LIMIT:
            raise GraphProblem(graph_error(400, "Request_UnsupportedQuery",
                                           f"Too many values in the 'in' operator: at most {IN_FILTER_LIMIT}."))
    else:
        values = STRING_LITERAL.findall(rest)
        if len(values) != 1 or STRING_LITERAL.sub("", rest).strip():
            raise ValueError(text)
    return {v.replace("''", "'").lower() for v in values}


def device_json(d) -> dict:
    return {
        "@odata.type": "#microsoft.graph.device", "id": d.id, "deletedDateTime": None, "accountEnabled": True,
        "approximateLastSignInDateTime": iso(d.registered), "deviceId": d.device_id, "displayName": d.display_name,
        "isCompliant": None, "isManaged": None, "operatingSystem": d.operating_system,
        "operatingSystemVersion": d.operating_system_version, "registrationDateTime": iso(d.registered),
        "trustType": "Workplace",
    }


def next_link(path: str, skip: int) -> str:
    """Return the @odata.nextLink of a collection page: the same query with a $skiptoken, URL-encoded."""
    query = {k: v for k, v in request.args.items() if k != "$skiptoken"}
    query["$skiptoken"] = str(skip)
    return f"{sim().base_url}{PREFIX}{path}?" + urlencode(query, safe="$',()")


@bp.get("/users")
def list_users():
    """List users: $filter on userPrincipalName (eq, or in with at most 15 values), $select, $top and
    $expand=registeredDevices (Graph expands at most 100 directory objects per user)."""
    require(*READ_USERS)
    try:
        upns = wanted_upns(request.args.get("$filter", ""))
    except ValueError as exc:
        return graph_error(400, "BadRequest", f"Invalid filter clause: {exc}")
    fields = selected_user_fields()
    expand = request.args.get("$expand", "")
    expand_match = EXPAND_DEVICES.match(expand) if expand else None
    if expand and expand_match is None:
        return graph_error(400, "BadRequest", f"Could not find a property named '{expand}' on type "
                                              "'microsoft.graph.user'.")
    device_fields = [f for f in (expand_match.group(1) or "").split(",") if f] if expand_match else []
    if any(f not in DEVICE_FIELDS for f in device_fields):
        return graph_error(400, "BadRequest", "Could not find a property named in $select on type "
                                              "'microsoft.graph.device'.")
    top_raw, skip_raw = request.args.get("$top", str(USERS_DEFAULT_TOP)), request.args.get("$skiptoken", "0")
    if not top_raw.isdigit() or not 1 <= int(top_raw) <= USERS_MAX_TOP or not skip_raw.isdigit():
        return graph_error(400, "BadRequest", f"Invalid page size or skip token (1 to {USERS_MAX_TOP}).")
    top, skip = int(top_raw), int(skip_raw)
    world = sim().world
    with world.lock:
        users = sorted((u for u in world.users.values() if upns is None or u.upn.lower() in upns),
                       key=lambda u: u.upn.lower())
    page = []
    for user in users[skip:skip + top]:
        everything = user_properties(user)
        row = {f: everything[f] for f in fields}
        if expand_match:
            devices = [device_json(d) for d in world.devices_of(user.id)][:EXPAND_LIMIT]
            row["registeredDevices"] = [{"@odata.type": d["@odata.type"], **({f: d[f] for f in device_fields}
                                                                             if device_fields else d)}
                                        for d in devices]
        page.append(row)
    body = {"@odata.context": context_url("users"), "value": page}
    if skip + top < len(users):
        body["@odata.nextLink"] = next_link("/users", skip + top)
    return jsonify(body)


def method_json(method: Method) -> dict:
    _, odata_type, shown = BY_KIND[method.kind]
    values = {"createdDateTime": iso(method.created), **method.details}
    if method.kind == "password":
        values["password"] = None
    if method.kind == "temporaryAccessPass":
        values.update(tap_usability(method))
    return {"@odata.type": odata_type, "id": method.id, **{name: values.get(name) for name in shown}}


def tap_usability(method: Method) -> dict:
    start = dt.datetime.fromisoformat(method.details["startDateTime"].replace("Z", "+00:00"))
    end = start + dt.timedelta(minutes=method.details["lifetimeInMinutes"])
    now = sim().world.clock.now()
    reason = ("NotYetValid" if now < start else "Expired" if now >= end
              else "OneTimeUsed" if method.details.get("used") else "EnabledByPolicy")
    return {"isUsable": reason == "EnabledByPolicy", "methodUsabilityReason": reason, "temporaryAccessPass": None}


@bp.get("/users/<user_ref>/authentication/methods")
def list_methods(user_ref: str):
    user = permitted_user(user_ref, READ_METHODS)
    return jsonify({"@odata.context": context_url(f"users('{user_ref}')/authentication/methods"),
                    "value": [method_json(m) for m in sim().world.methods_of(user.id)]})


@bp.get("/users/<user_ref>/authentication/methods/<method_id>")
def get_method(user_ref: str, method_id: str):
    user = permitted_user(user_ref, READ_METHODS)
    method = method_or_404(user, method_id)
    return jsonify({"@odata.context": context_url(f"users('{user_ref}')/authentication/methods/$entity"),
                    **method_json(method)})


def collection_kind(segment: str) -> str:
    if segment not in COLLECTIONS:
        raise GraphProblem(graph_error(400, "BadRequest", f"Resource not found for the segment '{segment}'."))
    return COLLECTIONS[segment][0]


@bp.get("/users/<user_ref>/authentication/<segment>")
def list_typed(user_ref: str, segment: str):
    kind = collection_kind(segment)
    user = permitted_user(user_ref, READ_METHODS)
    return jsonify({"@odata.context": context_url(f"users('{user_ref}')/authentication/{segment}"),
                    "value": [method_json(m) for m in sim().world.methods_of(user.id, kind)]})


@bp.get("/users/<user_ref>/authentication/<segment>/<method_id>")
def get_typed(user_ref: str, segment: str, method_id: str):
    kind = collection_kind(segment)
    user = permitted_user(user_ref, READ_METHODS)
    method = method_or_404(user, method_id, kind)
    return jsonify({"@odata.context": context_url(f"users('{user_ref}')/authentication/{segment}/$entity"),
                    **method_json(method)})


@bp.delete("/users/<user_ref>/authentication/<segment>/<method_id>")
def delete_typed(user_ref: str, segment: str, method_id: str):
    kind = collection_kind(segment)
    if kind == "password":
        return graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
    user = permitted_user(user_ref, WRITE_METHODS)
    sim().world.delete_method(method_or_404(user, method_id, kind))
    return Response(status=204)


@bp.post("/users/<user_ref>/authentication/temporaryAccessPassMethods")
def create_tap(user_ref: str):
    """Create a Temporary Access Pass; the code is in this answer only and is never kept."""
    user = permitted_user(user_ref, WRITE_METHODS)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return graph_error(400, "badRequest", "The request body must be a JSON object.")
    world = sim().world
    policy = world.tap_policy
    if not policy.covers(world.groups_of(user.id)):
        return graph_error(400, "badRequest", TAP_POLICY_REFUSAL)
    lifetime = body.get("lifetimeInMinutes", policy.default_minutes)
    once = body.get("isUsableOnce", False)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not TAP_MIN_MINUTES <= lifetime <= TAP_MAX_MINUTES:
        return graph_error(400, "badRequest", f"lifetimeInMinutes must be between {TAP_MIN_MINUTES} and "
                                              f"{TAP_MAX_MINUTES}.")
    if not policy.minimum_minutes <= lifetime <= policy.maximum_minutes:
        # The tenant's own range, narrower than Graph's (glueckkanja/MyWorkID #123 quotes this answer).
        return graph_error(400, "badRequest", f"Invalid LifetimeInMinutes, valid range between "
                                              f"{policy.minimum_minutes} and {policy.maximum_minutes}")
    if not isinstance(once, bool):
        return graph_error(400, "badRequest", "isUsableOnce must be true or false.")
    try:
        start = (dt.datetime.fromisoformat(str(body["startDateTime"]).replace("Z", "+00:00"))
                 if body.get("startDateTime") else world.clock.now())
    except ValueError:
        return graph_error(400, "badRequest", "startDateTime is not a valid date and time.")
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    # "A user can only have one Temporary Access Pass that's usable within its specified lifetime. If the user
    # requires a new Temporary Access Pass while the current one is valid, [...] the previous Temporary Access Pass
    # will be deleted, and a new Temporary Access Pass will be created." (Graph: Create temporaryAccessPassMethod)
    for previous in world.methods_of(user.id, "temporaryAccessPass"):
        world.delete_method(previous)
    method = world.add_method(user.id, "temporaryAccessPass", delay=0.0, details={
        "startDateTime": iso(start), "lifetimeInMinutes": lifetime, "isUsableOnce": once or policy.usable_once})
    code = "".join(secrets.choice(string.ascii_letters + string.digits + "!@#$%&*")
                   for _ in range(policy.default_length))
    world.keep_tap_code(method, code)
    created = {"@odata.context": context_url(f"users('{user_ref}')/authentication/temporaryAccessPassMethods/"
                                             "$entity"), **method_json(method), "temporaryAccessPass": code}
    response = jsonify(created)
    response.status_code = 201
    response.headers["Location"] = (f"{sim().base_url}{PREFIX}/users/{user.id}/authentication/"
                                    f"temporaryAccessPassMethods/{method.id}")
    return response


@bp.get("/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/<config_id>")
def method_configuration(config_id: str):
    """Read the Temporary Access Pass policy (the only method configuration the portal reads)."""
    require(*READ_METHOD_POLICY)
    if config_id.lower() != "temporaryaccesspass":
        return not_found(config_id)
    policy = sim().world.tap_policy
    return jsonify({
        "@odata.context": context_url("policies/authenticationMethodsPolicy/authenticationMethodConfigurations/"
                                      "$entity"),
        "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration",
        "id": "TemporaryAccessPass", "state": policy.state,
        "defaultLifetimeInMinutes": policy.default_minutes, "defaultLength": policy.default_length,
        "minimumLifetimeInMinutes": policy.minimum_minutes, "maximumLifetimeInMinutes": policy.maximum_minutes,
        "isUsableOnce": policy.usable_once,
        "includeTargets": [{"targetType": "group", "id": g, "isRegistrationRequired": False}
                           for g in policy.include_group_ids],
        "excludeTargets": [{"targetType": "group", "id": g} for g in policy.exclude_group_ids],
    })


@bp.get("/domains")
def domains():
    """List the tenant's domains: the university's (federated to AD FS) and the initial onmicrosoft.com one."""
    require("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
    seed = sim().seed
    initial = seed.tenant_domain.split(".")[0] + ".onmicrosoft.com"
    return jsonify({"@odata.context": context_url("domains"), "value": [
        {"id": seed.tenant_domain, "authenticationType": "Federated", "isDefault": True, "isInitial": False,
         "isVerified": True},
        {"id": initial, "authenticationType": "Managed", "isDefault": False, "isInitial": True, "isVerified": True},
    ]})


@bp.get("/domains/<domain>/federationConfiguration")
def federation_configuration(domain: str):
    """List the domain's federation (one internalDomainFederation; none for a managed domain)."""
    require(*READ_FEDERATION)
    simulator = sim()
    if domain.lower() != simulator.seed.tenant_domain.lower():
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{domain}' does not exist or one of its "
                                                            "queried reference-property objects are not present.")
    base = simulator.base_url
    return jsonify({"@odata.context": context_url(f"domains('{domain}')/federationConfiguration"), "value": [{
        "@odata.type": "#microsoft.graph.internalDomainFederation",
        "id": "6601d14b-d113-8f64-fda2-9b5ddda18ecc", "displayName": "University AD FS",
        "issuerUri": f"{base}/adfs/services/trust", "metadataExchangeUri": f"{base}/adfs/services/trust/mex",
        "passiveSignInUri": f"{base}/adfs/ls/", "signOutUri": f"{base}/adfs/ls/?wa=wsignout1.0",
        "preferredAuthenticationProtocol": "wsFed",
        "federatedIdpMfaBehavior": simulator.world.federated_idp_mfa_behavior,
        "isSignedAuthenticationRequestRequired": False, "promptLoginBehavior": "nativeSupport",
    }]})


@bp.post("/users/<user_ref>/checkMemberGroups")
def check_member_groups(user_ref: str):
    """Return which of up to 20 group ids the user is a member of (transitively, in Graph)."""
    user = permitted_user(user_ref, READ_GROUP_MEMBERS)
    body = request.get_json(silent=True)
    wanted = body.get("groupIds") if isinstance(body, dict) else None
    if not isinstance(wanted, list) or not all(isinstance(g, str) for g in wanted) or not 1 <= len(wanted) <= 20:
        return graph_error(400, "Request_BadRequest", "groupIds must list 1 to 20 group ids.")
    groups = sim().world.groups_of(user.id)
    return jsonify({"@odata.context": context_url("Collection(Edm.String)"),
                    "value": [g for g in wanted if g in groups]})


@bp.get("/users/<user_ref>/registeredDevices")
def registered_devices(user_ref: str):
    user = permitted_user(user_ref, READ_USERS)
    return jsonify({"@odata.context": context_url("directoryObjects"),
                    "value": [device_json(d) for d in sim().world.devices_of(user.id)]})


@bp.get("/reports/authenticationMethods/userRegistrationDetails/<user_ref>")
def registration_details(user_ref: str):
    """Report registration as of `report_lag_seconds` ago: the report lags behind method changes."""
    require(*READ_AUDIT)
    world = sim().world
    user = world.find_user(user_ref)
    if user is None or user.id.lower() != user_ref.lower():  # this report is keyed by object id only
        return not_found(user_ref)
    as_of = world.clock.now() - dt.timedelta(seconds=world.tunables.report_lag_seconds)
    kinds = [m.kind for m in world.methods_of(user.id, at=as_of) if m.kind in REGISTRATION_NAMES]
    registered = [REGISTRATION_NAMES[k] for k in kinds]
    strong = [k for k in kinds if k not in ("email", "temporaryAccessPass")]
    preferred = "push" if "microsoftAuthenticator" in kinds else "sms" if "phone" in kinds else "none"
    return jsonify({
        "@odata.context": context_url("reports/authenticationMethods/userRegistrationDetails/$entity"),
        "id": user.id, "userPrincipalName": user.upn, "userDisplayName": user.display_name, "userType": "member",
        "isAdmin": user.privileged, "isSsprRegistered": bool(strong), "isSsprEnabled": False,
        "isSsprCapable": False, "isMfaRegistered": bool(strong), "isMfaCapable": bool(strong),
        "isPasswordlessCapable": "microsoftAuthenticator" in kinds or "fido2" in kinds,
        "methodsRegistered": registered, "isSystemPreferredAuthenticationMethodEnabled": True,
        "systemPreferredAuthenticationMethods": registered[:1],
        "userPreferredMethodForSecondaryAuthentication": preferred, "lastUpdatedDateTime": iso(as_of),
    })


def parse_filter(text: str):
    """Parse `field op value [and ...]` for signIns; return predicates or raise ValueError."""
    predicates = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        match = FILTER_CLAUSE.match(clause)
        if not match:
            raise ValueError(clause)
        field, op, raw = match.group(1), match.group(2).lower(), match.group(3)
        if field in ("userId", "appId", "userPrincipalName", "id") and op == "eq" and raw.startswith("'"):
            wanted = raw[1:-1].replace("''", "'").lower()
            attr = {"userId": "user_id", "appId": "app_id", "userPrincipalName": "upn", "id": "id"}[field]
            predicates.append(lambda s, attr=attr, wanted=wanted: s[attr].lower() == wanted)
        elif field == "createdDateTime" and not raw.startswith("'"):
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            compare = {"eq": lambda a, b: a == b, "ge": lambda a, b: a >= b, "gt": lambda a, b: a > b,
                       "le": lambda a, b: a <= b, "lt": lambda a, b: a < b}[op]
            predicates.append(lambda s, compare=compare, moment=moment: compare(s["created"], moment))
        else:
            raise ValueError(clause)
    return predicates


@bp.get("/auditLogs/signIns")
def sign_ins():
    require(*READ_AUDIT)
    try:
        predicates = parse_filter(request.args.get("$filter", ""))
    except ValueError as exc:
        return graph_error(400, "BadRequest", f"Invalid filter clause: {exc}")
    top_raw, skip_raw = request.args.get("$top", str(SIGNIN_MAX_TOP)), request.args.get("$skiptoken", "0")
    if not top_raw.isdigit() or not 1 <= int(top_raw) <= SIGNIN_MAX_TOP:
        return graph_error(400, "BadRequest", f"Invalid page size specified: '{top_raw}'. Must be between 1 and "
                                              f"{SIGNIN_MAX_TOP} inclusive.")
    if not skip_raw.isdigit():
        return graph_error(400, "BadRequest", "Invalid skip token.")
    top, skip = int(top_raw), int(skip_raw)
    world = sim().world
    with world.lock:
        rows = []
        for s in sorted(world.sign_ins, key=lambda s: s.created, reverse=True):
            user = world.users.get(s.user_id)
            row = {"id": s.id, "user_id": s.user_id, "app_id": s.app_id, "created": s.created,
                   "upn": user.upn if user else "", "entry": s, "user": user}
            if all(p(row) for p in predicates):
                rows.append(row)
    page = rows[skip:skip + top]
    body = {"@odata.context": context_url("auditLogs/signIns"), "value": [sign_in_json(r) for r in page]}
    if skip + top < len(rows):
        body["@odata.nextLink"] = next_link("/auditLogs/signIns", skip + top)
    return jsonify(body)


def sign_in_json(row: dict) -> dict:
    s, user = row["entry"], row["user"]
    return {
        "id": s.id, "createdDateTime": iso(s.created), "userDisplayName": user.display_name if user else "",
        "userPrincipalName": row["upn"], "userId": s.user_id, "appId": s.app_id,
        "appDisplayName": s.app_display_name, "ipAddress": "192.0.2.10", "clientAppUsed": s.client_app_used,
        "correlationId": s.id, "conditionalAccessStatus": "notApplied", "isInteractive": True,
        "riskDetail": "none", "riskLevelAggregated": "none", "riskLevelDuringSignIn": "none", "riskState": "none",
        "riskEventTypes_v2": [], "resourceDisplayName": s.resource_display_name,
        "resourceId": GRAPH_APP_ID, "status": {"errorCode": s.error_code, "failureReason": "Other.",
                                               "additionalDetails": None},
        "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "Ios", "browser": "",
                         "isCompliant": False, "isManaged": False, "trustType": ""},
        "location": {"city": "Edinburgh", "state": "Scotland", "countryOrRegion": "GB",
                     "geoCoordinates": {"altitude": None, "latitude": 55.95, "longitude": -3.19}},
        "appliedConditionalAccessPolicies": [],
    }


@bp.post("/$batch")
def batch():
    """Run up to 20 requests; the batch answers 200 and each part carries its own status."""
    body = request.get_json(silent=True)
    parts = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        return graph_error(400, "BadRequest", "Invalid batch payload format.")
    if len(parts) > BATCH_LIMIT:
        return graph_error(400, "BadRequest", f"The number of batch requests exceeds the limit of {BATCH_LIMIT}.")
    ids = [str(p.get("id", "")) for p in parts]
    if "" in ids or len(set(ids)) != len(ids):
        return graph_error(400, "BadRequest", "Each batch request needs a unique, non-empty id.")
    statuses: dict[str, int] = {}
    answers = []
    for part in parts:
        answer = run_part(part, statuses)
        statuses[answer["id"]] = answer["status"]
        answers.append(answer)
    return jsonify({"responses": answers})


def part_error(part_id: str, status: int, code: str, message: str) -> dict:
    return {"id": part_id, "status": status, "headers": {"Content-Type": "application/json"},
            "body": {"error": {"code": code, "message": message}}}


def run_part(part: dict, statuses: dict[str, int]) -> dict:
    part_id, url, method = str(part["id"]), str(part.get("url", "")), str(part.get("method", "")).upper()
    if "://" in url or url.lower().startswith("http"):
        return part_error(part_id, 400, "BadRequest", "Invalid request URI: batch requests need a URL relative "
                                                      "to the version, such as /users/{id}.")
    if method not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        return part_error(part_id, 400, "BadRequest", f"Invalid method '{method}'.")
    depends = part.get("dependsOn") or []
    if any(not 200 <= statuses.get(str(d), 0) < 300 for d in depends):
        return part_error(part_id, 424, "FailedDependency", "A request this request depends on failed.")
    path, _, query = ("/" + url.lstrip("/")).partition("?")
    headers = {k: v for k, v in (part.get("headers") or {}).items() if isinstance(v, str)}
    headers["Authorization"] = request.headers.get("Authorization", "")
    body = part.get("body")
    builder = EnvironBuilder(path=PREFIX + path, query_string=query, method=method, headers=headers,
                             base_url=request.host_url, data=json.dumps(body) if body is not None else None,
                             content_type="application/json" if body is not None else None)
    environ = builder.get_environ()
    environ[BATCH_PART] = True
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(response_headers)
        return io.BytesIO().write

    chunks = current_app.wsgi_app(environ, start_response)
    try:
        raw = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    answer_headers = {k: v for k, v in captured["headers"].items() if k in ("Content-Type", "Retry-After", "Location")}
    answer = {"id": part_id, "status": captured["status"], "headers": answer_headers}
    if raw:
        try:
            answer["body"] = json.loads(raw)
        except ValueError:
            answer["body"] = raw.decode(errors="replace")
    return answer
