"""Microsoft Graph through msgraph-sdk: evidence in one $batch, methods in bulk, Temporary Access Pass.

The SDK is async and the portal is not: every call runs on one event loop per process, in a daemon
thread made lazily and re-made after fork (TEST-INFRA.md: asyncio.run() per call breaks keep-alive).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import json
import logging
import os
import re
import threading
import time
from collections import deque
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote, urlparse

import httpx
import msal
import requests
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import RetryHandlerOption
from kiota_serialization_json.json_parse_node import JsonParseNode
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from app.adapters.budget import UnlimitedBudget
from app.adapters.http import forget_connections_after_fork, make_session, make_ssl_context
from app.domain.evidence import (
    AUTHENTICATOR_APP_ID,
    METHOD_KINDS,
    UNKNOWN_METHOD,
    AuthMethod,
    Device,
    EntraUser,
    Evidence,
    EvidenceSweep,
    GraphError,
    GraphThrottled,
    GraphUnavailable,
    SignIn,
    TemporaryAccessPass,
)
from app.domain.ports import DIRECTORY, REPORTS, RequestBudget
from app.domain.tap import ALL_USERS, TapPolicy

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BATCH_LIMIT = 20  # Graph's documented maximum of requests in one $batch
# A page a person waits for (diagnosis, unlock) honours Graph's Retry-After up to this long; beyond it the
# page says Microsoft is busy and tries again by itself (app/web/errors.py).
PAGE_WAIT = 5.0
BUDGET_WAIT = 2.0  # how long other calls (status checks, the worker) wait for the budget or a throttled part
PART_RETRY_ROUNDS = 2  # resends of the $batch parts Graph answered 429, each after their longest Retry-After
FALLBACK_BACKOFF = 2.0  # Retry-After missing on a 429: back off exponentially from this
MAX_BACKOFF = 60.0
TAP_MINUTES = (10, 43200)  # Graph: 10 minutes to 30 days
TAP_POLICY_PATH = "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass"
# The tenant's TAP policy changes seldom; reading it once per few minutes per process spares the budget.
TAP_POLICY_CACHE_SECONDS = 300.0
# Characters Entra allows in a UPN's user part (learn.microsoft.com: "A-Z a-z 0-9 ' . - _ ! # ^ ~").
_UPN = re.compile(r"^[A-Za-z0-9'.\-_!#^~]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SIGN_INS_SKIPPED = "sign-in history not checked: budget"
# A sweep of many people (sweep_evidence): Graph takes at most 15 values in one `in` filter by default
# (learn.microsoft.com/graph/filter-query-parameter), and at most 1,000 sign-ins a page ($top).
USERS_PER_FILTER = 15
SIGN_IN_PAGE_SIZE = 1000
SWEEP_WAIT = 60.0  # a bulk job waits this long at most for the budget or a Retry-After before a part fails
USER_SELECT = "id,userPrincipalName,displayName,accountEnabled"
DEVICE_SELECT = "id,displayName,operatingSystem"

# What the first call in a process imports besides the models (tests/adapters/test_graph_models.py lists any other):
# httpx's HTTP/1.1 and HTTP/2 over asyncio, MSAL's check of its optional extension, and the pass's request builders.
FIRST_CALL_MODULES = (
    "anyio._backends._asyncio", "httpcore", "h11", "h2.connection", "concurrent.futures.thread",
    "msal_extensions.token_cache", "kiota_abstractions.default_query_parameters",
    "msgraph.generated.models.o_data_errors.o_data_error", "msgraph.graph_service_client",
    "msgraph.generated.models.temporary_access_pass_authentication_method",
    "msgraph.generated.users.users_request_builder", "msgraph.generated.users.item.user_item_request_builder",
    "msgraph.generated.users.item.authentication.authentication_request_builder",
    "msgraph.generated.users.item.authentication.temporary_access_pass_methods."
    "temporary_access_pass_methods_request_builder",
)

# The round trips of the call in progress (counted by the transport, in the call's own task).
_CALL_TRIPS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("graph_call_trips", default=None)


def validate_upn(upn: str) -> str:
    """Return the UPN if it has the shape Entra accepts; raise ValueError otherwise (before any request)."""
    if not isinstance(upn, str) or not _UPN.match(upn) or ".." in upn or upn.startswith("."):
        raise ValueError(f"not a user principal name: {upn!r}")
    return upn


def validate_user_id(user_id: str) -> str:
    """Return an Entra object id or UPN unchanged; raise ValueError for anything else."""
    if isinstance(user_id, str) and _GUID.match(user_id):
        return user_id
    return validate_upn(user_id)


def odata_string(value: str) -> str:
    """Quote a value as an OData string literal (a single quote is escaped by doubling it)."""
    return "'" + value.replace("'", "''") + "'"


def user_path(user_id: str) -> str:
    """Return /users/{id} with the id percent-encoded as one path segment."""
    return "/users/" + quote(user_id, safe="@")


def evidence_requests(upn: str) -> list[dict[str, str]]:
    """Return the $batch parts that gather the evidence about one UPN."""
    user = user_path(validate_upn(upn))
    sign_in_filter = (f"userPrincipalName eq {odata_string(upn)} "
                      f"and appId eq {odata_string(AUTHENTICATOR_APP_ID)}")
    return [
        {"id": "user", "method": "GET", "url": f"{user}?$select=id,userPrincipalName,displayName,accountEnabled"},
        {"id": "methods", "method": "GET", "url": f"{user}/authentication/methods"},
        {"id": "devices", "method": "GET", "url": f"{user}/registeredDevices?$select=id,displayName,operatingSystem"},
        {"id": "sign_ins", "method": "GET",
         "url": f"/auditLogs/signIns?$filter={quote(sign_in_filter, safe='')}&$top=5"},
    ]


def users_request(upns: Sequence[str]) -> str:
    """Return the relative URL that reads up to 15 users by UPN with their registered devices (one request)."""
    if not 1 <= len(upns) <= USERS_PER_FILTER:
        raise ValueError(f"one user filter takes 1 to {USERS_PER_FILTER} UPNs")
    wanted = "userPrincipalName in (" + ",".join(odata_string(validate_upn(u)) for u in upns) + ")"
    return (f"/users?$filter={quote(wanted, safe='')}&$select={USER_SELECT}"
            f"&$expand={quote(f'registeredDevices($select={DEVICE_SELECT})', safe='')}")


def tenant_sign_ins_request(since: datetime, page_size: int = SIGN_IN_PAGE_SIZE) -> str:
    """Return the relative URL of the first page of the Authenticator app's sign-ins, tenant-wide, since a time."""
    moment = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    wanted = f"appId eq {odata_string(AUTHENTICATOR_APP_ID)} and createdDateTime ge {moment}"
    return f"/auditLogs/signIns?$filter={quote(wanted, safe='')}&$top={page_size}"


