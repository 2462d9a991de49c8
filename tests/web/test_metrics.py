"""/metrics: closed unless opened by a token or a network, and the numbers follow what really happened."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.config import SettingsError
from tests.web.conftest import csrf_of, demo_settings, sign_in
from tests.web.fakes import state_of

HALF = "ada.lovelace@uni.test"
TOKEN = "metrics-token-0123456789"


def portal(tmp_path, services, **overrides):
    app = create_app(demo_settings(tmp_path, **overrides), services=services)
    app.config["TESTING"] = True
    return app.test_client()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition into {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client, token: str = TOKEN) -> dict:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.status_code
    assert response.content_type.startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def test_metrics_are_closed_unless_an_admin_opens_them(tmp_path, services):
    assert portal(tmp_path, services).get("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_refuse_a_scraper_without_the_token(tmp_path, services, header):
    client = portal(tmp_path, services, metrics_token=TOKEN)
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 403 and b"proofup_" not in response.data


def test_metrics_answer_the_token(tmp_path, services):
    assert ("proofup_open_grants", (("state", "active"),)) in scrape(portal(tmp_path, services, metrics_token=TOKEN))


@pytest.mark.parametrize(("allow", "status"), [("127.0.0.1", 200), ("10.0.0.0/8, 127.0.0.0/8", 200),
                                               ("10.0.0.0/8", 403), ("::1", 403)])
def test_metrics_answer_allowed_networks_only(tmp_path, services, allow, status):
    client = portal(tmp_path, services, metrics_allow=allow)  # the test client comes from 127.0.0.1
    assert client.get("/metrics").status_code == status


def test_metrics_allow_follows_the_proxy_hops(tmp_path, services):
    client = portal(tmp_path, services, metrics_allow="192.0.2.0/24", proxy_hops=1)
    assert client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 403


@pytest.mark.parametrize(("overrides", "named"), [
    ({"metrics_allow": "10.0.0.0/33"}, "PROOFUP_METRICS_ALLOW"),
    ({"metrics_allow": "intranet"}, "PROOFUP_METRICS_ALLOW"),
    ({"metrics_token": "short"}, "PROOFUP_METRICS_TOKEN"),
])
def test_malformed_metrics_settings_are_refused_by_name(tmp_path, overrides, named):
    with pytest.raises(SettingsError, match=named):
        demo_settings(tmp_path, **overrides)


def test_metrics_token_is_a_masked_secret(tmp_path):
    settings = demo_settings(tmp_path, metrics_token=TOKEN)
    assert settings.redacted()["metrics_token"] == "(set)" and TOKEN not in repr(settings)


def test_open_grants_and_grants_past_their_end_are_read_from_the_database(tmp_path, services, clock):
    client = portal(tmp_path, services, metrics_token=TOKEN)
    before = scrape(client)
    assert before[("proofup_open_grants", (("state", "active"),))] == 0
    assert before[("proofup_grants_past_end", ())] == 0
    page = sign_in(client, HALF)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    after = scrape(client)
    assert after[("proofup_open_grants", (("state", "active"),))] == 1
    assert after[("proofup_grants_past_end", ())] == 0
    clock.advance(services.settings.grant_minutes * 60 + 1)  # the worker has not run: the membership outlives it
    assert scrape(client)[("proofup_grants_past_end", ())] == 1


def test_the_outbox_depth_is_read_from_the_database(tmp_path, services):
    client = portal(tmp_path, services, metrics_token=TOKEN)
    assert scrape(client).get(("proofup_outbox_mails", (("state", "queued"),)), 0) == 0
    services.outbox.queue("security_unlocked", upn=HALF, to=HALF, params={})
    services.outbox.queue("security_unlocked", upn="grace.hopper@uni.test", to="grace.hopper@uni.test", params={})
    after = scrape(client)
    assert after[("proofup_outbox_mails", (("state", "queued"),))] == 2
    assert after[("proofup_outbox_mails", (("state", "bounced"),))] == 0


def test_invites_are_counted_by_state_from_the_database(tmp_path, services):
    counted = {labels: v for (name, labels), v in scrape(portal(tmp_path, services, metrics_token=TOKEN)).items()
               if name == "proofup_invites"}
    assert counted == {(("state", state),): 0 for state in ("sent", "opened", "used", "expired", "revoked", "bounced")}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_sign_ins_unlocks_refusals_and_cancels_are_counted_from_the_events(tmp_path, services):
    client = portal(tmp_path, services, metrics_token=TOKEN)
    before = scrape(client)
    page = sign_in(client, HALF)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert client.post("/cancel", data={"csrf_token": csrf_of(client.get("/guide"))}).status_code == 302
    stranger = portal(tmp_path, services)
    state = state_of(stranger.get("/sign-in").headers["Location"])
    assert stranger.post("/auth/callback", data={"state": state, "code": "not-a-valid-code"},
                         follow_redirects=True).status_code == 400
    privileged = app_client_signed_in(tmp_path, services, "ken.thompson@uni.test")
    privileged.post("/unlock", data={"csrf_token": csrf_of(privileged.get("/diagnosis"))})
    after = scrape(client)
    assert delta(before, after, "proofup_sign_ins_total", outcome="succeeded", reason="ok") == 2
    assert delta(before, after, "proofup_grant_transitions_total", kind="opened") == 1
    assert delta(before, after, "proofup_grant_transitions_total", kind="activated") == 1
    assert delta(before, after, "proofup_grant_transitions_total", kind="cancelled") == 1
    assert delta(before, after, "proofup_unlock_refusals_total", reason="privileged") == 1
    assert delta(before, after, "proofup_sign_ins_total", outcome="failed", reason="invalid_token") == 1


def app_client_signed_in(tmp_path, services, upn: str):
    client = portal(tmp_path, services)
    sign_in(client, upn)
    return client


def test_a_worker_cycle_and_a_release_are_counted(tmp_path, services, graph, clock):
    from app.wiring import build_worker
    from app.worker import run_worker

    client = portal(tmp_path, services, metrics_token=TOKEN)
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    before = scrape(client)
    graph.register(HALF)
    clock.advance(60)
    sweeper, lease = build_worker(services)
    assert run_worker(sweeper, lease, once=True)[0].released == 1
    after = scrape(client)
    assert delta(before, after, "proofup_grant_transitions_total", kind="released") == 1
    assert delta(before, after, "proofup_release_seconds_count") == 1
    assert delta(before, after, "proofup_method_seen_to_removed_seconds_count") == 1
    assert 0 <= delta(before, after, "proofup_method_seen_to_removed_seconds_sum") < 60  # seen and removed in one cycle
    assert delta(before, after, "proofup_worker_cycle_seconds_count") == 1
    assert after[("proofup_worker_last_success_timestamp_seconds", ())] > \
        before.get(("proofup_worker_last_success_timestamp_seconds", ()), 0)


class Budget:
    """A budget that lets through what fits in `free`."""

    def __init__(self, free: int):
        self.free = free
        self.blocks: list[tuple[str, float]] = []

    def take(self, category, count=1, wait_seconds=0.0):
        if count > self.free:
            return False
        self.free -= count
        return True

    def back_off(self, category, seconds):
        self.blocks.append((category, seconds))


def test_graph_requests_refusals_and_429s_are_counted_at_the_shared_budget():
    from app.metrics import MeteredBudget, exposition

    inner = Budget(free=21)
    budget = MeteredBudget(inner)
    before = samples(exposition().decode())
    assert budget.take("directory", 20) and budget.take("reports", 1) and not budget.take("directory", 5)
    budget.back_off("reports", 2.5)
    after = samples(exposition().decode())
    assert delta(before, after, "proofup_graph_requests_total", category="directory") == 20
    assert delta(before, after, "proofup_graph_requests_total", category="reports") == 1
    assert delta(before, after, "proofup_graph_budget_waits_total", category="directory") == 1
    assert delta(before, after, "proofup_graph_throttled_total", category="reports") == 1
    assert inner.blocks == [("reports", 2.5)] and budget.free == 0  # everything else reaches the real budget
