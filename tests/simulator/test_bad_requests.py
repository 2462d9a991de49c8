"""Whatever arrives, the simulator answers as Microsoft would with a 4xx, never a 500."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from app.domain.directory import DirectoryUnavailable
from app.seed import load_seed
from app.simulator import create_simulator
from tests.fixtures.simulator import dump
from tests.simulator.browserless import Browserless, forms_of

TENANT = "8d3f2b4e-6c1a-4f5e-9b7d-2a1c0e9f8b7a"
CASES = [
    ("post", f"/{TENANT}/oauth2/v2.0/token", {}),
    ("post", f"/{TENANT}/oauth2/v2.0/token", {"grant_type": "password", "client_id": "x", "client_secret": "y"}),
    ("post", f"/{TENANT}/oauth2/v2.0/token", {"grant_type": "refresh_token", "client_id": "x"}),
    ("post", "/no-such-tenant/oauth2/v2.0/token", {"grant_type": "client_credentials"}),
    ("post", "/adfs/oauth2/token/", {}),
    ("post", "/adfs/oauth2/token/", {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}),
    ("get", "/adfs/oauth2/authorize/", {}),
    ("get", f"/{TENANT}/oauth2/v2.0/authorize", {"client_id": "nope"}),
    ("post", "/adfs/ls/", {"ctx": "forged", "UserName": "a@uni.test", "Password": "x"}),
    ("post", "/adfs/ls/mfa", {"ctx": "forged"}),
    ("get", "/adfs/ls/", {"wa": "wsignin1.0", "wtrealm": "urn:someone:else"}),
    ("post", "/login.srf", {"wresult": "garbage", "wctx": "x"}),
    ("post", "/common/login", {"ctx": "forged", "login": "a@uni.test"}),
    ("get", "/security-info/callback", {"state": "forged", "code": "x"}),
    ("get", "/security-info/add/phone", {}),
    ("get", f"/{TENANT}/oauth2/v2.0/logout", {"post_logout_redirect_uri": "https://evil.example/"}),
    ("get", "/v1.0/users/x", {}),
    ("post", "/v1.0/$batch", {}),
]


@pytest.mark.parametrize("method, path, data", CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_bad_requests_get_a_client_error_not_a_crash(simulator, method, path, data):
    session = simulator.session()
    if method == "get":
        response = session.get(simulator.base_url + path, params=data, allow_redirects=False, timeout=10)
    else:
        response = session.post(simulator.base_url + path, data=data, allow_redirects=False, timeout=10)
    assert response.status_code < 500, dump(response)
    if response.status_code == 302:
        assert "evil.example" not in response.headers["Location"]


def test_graph_batch_and_tap_bodies_are_checked(simulator):
    headers = {"Authorization": "Bearer " + simulator.app_token()}
    session = simulator.session()
    for body in ("not json", '{"requests": "nope"}', '{"requests": [1, 2]}',
                 '{"requests": [{"id": "1", "method": "GET", "url": "/users/x"}, '
                 '{"id": "1", "method": "GET", "url": "/users/y"}]}'):
        answer = session.post(simulator.graph_url + "/$batch", data=body, timeout=10,
                              headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadRequest", dump(answer)
    grace = simulator.user("grace.hopper@uni.test").object_id
    for body in ('"text"', '{"lifetimeInMinutes": true}', '{"isUsableOnce": "yes"}',
                 '{"startDateTime": "tomorrow"}', '{"lifetimeInMinutes": 50000}'):
        answer = session.post(f"{simulator.graph_url}/users/{grace}/authentication/temporaryAccessPassMethods",
                              data=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 400, dump(answer)
    listed = simulator.graph_get(f"/users/{grace}/authentication/temporaryAccessPassMethods").json()
    assert listed["value"] == [], "a refused request creates nothing"


class UnreachableDirectory:
    """A directory whose DCs are all down (the LDAP adapter raises DirectoryUnavailable)."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise DirectoryUnavailable("no DC answered")
        return fail


def test_directory_outage_shows_the_adfs_error_page(tmp_path):
    app = create_simulator(tmp_path, load_seed(), directory=UnreachableDirectory())
    client = app.test_client()
    form = client.get("/adfs/ls/?wa=wsignin1.0&wtrealm=urn:federation:MicrosoftOnline&wctx=x",
                      base_url="https://127.0.0.1")
    ctx = forms_of(form.get_data(as_text=True))[0].fields["ctx"]
    answer = client.post("/adfs/ls/", data={"ctx": ctx, "UserName": "ada.lovelace@uni.test", "Password": "x"},
                         base_url="https://127.0.0.1")
    assert answer.status_code == 503 and "An error occurred" in answer.get_data(as_text=True)


def test_adfs_posts_the_federation_token_only_to_entra(simulator):
    browser = Browserless(simulator.session(), "https://evil.example/")
    page = browser.go(simulator.base_url + "/adfs/ls/?" + urlencode({
        "wa": "wsignin1.0", "wtrealm": "urn:federation:MicrosoftOnline", "wctx": "x",
        "wreply": "https://evil.example/steal", "username": "margaret.hamilton@uni.test"}))
    upn = "margaret.hamilton@uni.test"
    landing = browser.submit(page, {"UserName": upn, "Password": simulator.user(upn).password})
    assert not landing.url.startswith("https://evil.example"), landing.url
    assert landing.url == simulator.base_url + "/login.srf" and "AADSTS50058" in landing.text