def relative_link(link: str, graph_url: str) -> str:
    """Turn Graph's absolute @odata.nextLink into a $batch part URL; refuse a link outside this Graph."""
    parsed, base = urlparse(link), urlparse(graph_url)
    if (parsed.scheme != "https" or parsed.netloc.lower() != base.netloc.lower()
            or not parsed.path.startswith(base.path.rstrip("/") + "/")):
        raise GraphError("Graph sent a next page link outside its own address", 502, "bad_next_link")
    return parsed.path[len(base.path.rstrip("/")):] + (f"?{parsed.query}" if parsed.query else "")


def chunks(items: Sequence[str], size: int = BATCH_LIMIT) -> list[list[str]]:
    """Split items into lists of at most `size`."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def parse_retry_after(value: str | None) -> float | None:
    """Read Retry-After as seconds (Graph may send fractions) or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def error_for(status: int, body: Any, headers: Mapping[str, str] | None, what: str) -> GraphError:
    """Turn a failed Graph answer (a whole response or one $batch part) into the matching GraphError."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = f"Graph answered {status}{f' ({code})' if code else ''} for {what}"
    said = str(error.get("message", ""))[:300] if isinstance(error, dict) else ""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = parse_retry_after(lowered.get("retry-after"))
    if status == 429:
        return GraphThrottled(message, status, code, retry_after, said)
    if status >= 500:
        return GraphUnavailable(message, status, code, retry_after, said)
    return GraphError(message, status, code, graph_message=said)


def _parse(body: Any, model: type) -> Any:
    """Parse a JSON body into a typed msgraph model with the SDK's own parse node."""
    return JsonParseNode(body if isinstance(body, dict) else {}).get_object_value(model)


def entity_fields(entity: Any) -> dict[str, Callable[[Any], None]]:
    """Return msgraph Entity's field table (id and @odata.type) without importing every subclass of Entity."""
    return {"id": lambda n: setattr(entity, "id", n.get_str_value()),
            "@odata.type": lambda n: setattr(entity, "odata_type", n.get_str_value())}


def _lighten_entity() -> None:
    """Give msgraph's Entity the same field table without its 1,194 unused imports (once per process)."""
    from msgraph.generated.models.entity import Entity

    # Every model's field table ends in Entity's, whose generated code imports all 1,194 subclasses of Entity
    # and uses none: parsing one User cost 2.5 s and 33 MiB. tests/adapters/test_graph_models.py checks that
    # the table is the SDK's own, so an SDK that adds a field there fails the test instead of losing it.
    if Entity.get_field_deserializers is not entity_fields:
        Entity.get_field_deserializers = entity_fields


def _models():
    # Imported on first use (or by warm_up): the four models the evidence is parsed into, and their fields' types.
    _lighten_entity()
    from msgraph.generated.models.authentication_method_collection_response import (
        AuthenticationMethodCollectionResponse,
    )
    from msgraph.generated.models.directory_object_collection_response import DirectoryObjectCollectionResponse
    from msgraph.generated.models.sign_in_collection_response import SignInCollectionResponse
    from msgraph.generated.models.user import User
    return User, AuthenticationMethodCollectionResponse, DirectoryObjectCollectionResponse, SignInCollectionResponse


def map_tap_policy(body: Any) -> TapPolicy:
    """Map temporaryAccessPassAuthenticationMethodConfiguration to TapPolicy (group targets by id)."""
    if not isinstance(body, dict):
        raise ValueError("the TAP policy is not a JSON object")

    def ids(name: str) -> tuple[str, ...]:
        return tuple(str(t.get("id", "")) for t in body.get(name) or () if isinstance(t, dict) and t.get("id"))

    def minutes(name: str, default: int) -> int:
        value = body.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return TapPolicy(
        enabled=body.get("state") == "enabled", include_group_ids=ids("includeTargets") or (ALL_USERS,),
        exclude_group_ids=ids("excludeTargets"), minimum_minutes=minutes("minimumLifetimeInMinutes", 60),
        maximum_minutes=minutes("maximumLifetimeInMinutes", 480),
        default_minutes=minutes("defaultLifetimeInMinutes", 60), usable_once=body.get("isUsableOnce") is True,
        default_length=minutes("defaultLength", 8))


def map_user(body: Any) -> EntraUser:
    """Map a user part to EntraUser."""
    user = _parse(body, _models()[0])
    if not user.id:
        raise ValueError("a user without an id")
    return EntraUser(id=user.id or "", upn=user.user_principal_name or "", display_name=user.display_name or "",
                     account_enabled=bool(user.account_enabled))


def map_methods(body: Any) -> tuple[AuthMethod, ...]:
    """Map an authentication/methods part to AuthMethods (kind from @odata.type)."""
    page = _parse(body, _models()[1])
    return tuple(_method(m) for m in page.value or ())


def _method(model: Any) -> AuthMethod:
    """Map one typed method; a type this portal does not know is kept as "unknown" (it counts as a method)."""
    kind, name = method_kind_and_name(model.odata_type or "", getattr(model, "display_name", None) or "",
                                      (model.additional_data or {}).get("displayName"))
    return AuthMethod(id=model.id or "", kind=kind, display_name=name,
                      created=getattr(model, "created_date_time", None))


