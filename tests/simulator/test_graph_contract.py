"""The real msgraph-sdk against the simulated Graph: typed parsing of every endpoint, $batch parts, 401/403/404/429."""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import ssl
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from kiota_http.middleware.options import RetryHandlerOption
from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph import GraphServiceClient
from msgraph.generated.models.authentication_method_collection_response import (
    AuthenticationMethodCollectionResponse,
)
from msgraph.generated.models.device import Device
from msgraph.generated.models.microsoft_authenticator_authentication_method import (
    MicrosoftAuthenticatorAuthenticationMethod,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_authentication_method import PasswordAuthenticationMethod
from msgraph.generated.models.phone_authentication_method import PhoneAuthenticationMethod
from msgraph.generated.models.sign_in_collection_response import SignInCollectionResponse
from msgraph.generated.models.temporary_access_pass_authentication_method import (
    TemporaryAccessPassAuthenticationMethod,
)
from msgraph.generated.models.user import User
from msgraph_core import GraphClientFactory

from app.simulator.clients import AUTHENTICATOR_APP_ID
from tests.fixtures.simulator import dump

BARBARA, DONALD, ADA, GRACE = ("barbara.liskov@uni.test", "donald.knuth@uni.test", "ada.lovelace@uni.test",
                               "grace.hopper@uni.test")
NO_RETRY = [RetryHandlerOption(max_retries=0)]


class StaticTokenProvider(AccessTokenProvider):
    def __init__(self, token: str):
        self.token = token

    async def get_authorization_token(self, uri, additional_authentication_context=None) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


def graph_client(sim, token: str) -> GraphServiceClient:
    """Build the SDK client as the portal does: default middleware, our CA only, base URL without a slash."""
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=sim.ca_file), trust_env=False, timeout=30))
    adapter = HttpxRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token)), http_client=http)
    adapter.base_url = sim.graph_url
    return GraphServiceClient(request_adapter=adapter)