def method_kind_and_name(odata_type: str, display_name: str, unknown_name: Any) -> tuple[str, str]:
    """Return a method's kind (from @odata.type) and the name the desk sees (bounded)."""
    kind = METHOD_KINDS.get(odata_type, UNKNOWN_METHOD)
    name = display_name
    if kind == UNKNOWN_METHOD:
        # An unknown type's own name (or the type's) tells the desk what it is.
        name = str(unknown_name or odata_type.rsplit(".", 1)[-1])
    return kind, name[:80]


def map_devices(body: Any) -> tuple[Device, ...]:
    """Map a registeredDevices part (directory objects) to Devices."""
    page = _parse(body, _models()[2])
    return tuple(_device(d) for d in page.value or ())


def _device(model: Any) -> Device:
    """Map one typed directory object (a device) to Device."""
    return Device(id=model.id or "", display_name=getattr(model, "display_name", None) or "",
                  operating_system=getattr(model, "operating_system", None) or "")


def map_sign_ins(body: Any) -> tuple[SignIn, ...]:
    """Map an auditLogs/signIns part to SignIns."""
    page = _parse(body, _models()[3])
    return tuple(
        SignIn(id=s.id or "", created=s.created_date_time, app_id=s.app_id or "",
               app_display_name=s.app_display_name or "",
               status_code=(s.status.error_code or 0) if s.status else 0, client_app=s.client_app_used or "")
        for s in page.value or ()
    )


# A sweep reads thousands of objects: it maps Graph's JSON field by field (each type checked) instead of through
# the SDK's typed models, which cost milliseconds an object (each builds msgraph's whole field table).

def map_user_page(body: Any) -> tuple[tuple[EntraUser, tuple[Device, ...]], ...]:
    """Map a page of users with their expanded registeredDevices to (EntraUser, Devices) pairs."""
    found = []
    for row in _rows(body):
        devices = row.get("registeredDevices") or []
        if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
            raise ValueError("registeredDevices is not a list of objects")
        user = EntraUser(id=_text(row, "id"), upn=_text(row, "userPrincipalName"),
                         display_name=_text(row, "displayName"), account_enabled=row.get("accountEnabled") is True)
        if not user.id:
            raise ValueError("a user without an id")
        found.append((user, tuple(Device(id=_text(d, "id"), display_name=_text(d, "displayName"),
                                         operating_system=_text(d, "operatingSystem")) for d in devices)))
    return tuple(found)


def map_method_rows(body: Any) -> tuple[AuthMethod, ...]:
    """Map an authentication/methods part to AuthMethods (the same kinds and names as map_methods)."""
    found = []
    for row in _rows(body):
        kind, name = method_kind_and_name(_text(row, "@odata.type"), _text(row, "displayName"),
                                          _text(row, "displayName"))
        found.append(AuthMethod(id=_text(row, "id"), kind=kind, display_name=name,
                                created=_moment(row.get("createdDateTime"))))
    return tuple(found)


def _rows(body: Any) -> list[dict]:
    """Return a collection's `value` list of objects; refuse any other shape."""
    rows = body.get("value") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("a collection without a value list of objects")
    return rows


def map_sign_in_page(body: Any) -> tuple[tuple[tuple[str, str, SignIn], ...], str]:
    """Map a sign-ins page to ((userId, lower-cased UPN, SignIn), ...) and its @odata.nextLink ("" on the last).

    A page holds up to 1,000 sign-ins (mapped from the JSON, as the rest of a sweep).
    """
    rows = _rows(body)
    link = body.get("@odata.nextLink")
    if not isinstance(link, (str, type(None))):
        raise ValueError("@odata.nextLink is not a string")
    found = []
    for row in rows:
        status = row.get("status") if isinstance(row.get("status"), dict) else {}
        code = status.get("errorCode")
        sign_in = SignIn(id=_text(row, "id"), created=_moment(row.get("createdDateTime")), app_id=_text(row, "appId"),
                         app_display_name=_text(row, "appDisplayName"),
                         status_code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
                         client_app=_text(row, "clientAppUsed"))
        found.append((_text(row, "userId").lower(), _text(row, "userPrincipalName").lower(), sign_in))
    return tuple(found), link or ""


def _text(row: Mapping[str, Any], name: str) -> str:
    """Return a string field of a JSON object ("" when absent); a value of another type is refused."""
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value[:200]


def _moment(value: Any) -> datetime | None:
    """Read an ISO 8601 time as Graph writes it (Z or an offset); None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a time that is not a string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


EVIDENCE_MAPPERS: dict[str, Callable[[Any], Any]] = {
    "user": map_user, "methods": map_methods, "devices": map_devices, "sign_ins": map_sign_ins}


def read_part(answer: tuple[int, Mapping[str, str], Any] | None, mapper: Callable[[Any], Any], what: str) -> Any:
    """Map one $batch answer with `mapper`, or return the GraphError it stands for (never raise)."""
    if answer is None:
        return GraphError(f"Graph gave no answer for {what}", 0, "no_answer")
    status, headers, body = answer
    if not 200 <= status < 300:
        return error_for(status, body, headers, what)
    try:
        return mapper(body)
    except Exception as error:  # a body the SDK's models cannot read fails that part, not the whole call
        return GraphError(f"Graph's answer for {what} could not be read ({error.__class__.__name__})", status,
                          "unreadable")


class RequestCounter:
    """A thread-safe count of HTTP requests sent to Graph."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


class _CountingTransport(httpx.AsyncHTTPTransport):
    """The innermost transport: each request it sends is one real round trip (retries included)."""

    def __init__(self, counter: RequestCounter, **kwargs: Any):
        super().__init__(**kwargs)
        self._counter = counter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._counter.add()
        trips = _CALL_TRIPS.get()
        if trips is not None:
            trips[0] += 1
        return await super().handle_async_request(request)


class BoundedRetryHandler(RetryHandler):
    """Kiota's retry middleware, but it reads fractional Retry-After and gives up instead of sleeping past max_wait.

    The stock handler reads only whole seconds (Graph sends "2.128": it then retried after about 0.5 s, too
    early) and honours any Retry-After up to 180 s; the caller (and the shared budget) decide instead.
    """

    def __init__(self, options: RetryHandlerOption, max_wait: float = PAGE_WAIT):
        super().__init__(options)
        self.max_wait = max_wait

    def _parse_retry_after(self, retry_after: str) -> float | None:
        return parse_retry_after(retry_after)

    def get_delay_time(self, retry_count, response=None, delay=RetryHandlerOption.DEFAULT_DELAY) -> float:
        wanted = super().get_delay_time(retry_count, response, delay)
        return wanted if wanted <= self.max_wait else RetryHandlerOption.MAX_DELAY  # MAX_DELAY means "no retry"


class _MsalTokenProvider(AccessTokenProvider):
    """Hand kiota the app-only token MSAL holds (MSAL caches it and renews it before it expires)."""

    def __init__(self, acquire: Callable[[], str], graph_host: str):
        self._acquire = acquire
        self._hosts = AllowedHostsValidator([graph_host])
        self._graph_host = graph_host

    async def get_authorization_token(self, uri: str, additional_authentication_context=None) -> str:
        if urlparse(uri).hostname != self._graph_host:
            return ""  # never send the Graph token anywhere else
        return await asyncio.to_thread(self._acquire)

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


class _EventLoopThread:
    """One event loop per process, running in a daemon thread; made on first use and again after fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _after_fork(self) -> None:
        # The parent's loop thread does not exist in the child; its lock may have been held at fork time.
        self._lock = threading.Lock()
        self._loop, self._pid = None, 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="graph-event-loop", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine, timeout: float):
        """Run a coroutine on the process's loop and wait at most `timeout` seconds for it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise GraphUnavailable(f"Graph did not answer within {timeout:.0f} s") from None


_LOOP = _EventLoopThread()
forget_connections_after_fork(_LOOP)