def run(coroutine):
    """Run a coroutine on a fresh event loop in its own thread.

    Playwright's sync API keeps an event loop running in the main thread once a browser test has run, so
    asyncio.run() there would fail; a thread of its own keeps these tests independent of test order.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def users(sim, client_id=None):
    return graph_client(sim, sim.app_token(client_id or sim.graph_client_id)).users


def test_users_methods_devices_report_and_sign_ins_parse_into_sdk_models(simulator):
    simulator.reset_throttle()
    barbara_id, ada_id = simulator.user(BARBARA).object_id, simulator.user(ADA).object_id

    async def scenario():
        client = graph_client(simulator, simulator.app_token())
        user = await client.users.by_user_id(BARBARA).get()
        selected = await client.users.by_user_id(BARBARA).get(request_configuration=RequestConfiguration(
            query_parameters=client.users.by_user_id(BARBARA).UserItemRequestBuilderGetQueryParameters(
                select=["id", "accountEnabled"])))
        methods = await client.users.by_user_id(BARBARA).authentication.methods.get()
        authenticators = await client.users.by_user_id(barbara_id).authentication.microsoft_authenticator_methods.get()
        phones = await client.users.by_user_id(DONALD).authentication.phone_methods.get()
        fido = await client.users.by_user_id(DONALD).authentication.fido2_methods.get()
        oath = await client.users.by_user_id(DONALD).authentication.software_oath_methods.get()
        devices = await client.users.by_user_id(ada_id).registered_devices.get()
        details = client.reports.authentication_methods.user_registration_details
        barbara_report = await details.by_user_registration_details_id(barbara_id).get()
        ada_report = await details.by_user_registration_details_id(ada_id).get()
        sign_ins = await client.audit_logs.sign_ins.get(request_configuration=RequestConfiguration(
            query_parameters=client.audit_logs.sign_ins.SignInsRequestBuilderGetQueryParameters(
                filter=f"userId eq '{ada_id}' and appId eq '{AUTHENTICATOR_APP_ID}'")))
        first = await client.audit_logs.sign_ins.get(request_configuration=RequestConfiguration(
            query_parameters=client.audit_logs.sign_ins.SignInsRequestBuilderGetQueryParameters(
                filter=f"userId eq '{ada_id}'", top=1)))
        recent = await client.audit_logs.sign_ins.get(request_configuration=RequestConfiguration(
            query_parameters=client.audit_logs.sign_ins.SignInsRequestBuilderGetQueryParameters(
                filter=f"userId eq '{ada_id}' and createdDateTime ge {week_ago.strftime('%Y-%m-%dT%H:%M:%SZ')}")))
        return user, selected, methods, authenticators, phones, fido, oath, devices, barbara_report, ada_report, \
            sign_ins, first, recent

    week_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)
    (user, selected, methods, authenticators, phones, fido, oath, devices, barbara_report, ada_report, sign_ins,
     first, recent) = run(scenario())
    assert (user.id, user.user_principal_name, user.display_name) == (barbara_id, BARBARA, "Barbara Liskov")
    assert user.account_enabled is None  # not a default property: only with $select
    assert selected.account_enabled is True and selected.display_name is None
    assert {type(m) for m in methods.value} == {PasswordAuthenticationMethod, MicrosoftAuthenticatorAuthenticationMethod}
    assert authenticators.value[0].display_name and authenticators.value[0].created_date_time is not None
    assert isinstance(phones.value[0], PhoneAuthenticationMethod) and phones.value[0].phone_number.startswith("+")
    assert phones.value[0].phone_type.value == "mobile"
    assert fido.value == [] and oath.value == []
    assert isinstance(devices.value[0], Device) and devices.value[0].operating_system == "iOS"
    assert "microsoftAuthenticatorPush" in barbara_report.methods_registered and barbara_report.is_mfa_registered
    assert ada_report.methods_registered == [] and ada_report.is_mfa_registered is False
    assert len(sign_ins.value) == 3
    assert {s.app_id for s in sign_ins.value} == {AUTHENTICATOR_APP_ID}
    assert all(s.status.error_code == 0 for s in sign_ins.value)
    assert len(first.value) == 1 and first.odata_next_link
    assert len(recent.value) == 1 and recent.value[0].created_date_time >= week_ago


def test_temporary_access_pass_create_read_delete(simulator):
    grace = simulator.user(GRACE).object_id

    async def scenario():
        client = graph_client(simulator, simulator.app_token())
        taps = client.users.by_user_id(grace).authentication.temporary_access_pass_methods
        created = await taps.post(TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=60, is_usable_once=True))
        listed = await taps.get()
        replacement = await taps.post(TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=60))
        replaced = await taps.get()
        with pytest.raises(ODataError) as too_short:
            await taps.post(TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=5))
        await taps.by_temporary_access_pass_authentication_method_id(replacement.id).delete()
        after = await taps.get()
        return created, listed, replacement, replaced, too_short.value, after

    created, listed, replacement, replaced, too_short, after = run(scenario())
    assert created.temporary_access_pass and len(created.temporary_access_pass) == 8
    assert created.is_usable is True and created.is_usable_once is True and created.lifetime_in_minutes == 60
    assert [t.id for t in listed.value] == [created.id] and listed.value[0].temporary_access_pass is None
    # Graph documents that a new TAP deletes the one still valid: one TAP per user, never two.
    assert replacement.id != created.id and [t.id for t in replaced.value] == [replacement.id]
    assert too_short.response_status_code == 400
    assert after.value == []


def test_missing_permission_is_403_and_unknown_user_404(simulator):
    async def scenario():
        limited = graph_client(simulator, simulator.app_token(simulator.limited_client_id))
        with pytest.raises(ODataError) as forbidden:
            await limited.users.by_user_id(BARBARA).authentication.methods.get()
        with pytest.raises(ODataError) as forbidden_report:
            await limited.audit_logs.sign_ins.get()
        allowed = await limited.users.by_user_id(BARBARA).get()
        full = graph_client(simulator, simulator.app_token())
        with pytest.raises(ODataError) as missing:
            await full.users.by_user_id("nobody@uni.test").get()
        return forbidden.value, forbidden_report.value, allowed, missing.value

    forbidden, forbidden_report, allowed, missing = run(scenario())
    assert forbidden.response_status_code == 403 and forbidden.error.code == "Authorization_RequestDenied"
    assert forbidden_report.response_status_code == 403
    assert allowed.user_principal_name == BARBARA
    assert missing.response_status_code == 404 and missing.error.code == "Request_ResourceNotFound"


def test_reports_bucket_answers_429_with_retry_after_and_the_sdk_waits(simulator_factory):
    sim = simulator_factory()
    token = sim.app_token()

    async def scenario():
        client = graph_client(sim, token)
        answered = 0  # 5 requests per 10 s per app per tenant; a slow machine may see a token refill meanwhile
        while True:
            try:
                await client.audit_logs.sign_ins.get(request_configuration=RequestConfiguration(options=NO_RETRY))
            except ODataError as error:
                throttled = error
                break
            answered += 1
            assert answered <= 10, "the reports bucket never throttled"
        users_still_fine = await client.users.by_user_id(BARBARA).get(
            request_configuration=RequestConfiguration(options=NO_RETRY))
        started = time.monotonic()
        after_wait = await client.audit_logs.sign_ins.get()  # default middleware honours Retry-After
        return answered, throttled, users_still_fine, after_wait, time.monotonic() - started

    answered, throttled, users_still_fine, after_wait, waited = run(scenario())
    assert answered >= 5
    assert throttled.response_status_code == 429 and throttled.error.code == "TooManyRequests"
    retry_after = {k.lower(): v for k, v in throttled.response_headers.items()}["retry-after"]
    assert 0 < float(retry_after) <= 10  # seconds with fractions, as Graph sends them
    assert users_still_fine.user_principal_name == BARBARA  # a different bucket
    assert after_wait.value is not None and waited >= 1
    statuses = [e["status"] for e in sim.requests_log() if e["path"] == "/v1.0/auditLogs/signIns"]
    assert statuses[:answered + 1] == [200] * answered + [429] and statuses[-1] == 200


def post_batch(sim, requests_, client_id=None):
    return sim.session().post(sim.graph_url + "/$batch", json={"requests": requests_}, timeout=30,
                              headers={"Authorization": "Bearer " + sim.app_token(client_id or sim.graph_client_id)})


def test_batch_parts_parse_into_sdk_models_each_with_its_own_status(simulator):
    simulator.reset_throttle()
    ada = simulator.user(ADA).object_id
    response = post_batch(simulator, [
        {"id": "user", "method": "GET", "url": f"/users/{ADA}"},
        {"id": "methods", "method": "GET", "url": f"/users/{ada}/authentication/methods"},
        {"id": "signins", "method": "GET",
         "url": f"auditLogs/signIns?$filter=userId eq '{ada}' and appId eq '{AUTHENTICATOR_APP_ID}'&$top=5"},
        {"id": "devices", "method": "GET", "url": f"/users/{ada}/registeredDevices"},
        {"id": "absolute", "method": "GET", "url": f"{simulator.graph_url}/users/{ada}"},
        {"id": "missing", "method": "GET", "url": "/users/nobody@uni.test"},
    ])
    assert response.status_code == 200, dump(response)
    parts = {p["id"]: p for p in response.json()["responses"]}
    assert {k: p["status"] for k, p in parts.items()} == {
        "user": 200, "methods": 200, "signins": 200, "devices": 200, "absolute": 400, "missing": 404}
    user = JsonParseNode(parts["user"]["body"]).get_object_value(User)
    methods = JsonParseNode(parts["methods"]["body"]).get_object_value(AuthenticationMethodCollectionResponse)
    sign_ins = JsonParseNode(parts["signins"]["body"]).get_object_value(SignInCollectionResponse)
    assert user.id == ada
    assert [type(m) for m in methods.value] == [PasswordAuthenticationMethod]
    assert len(sign_ins.value) == 3 and sign_ins.value[0].app_id == AUTHENTICATOR_APP_ID
    assert parts["missing"]["body"]["error"]["code"] == "Request_ResourceNotFound"


def test_batch_limits_permissions_dependencies_and_per_part_throttling(simulator_factory):
    sim = simulator_factory()
    too_many = post_batch(sim, [{"id": str(i), "method": "GET", "url": f"/users/{BARBARA}"} for i in range(21)])
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "BadRequest"
    limited = post_batch(sim, [
        {"id": "1", "method": "GET", "url": f"/users/{BARBARA}"},
        {"id": "2", "method": "GET", "url": f"/users/{BARBARA}/authentication/methods"},
        {"id": "3", "method": "GET", "url": f"/users/{BARBARA}", "dependsOn": ["2"]},
    ], sim.limited_client_id)
    assert [p["status"] for p in limited.json()["responses"]] == [200, 403, 424]
    reports = post_batch(sim, [{"id": str(i), "method": "GET", "url": "/auditLogs/signIns?$top=1"} for i in range(7)])
    parts = reports.json()["responses"]
    assert reports.status_code == 200 and [p["status"] for p in parts] == [200] * 5 + [429] * 2
    assert float(parts[5]["headers"]["Retry-After"]) >= 1
    assert all(e["batch_part"] for e in sim.requests_log() if e["path"] == "/v1.0/auditLogs/signIns")


def test_tokens_are_verified(simulator_factory):
    sim = simulator_factory()
    session, url = sim.session(), sim.graph_url + f"/users/{BARBARA}"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    genuine = jwt.decode(sim.app_token(), options={"verify_signature": False})
    foreign = jwt.encode(genuine, other_key, algorithm="RS256", headers={"kid": "someone-else"})
    for token, message in [("", "Access token is empty."), (foreign, "Invalid signature"), ("not.a.jwt", "Invalid")]:
        answer = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 401 and message in answer.json()["error"]["message"], dump(answer)
        assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
    # Signed with the simulator's own key but meant for someone else, or from another issuer.
    own_key = serialization.load_pem_private_key((sim.state_dir / "token-signing-key.pem").read_bytes(), None)
    kid = jwt.get_unverified_header(sim.app_token())["kid"]
    for claims, message in [({**genuine, "aud": f"microsoft:identityserver:{sim.portal_client_id}"}, "audience"),
                            ({**genuine, "iss": sim.adfs_authority}, "issuer")]:
        token = jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": kid})
        answer = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 401 and message in answer.json()["error"]["message"], dump(answer)
    token = sim.app_token()
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    sim.advance_clock(2 * 3600)
    expired = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_double_slashes_are_collapsed_without_a_redirect(simulator):
    response = simulator.session().get(simulator.base_url + f"//v1.0//users/{BARBARA}", allow_redirects=False,
                                       headers={"Authorization": "Bearer " + simulator.app_token()}, timeout=10)
    assert response.status_code == 200 and response.json()["userPrincipalName"] == BARBARA


def test_unknown_segments_and_methods_answer_in_graph_shape(simulator):
    unknown = simulator.graph_get(f"/users/{BARBARA}/authentication/noSuchMethods")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "BadRequest"
    wrong_method = simulator.session().put(simulator.graph_url + f"/users/{BARBARA}", timeout=10,
                                           headers={"Authorization": "Bearer " + simulator.app_token()})
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    bad_filter = simulator.graph_get("/auditLogs/signIns?$filter=foo eq 'bar'")
    assert bad_filter.status_code in (400, 429) and "error" in bad_filter.json()


def test_every_method_type_parses_into_its_sdk_model(simulator_factory, tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "tenant: {id: 8d3f2b4e-6c1a-4f5e-9b7d-2a1c0e9f8b7a, domain: uni.test}\n"
        "default_password: Test-Only-Password-1\n"
        "users:\n"
        "  - {upn: kim@uni.test, display_name: Kim Akers, state: registered,\n"
        "     methods: [microsoftAuthenticator, phone, fido2, softwareOath, windowsHelloForBusiness, email]}\n")
    sim = simulator_factory(seed_path=seed)

    async def scenario():
        auth = graph_client(sim, sim.app_token()).users.by_user_id("kim@uni.test").authentication
        return (await auth.methods.get(), await auth.fido2_methods.get(), await auth.software_oath_methods.get(),
                await auth.windows_hello_for_business_methods.get(), await auth.email_methods.get(),
                await auth.password_methods.get())

    methods, fido, oath, hello, email, password = run(scenario())
    assert sorted(type(m).__name__ for m in methods.value) == sorted([
        "PasswordAuthenticationMethod", "MicrosoftAuthenticatorAuthenticationMethod", "PhoneAuthenticationMethod",
        "Fido2AuthenticationMethod", "SoftwareOathAuthenticationMethod",
        "WindowsHelloForBusinessAuthenticationMethod", "EmailAuthenticationMethod"])
    assert fido.value[0].model and fido.value[0].aa_guid and fido.value[0].attestation_level.value == "attested"
    assert oath.value[0].secret_key is None
    assert hello.value[0].key_strength.value == "normal"
    assert "@" in email.value[0].email_address
    assert password.value[0].id == "28c10230-6103-485e-b985-444c60001490" and password.value[0].password is None