class GraphClient:
    """The Graph Protocol over msgraph-sdk with an app-only token, a shared request budget and bounded waits."""

    sign_in_page_size = SIGN_IN_PAGE_SIZE  # sign-ins a page in sweep_evidence (tests make it small to see paging)

    def __init__(self, authority: str, client_id: str, client_secret: str, graph_url: str, *,
                 ca_file: str | None = None, budget: RequestBudget | None = None, interactive_retries: int = 1,
                 timeout: float = 20.0, scope: str = GRAPH_SCOPE, budget_wait: float = BUDGET_WAIT,
                 page_wait: float = PAGE_WAIT):
        if urlparse(graph_url).scheme != "https":
            raise ValueError(f"graph_url must be an https URL, not {graph_url!r}")
        if not (authority and client_id and client_secret):
            raise ValueError("Graph needs an authority, a client id and a client secret")
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.graph_url = graph_url.rstrip("/")  # httpx would make /v1.0//users from a trailing slash (a 308 each)
        self.ca_file = ca_file
        self.budget = budget or UnlimitedBudget()
        self.interactive_retries = interactive_retries
        self.timeout = timeout
        self.scope = scope
        self.budget_wait = budget_wait
        self.page_wait = page_wait
        self.counter = RequestCounter()
        self._session = make_session(ca_file, timeout=timeout)
        self._msal: msal.ConfidentialClientApplication | None = None
        self._adapter = None
        self._adapter_lock = threading.Lock()
        self._msal_lock = threading.Lock()
        self._strikes: dict[str, int] = {}  # consecutive 429s per budget category, for the fallback back-off
        self._tap_policy: tuple[float, TapPolicy] | None = None  # (when read, the policy)
        forget_connections_after_fork(self)

    @classmethod
    def from_settings(cls, settings, budget: RequestBudget | None = None, **options: Any) -> "GraphClient":
        """Build the Graph adapter from Settings (graph_authority, graph_client_id, graph_client_secret, ...)."""
        return cls(settings.graph_authority, settings.graph_client_id, settings.graph_client_secret,
                   settings.graph_url, ca_file=settings.ca_bundle or None, budget=budget, **options)

    @property
    def requests_sent(self) -> int:
        """Return how many HTTP requests this client has sent to Graph (retries included)."""
        return self.counter.value

    # ---- the Graph Protocol -------------------------------------------------------------------------

    def gather_evidence(self, upn: str) -> Evidence:
        """Fetch user, methods, devices and Authenticator sign-ins in ONE $batch; failed parts go to errors."""
        parts = evidence_requests(upn)
        if not self.budget.take(DIRECTORY, 3, wait_seconds=self.page_wait):
            raise GraphThrottled("Graph budget exhausted: evidence not gathered", 429, "budget",
                                 self._blocked_for(DIRECTORY))
        errors: dict[str, GraphError] = {}
        if not self.budget.take(REPORTS, 1, wait_seconds=0.0):
            parts = [p for p in parts if p["id"] != "sign_ins"]
            errors["sign_ins"] = GraphThrottled(SIGN_INS_SKIPPED, 429, "budget")
        answers, trips = self._send_parts(parts, self.interactive_retries, self.page_wait)
        results: dict[str, Any] = {}
        for part in parts:
            outcome = read_part(answers.get(part["id"]), EVIDENCE_MAPPERS[part["id"]], part["id"])
            if isinstance(outcome, GraphError):
                errors[part["id"]] = outcome
            else:
                results[part["id"]] = outcome
        sent = {p["id"] for p in parts}
        self._settle(DIRECTORY, [e for k, e in errors.items() if k in sent and k != "sign_ins"])
        if "sign_ins" in sent:
            self._settle(REPORTS, [errors["sign_ins"]] if "sign_ins" in errors else [])
        if errors.get("user") is not None and errors["user"].status == 404:
            # A user Entra does not know has no methods or devices either: one error says it.
            errors = {k: v for k, v in errors.items() if k == "user" or v.status != 404}
        return Evidence(
            user=results.get("user"),
            methods=results.get("methods", ()),
            authenticator_sign_ins=results.get("sign_ins", ()),
            devices=results.get("devices", ()),
            errors=errors,
            round_trips=trips,
        )

    def methods_for(self, user_ids: Sequence[str]) -> dict[str, tuple[AuthMethod, ...] | GraphError]:
        """Fetch the methods of many users, 20 per $batch; each failure is that user's result, never raised."""
        wanted = list(dict.fromkeys(user_ids))
        results: dict[str, tuple[AuthMethod, ...] | GraphError] = {}
        for user_id in wanted:
            try:
                validate_user_id(user_id)
            except ValueError as error:
                results[user_id] = GraphError(str(error), 400, "invalid_user_id")
        pending = [u for u in wanted if u not in results]
        stop: GraphError | None = None
        for chunk in chunks(pending):
            if stop is None and not self.budget.take(DIRECTORY, len(chunk), wait_seconds=self.budget_wait):
                stop = GraphThrottled("methods not checked: budget", 429, "budget", self._blocked_for(DIRECTORY))
            if stop is not None:
                results.update({u: stop for u in chunk})
                continue
            answers = self._methods_chunk(chunk)
            results.update(answers)
            throttled = [r for r in answers.values() if isinstance(r, GraphThrottled)]
            if throttled:
                # Parts are throttled one by one: once Graph says 429, the rest would only spend more of the budget.
                stop = GraphThrottled("methods not checked: Graph asked to wait", 429, "throttled",
                                      max((t.retry_after or 0.0) for t in throttled) or None)
        return {u: results[u] for u in wanted}

    def sweep_evidence(self, upns: Sequence[str], *, since: datetime,
                       progress: Callable[[int, int], None] | None = None,
                       max_wait: float = SWEEP_WAIT) -> EvidenceSweep:
        """Gather the evidence about many people in $batch requests of 20 parts, inside the budget.

        Parts: users 15 to a filter with their devices expanded, each person's methods, and the Authenticator
        app's sign-ins for the whole tenant since `since`, page after page (@odata.nextLink), one page riding in
        a batch whenever the reports budget (5 per 10 s) allows. A failed part fails only the people it was for.
        """
        started = time.monotonic()
        sweep = _Sweep(upns)
        queue: deque[dict[str, str]] = deque()
        for i, chunk in enumerate(chunks(sweep.valid, USERS_PER_FILTER)):
            queue.append({"id": f"users-{i}", "method": "GET", "url": users_request(chunk)})
            sweep.chunk_of[f"users-{i}"] = chunk
        for i, upn in enumerate(sweep.valid):
            queue.append({"id": f"methods-{i}", "method": "GET", "url": f"{user_path(upn)}/authentication/methods"})
            sweep.upn_of[f"methods-{i}"] = upn
        next_page: str | None = tenant_sign_ins_request(since, self.sign_in_page_size) if sweep.valid else None
        trips = pages = 0
        while queue or next_page:
            batch: list[dict[str, str]] = []
            if next_page is not None:
                # A sign-in page waits for the reports budget only when nothing else is left to send.
                if self.budget.take(REPORTS, 1, wait_seconds=0.0 if queue else max_wait):
                    batch.append({"id": f"sign_ins-{pages}", "method": "GET", "url": next_page})
                    pages += 1
                    next_page = None
                elif not queue:
                    sweep.sign_in_error = GraphThrottled(SIGN_INS_SKIPPED, 429, "budget", self._blocked_for(REPORTS))
                    next_page = None
                    break
            directory_parts = [queue.popleft() for _ in range(min(BATCH_LIMIT - len(batch), len(queue)))]
            if directory_parts and not self.budget.take(DIRECTORY, len(directory_parts), wait_seconds=max_wait):
                refused = GraphThrottled("not checked: budget", 429, "budget", self._blocked_for(DIRECTORY))
                for part in [*directory_parts, *queue]:
                    sweep.record(part["id"], refused)
                queue.clear()
                directory_parts = []
            batch.extend(directory_parts)
            if not batch:
                continue
            try:
                answers, sent = self._send_parts(batch, 0, max_wait)
            except GraphError as error:  # the batch failed as a whole: every part of it fails with it
                waited = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
                answers, sent = {p["id"]: (error.status, waited, {"error": {"code": error.code}}) for p in batch}, 0
            trips += sent
            failures = []
            for part in batch:
                if part["id"].startswith("sign_ins-"):
                    outcome = read_part(answers.get(part["id"]), map_sign_in_page, "the Authenticator sign-ins")
                    if isinstance(outcome, GraphError):
                        sweep.sign_in_error = outcome
                        self._settle(REPORTS, [outcome])
                        continue
                    self._settle(REPORTS, [])
                    rows, link = outcome
                    sweep.sign_ins.extend(rows)
                    try:
                        next_page = relative_link(link, self.graph_url) if link else None
                    except GraphError as error:
                        sweep.sign_in_error = error
                else:
                    mapper = map_user_page if part["id"].startswith("users-") else map_method_rows
                    outcome = read_part(answers.get(part["id"]), mapper, part["id"])  # no answer: a GraphError
                    sweep.record(part["id"], outcome)
                    if isinstance(outcome, GraphError):
                        failures.append(outcome)
            self._settle(DIRECTORY, failures)
            if progress is not None:
                progress(sweep.methods_done, len(sweep.valid))
        return EvidenceSweep(sweep.evidence(), requests=trips, sign_in_pages=pages,
                             seconds=time.monotonic() - started)

    def create_temporary_access_pass(self, user_id: str, lifetime_minutes: int = 60,
                                     one_time: bool = True) -> TemporaryAccessPass:
        """Create a Temporary Access Pass; its code is in the result only, never logged."""
        validate_user_id(user_id)
        if not TAP_MINUTES[0] <= int(lifetime_minutes) <= TAP_MINUTES[1]:
            raise ValueError(f"a Temporary Access Pass lives {TAP_MINUTES[0]} to {TAP_MINUTES[1]} minutes")
        if not self.budget.take(DIRECTORY, 1, wait_seconds=self.budget_wait):
            raise GraphThrottled("Graph budget exhausted: no Temporary Access Pass created", 429, "budget")
        created, _ = self._run(self._post_tap(user_id, int(lifetime_minutes), bool(one_time)), DIRECTORY)
        if not created or not created.temporary_access_pass:
            raise GraphError("Graph created no Temporary Access Pass", 0, "empty_answer")
        return TemporaryAccessPass(
            id=created.id or "", code=created.temporary_access_pass,
            lifetime_minutes=created.lifetime_in_minutes or int(lifetime_minutes),
            one_time=bool(created.is_usable_once), start=created.start_date_time)

    def tap_policy(self) -> TapPolicy:
        """Return the tenant's Temporary Access Pass policy (read through Graph, kept for a few minutes)."""
        kept = self._tap_policy
        if kept is not None and time.monotonic() - kept[0] < TAP_POLICY_CACHE_SECONDS:
            return kept[1]
        body = self._read_json("GET", TAP_POLICY_PATH)
        try:
            policy = map_tap_policy(body)
        except ValueError as error:
            raise GraphError(f"Graph's TAP policy could not be read: {error}", 200, "unreadable") from None
        self._tap_policy = (time.monotonic(), policy)
        return policy

    def federated_idp_mfa_behavior(self, domain: str) -> str:
        """Return the federated domain's federatedIdpMfaBehavior ("" for a domain that is not federated)."""
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}", domain or ""):
            raise ValueError(f"not a domain name: {domain!r}")
        try:
            body = self._read_json("GET", f"/domains/{domain}/federationConfiguration")
        except GraphError as error:
            if error.status == 404:
                return ""
            raise
        found = [f for f in body.get("value") or () if isinstance(f, dict)] if isinstance(body, dict) else []
        return str(found[0].get("federatedIdpMfaBehavior") or "") if found else ""

    def federated_domains(self) -> list[str]:
        """List the tenant's federated domains (GET /domains)."""
        body = self._read_json("GET", "/domains")
        return [str(d["id"]) for d in (body.get("value") or ()) if isinstance(d, dict) and d.get("id")
                and str(d.get("authenticationType", "")).lower() == "federated"]

    def member_groups(self, user_id: str, group_ids: Sequence[str]) -> frozenset[str]:
        """Return which of these groups (at most 20) the user is a member of, transitively (checkMemberGroups)."""
        validate_user_id(user_id)
        wanted = [g for g in group_ids if _GUID.match(g)]
        if not wanted:
            return frozenset()
        body = self._read_json("POST", f"{user_path(user_id)}/checkMemberGroups", {"groupIds": wanted[:20]})
        return frozenset(str(g) for g in (body.get("value") or ()) if isinstance(body, dict))

    def delete_temporary_access_pass(self, user_id: str, method_id: str) -> bool:
        """Delete a user's pass; False when it was already gone (used up and removed, expired, replaced)."""
        validate_user_id(user_id)
        if not _GUID.match(method_id or ""):
            raise ValueError(f"not a method id: {method_id!r}")
        try:
            self._read_json("DELETE", f"{user_path(user_id)}/authentication/temporaryAccessPassMethods/{method_id}")
        except GraphError as error:
            if error.status == 404:
                return False
            raise
        return True

    def granted_roles(self) -> frozenset[str]:
        """Return the application permissions the tenant granted this app: the roles of a fresh app-only token."""
        import jwt

        # Only read: the token came from the authority over verified TLS, and Graph checks its signature.
        claims = jwt.decode(self._access_token(), options={"verify_signature": False})
        return frozenset(claims.get("roles") or ())

    def warm_up(self) -> None:
        """Import now what a first diagnosis or pass imports (before gunicorn forks, so the workers share it)."""
        map_user({"id": "0", "userPrincipalName": "warm@up.test", "accountEnabled": True})
        map_methods({"value": [{"@odata.type": kind, "id": "0"} for kind in METHOD_KINDS]})
        map_devices({"value": [{"@odata.type": "#microsoft.graph.device", "id": "0"}]})
        map_sign_ins({"value": [{"id": "0", "status": {"errorCode": 0}, "location": {"geoCoordinates": {}}}]})
        for name in FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:  # msal_extensions is optional
                pass

    # ---- plumbing -----------------------------------------------------------------------------------

    def _run(self, coroutine, category: str):
        """Run one async call on the process's loop; return (result, round trips); raise GraphError subclasses."""
        async def counted():
            trips = [0]
            _CALL_TRIPS.set(trips)
            return await coroutine, trips[0]

        bound = self.timeout * (self.interactive_retries + 1) + self.page_wait * self.interactive_retries + 1.0
        try:
            return _LOOP.run(counted(), bound)
        except APIError as error:
            failure = error_for(error.response_status_code or 0, _odata_body(error),
                                dict(error.response_headers or {}), "the request")
            self._settle(category, [failure])
            raise failure from None
        except httpx.TimeoutException:
            raise GraphUnavailable(f"Graph did not answer within {self.timeout:.0f} s") from None
        except httpx.TransportError as error:
            raise GraphUnavailable(f"Graph is not reachable: {error.__class__.__name__}") from None
        except GraphError:
            raise
        except Exception as error:  # the SDK's own failures (parsing, middleware) must not escape as anything else
            log.error("Graph call failed: %s", error.__class__.__name__)
            raise GraphError(f"the Graph call failed: {error.__class__.__name__}") from None

    async def _batch(self, parts: list[dict[str, str]], retries: int) -> dict[str, tuple[int, dict, Any]]:
        """POST /$batch through the SDK's request adapter (auth and retry apply); return part id -> answer."""
        info = RequestInformation(Method.POST, "{+baseurl}/$batch")
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps({"requests": parts}).encode()
        info.add_request_options([RetryHandlerOption(delay=0.0, max_retries=retries)])
        raw = await self._request_adapter().send_primitive_async(info, "bytes", None)
        try:
            answers = json.loads(raw or b"{}").get("responses", [])
        except ValueError:
            raise GraphUnavailable("Graph answered $batch with something that is not JSON", 502) from None
        return {str(a.get("id")): (int(a.get("status", 0)), a.get("headers") or {}, a.get("body"))
                for a in answers if isinstance(a, dict)}

    def _send_parts(self, parts: list[dict[str, str]], retries: int,
                    max_wait: float) -> tuple[dict[str, tuple[int, dict, Any]], int]:
        """POST parts as one $batch; resend the parts Graph answered 429 after their own Retry-After.

        Graph throttles the parts of a batch one by one and answers the batch 200: its throttling page says
        to retry the failed parts in a new batch after the longest Retry-After. That happens here while the
        waits add up to at most max_wait; parts still throttled are returned as Graph answered them.
        """
        answers, trips = self._run(self._batch(parts, retries=retries), DIRECTORY)
        waited = 0.0
        for _ in range(PART_RETRY_ROUNDS):
            throttled = [p for p in parts if answers.get(p["id"], (0,))[0] == 429]
            wait = max((_part_retry_after(answers[p["id"]]) for p in throttled), default=0.0)
            if not throttled or waited + wait > max_wait:
                break
            by_category: dict[str, list[dict[str, str]]] = {}
            for part in throttled:
                by_category.setdefault(part_category(part["url"]), []).append(part)
            for category in by_category:
                self.budget.back_off(category, wait)  # every instance waits it out, not only this call
            time.sleep(wait)
            waited += wait
            resend = [p for category, group in by_category.items()
                      if self.budget.take(category, len(group), wait_seconds=max(0.0, max_wait - waited))
                      for p in group]
            if not resend:
                break
            try:
                again, more = self._run(self._batch(resend, retries=0), DIRECTORY)
            except GraphError:
                break  # the resend failed as a whole: keep what the first answer said about every part
            answers.update(again)
            trips += more
        return answers, trips

    def _blocked_for(self, category: str) -> float | None:
        """Return how long the shared budget blocks a category (None when the budget cannot say)."""
        blocked_for = getattr(self.budget, "blocked_for", None)
        seconds = blocked_for(category) if blocked_for is not None else 0.0
        return seconds or None

    def _methods_chunk(self, chunk: list[str]) -> dict[str, tuple[AuthMethod, ...] | GraphError]:
        parts = [{"id": str(i), "method": "GET", "url": f"{user_path(u)}/authentication/methods"}
                 for i, u in enumerate(chunk)]
        try:
            answers, _ = self._send_parts(parts, 0, self.budget_wait)
        except GraphError as error:
            return {u: error for u in chunk}
        results: dict[str, tuple[AuthMethod, ...] | GraphError] = {}
        for i, user_id in enumerate(chunk):
            results[user_id] = read_part(answers.get(str(i)), map_methods, f"the methods of {user_id}")
        self._settle(DIRECTORY, [r for r in results.values() if isinstance(r, GraphError)])
        return results

    def _read_json(self, method: str, path: str, body: dict | None = None) -> Any:
        """Send one small request (budgeted, bounded retries) and return its JSON body ({} when it has none)."""
        if not self.budget.take(DIRECTORY, 1, wait_seconds=self.budget_wait):
            raise GraphThrottled(f"Graph budget exhausted: {method} {path.split('/')[1]} not sent", 429, "budget",
                                 self._blocked_for(DIRECTORY))
        result, _ = self._run(self._send_json(method, path, body), DIRECTORY)
        self._settle(DIRECTORY, [])
        return result

    async def _send_json(self, method: str, path: str, body: dict | None) -> Any:
        info = RequestInformation(Method[method], "{+baseurl}" + path)
        info.headers.try_add("Accept", "application/json")
        if body is not None:
            info.headers.try_add("Content-Type", "application/json")
            info.content = json.dumps(body).encode()
        # Reads may be retried; a DELETE is idempotent (a second one answers 404, which the caller reads as gone).
        info.add_request_options([RetryHandlerOption(delay=0.0, max_retries=self.interactive_retries)])
        raw = await self._request_adapter().send_primitive_async(info, "bytes", None)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise GraphUnavailable("Graph answered with something that is not JSON", 502) from None

    async def _post_tap(self, user_id: str, minutes: int, one_time: bool):
        from msgraph.generated.models.temporary_access_pass_authentication_method import (
            TemporaryAccessPassAuthenticationMethod,
        )
        from msgraph.graph_service_client import GraphServiceClient

        body = TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=minutes, is_usable_once=one_time)
        # A POST retried after a lost answer could replace the pass just shown: never retry it.
        config = RequestConfiguration(options=[RetryHandlerOption(delay=0.0, max_retries=0, should_retry=False)])
        methods = GraphServiceClient(request_adapter=self._request_adapter()).users.by_user_id(
            user_id).authentication.temporary_access_pass_methods
        return await methods.post(body, request_configuration=config)

    def _settle(self, category: str, failures: Sequence[GraphError]) -> None:
        """Tell the shared budget about Graph's 429s in one call (once, the longest wait), or forget past ones."""
        throttled = [f for f in failures if isinstance(f, GraphThrottled)]
        if not throttled:
            self._strikes.pop(category, None)
            return
        strikes = self._strikes[category] = self._strikes.get(category, 0) + 1
        waits = [t.retry_after for t in throttled if t.retry_after is not None]
        # Graph nearly always sends Retry-After; without it, back off exponentially (DOMAIN.md section 4).
        self.budget.back_off(category, max(waits) if waits else min(MAX_BACKOFF, FALLBACK_BACKOFF * 2 ** (strikes - 1)))

    def _request_adapter(self):
        with self._adapter_lock:
            if self._adapter is None:
                self._adapter = self._build_adapter()
            return self._adapter

    def _after_fork(self) -> None:
        # The parent's connections (httpx and MSAL's session) are not ours: build new ones on first use.
        self._adapter_lock = threading.Lock()
        self._msal_lock = threading.Lock()
        self._adapter = None
        self._msal = None
        self._session = make_session(self.ca_file, timeout=self.timeout)

    def _build_adapter(self):
        from msgraph.graph_request_adapter import GraphRequestAdapter

        graph_host = urlparse(self.graph_url).hostname or ""
        transport = _CountingTransport(self.counter, verify=make_ssl_context(self.ca_file))
        client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(self.timeout), trust_env=False)
        middleware = [
            BoundedRetryHandler(RetryHandlerOption(delay=0.0, max_retries=self.interactive_retries))
            if isinstance(m, RetryHandler) else m
            for m in KiotaClientFactory.get_default_middleware(None)
        ] + [GraphTelemetryHandler()]
        client = GraphClientFactory.create_with_custom_middleware(middleware, client=client)
        auth = BaseBearerTokenAuthenticationProvider(_MsalTokenProvider(self._access_token, graph_host))
        adapter = GraphRequestAdapter(auth, client=client)
        adapter.base_url = self.graph_url
        return adapter

    def _access_token(self) -> str:
        """Return an app-only Graph token (client credentials; MSAL serves it from its cache while valid)."""
        try:
            with self._msal_lock:
                if self._msal is None:
                    microsoft_host = urlparse(self.authority).hostname in WELL_KNOWN_AUTHORITY_HOSTS
                    self._msal = msal.ConfidentialClientApplication(
                        self.client_id, client_credential=self._client_secret, authority=self.authority,
                        http_client=self._session, instance_discovery=None if microsoft_host else False)
            result = self._msal.acquire_token_for_client(scopes=[self.scope])
        except (requests.RequestException, ValueError) as error:
            raise GraphUnavailable(f"the Graph token authority is not reachable: {error.__class__.__name__}") from None
        if "access_token" not in result:
            log.error("Graph token refused: %s", result.get("error", "unknown error"))
            raise GraphError(f"the Graph token was refused: {result.get('error', 'unknown error')}", 401,
                             str(result.get("error", "")))
        return result["access_token"]


class _Sweep:
    """What a sweep_evidence call has learnt so far, part by part, and the Evidence it makes of it."""

    def __init__(self, upns: Sequence[str]):
        wanted = list(dict.fromkeys(u.strip().lower() for u in upns if isinstance(u, str)))
        self.invalid: dict[str, GraphError] = {}
        for upn in wanted:
            try:
                validate_upn(upn)
            except ValueError as error:
                self.invalid[upn] = GraphError(str(error), 400, "invalid_upn")
        self.order = wanted
        self.valid = [u for u in wanted if u not in self.invalid]
        self.chunk_of: dict[str, list[str]] = {}  # users part id -> the UPNs it asks for
        self.upn_of: dict[str, str] = {}  # methods part id -> the UPN
        self.users: dict[str, tuple[EntraUser, tuple[Device, ...]]] = {}
        self.user_errors: dict[str, GraphError] = {}
        self.methods: dict[str, tuple[AuthMethod, ...] | GraphError] = {}
        self.sign_ins: list[tuple[str, str, SignIn]] = []
        self.sign_in_error: GraphError | None = None

    @property
    def methods_done(self) -> int:
        return len(self.methods)

    def record(self, part_id: str, outcome: Any) -> None:
        """Keep a users or methods part's outcome (a GraphError fails the people the part was for)."""
        if part_id in self.upn_of:
            self.methods[self.upn_of[part_id]] = outcome
        elif part_id in self.chunk_of:
            if isinstance(outcome, GraphError):
                self.user_errors.update({u: outcome for u in self.chunk_of[part_id]})
            else:
                self.users.update({entra.upn.lower(): (entra, devices) for entra, devices in outcome})

    def evidence(self) -> dict[str, Evidence]:
        """Return each asked person's Evidence, the way gather_evidence would have put it."""
        by_user: dict[str, list[SignIn]] = {}
        for user_id, upn, sign_in in self.sign_ins:
            by_user.setdefault(user_id or upn, []).append(sign_in)
        result: dict[str, Evidence] = {}
        for upn in self.order:
            if upn in self.invalid:
                result[upn] = Evidence(user=None, errors={"user": self.invalid[upn]}, round_trips=0)
                continue
            entra, devices = self.users.get(upn, (None, ()))
            errors: dict[str, GraphError] = {}
            if upn in self.user_errors:
                errors["user"] = self.user_errors[upn]
            elif entra is None:
                errors["user"] = GraphError(f"Graph does not know {upn}", 404, "Request_ResourceNotFound")
            methods = self.methods.get(upn, GraphError("Graph gave no answer for the methods", 0, "no_answer"))
            if isinstance(methods, GraphError):
                if not (entra is None and methods.status == 404):  # one error says an unknown user
                    errors["methods"] = methods
                methods = ()
            sign_ins = tuple(by_user.get(entra.id.lower(), by_user.get(upn, ()))) if entra else ()
            if self.sign_in_error is not None:
                errors["sign_ins"] = self.sign_in_error
            result[upn] = Evidence(user=entra, methods=methods, authenticator_sign_ins=sign_ins, devices=devices,
                                   errors=errors, round_trips=0)
        return result


def part_category(url: str) -> str:
    """Return the budget category of a $batch part's relative URL (reports or directory)."""
    return REPORTS if url.lstrip("/").lower().startswith(("auditlogs/", "reports/")) else DIRECTORY


def _part_retry_after(answer: tuple[int, Mapping[str, str], Any]) -> float:
    """Return a throttled part's own Retry-After, or the fallback back-off when it sent none."""
    lowered = {k.lower(): v for k, v in (answer[1] or {}).items()}
    seconds = parse_retry_after(lowered.get("retry-after"))
    return FALLBACK_BACKOFF if seconds is None else seconds


def _odata_body(error: APIError) -> dict[str, Any]:
    """Return {"error": {"code": ...}} from the SDK's ODataError, or {} for other API errors."""
    main = getattr(error, "error", None)
    code = getattr(main, "code", None)
    return {"error": {"code": code, "message": getattr(main, "message", None) or ""}} if code else {}
