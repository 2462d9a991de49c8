"""sweep_evidence: the evidence about many students from the real msgraph-sdk against the simulated Graph.

The simulator has 40 people here (the demo's and generated students), so that 30 fill more than one $batch.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from app.adapters.graph import USERS_PER_FILTER, GraphClient, relative_link, tenant_sign_ins_request, users_request
from app.domain.evidence import AUTHENTICATOR_APP_ID, GraphError
from app.domain.ports import DIRECTORY, REPORTS
from app.seed import DEMO_SEED
from tests.fixtures.simulator import TEST_ARGS, start_simulator

GENERATED = 28
SINCE_DAYS = 30


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    """A simulator whose tenant has the demo's people plus 28 students, two in three half-registered."""
    folder = tmp_path_factory.mktemp("crowd")
    raw = yaml.safe_load(DEMO_SEED.read_text(encoding="utf-8"))
    raw["users"] += [{"upn": f"student{i:02d}@uni.test", "display_name": f"Student {i:02d}",
                      "state": "half_registered" if i % 3 else "registered"} for i in range(GENERATED)]
    seed = folder / "seed.yaml"
    seed.write_text(yaml.safe_dump(raw), encoding="utf-8")
    handle = start_simulator(folder / "sim", *TEST_ARGS, seed_path=seed)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def fresh(crowd):
    crowd.clear_faults()
    crowd.reset_throttle()
    yield
    crowd.clear_faults()


class CountingBudget:
    """A budget that always grants and counts what was taken and backed off, per category."""

    def __init__(self):
        self.taken = {DIRECTORY: 0, REPORTS: 0}
        self.back_offs: list[tuple[str, float]] = []

    def take(self, category, count=1, wait_seconds=0.0):
        self.taken[category] += count
        return True

    def back_off(self, category, seconds):
        self.back_offs.append((category, seconds))


class DenyReports(CountingBudget):
    def take(self, category, count=1, wait_seconds=0.0):
        return category != REPORTS


def seed_state(sim, upn: str) -> str:
    return sim.seed.user(upn).state


def client(sim, **options) -> GraphClient:
    return GraphClient(sim.entra_authority, sim.graph_client_id, sim.secret(sim.graph_client_id), sim.graph_url,
                       ca_file=sim.ca_file, **options)


def since() -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=SINCE_DAYS)


def round_trips(sim, seq: int) -> list[dict]:
    return [e for e in sim.requests_log(seq) if e["path"].startswith("/v1.0") and not e["batch_part"]]


def parts(sim, seq: int) -> list[dict]:
    return [e for e in sim.requests_log(seq) if e["batch_part"]]


def thirty(sim) -> list[str]:
    demo = [u.upn for u in sim.seed.users][:12]
    return demo + [f"student{i:02d}@uni.test" for i in range(18)]


def test_thirty_students_in_two_graph_requests(crowd):
    graph = client(crowd, budget=CountingBudget())
    graph.gather_evidence("barbara.liskov@uni.test")  # token and typed models ready: count only the sweep
    graph.budget.taken = {DIRECTORY: 0, REPORTS: 0}
    seq, progress = crowd.last_seq(), []
    sweep = graph.sweep_evidence(thirty(crowd), since=since(), progress=lambda d, t: progress.append((d, t)))
    assert sweep.requests == 2 and sweep.sign_in_pages == 1
    assert [e["path"] for e in round_trips(crowd, seq)] == ["/v1.0/$batch", "/v1.0/$batch"]
    sent = parts(crowd, seq)
    # 2 user look-ups (15 UPNs each, devices expanded) + 30 method lists + 1 tenant-wide sign-in page.
    assert sorted(p["path"] for p in sent if not p["path"].endswith("/methods")) == [
        "/v1.0/auditLogs/signIns", "/v1.0/users", "/v1.0/users"]
    assert len(sent) == 33 and all(p["status"] in (200, 404) for p in sent)
    assert progress[-1] == (30, 30) and len(progress) == 2
    assert graph.budget.taken == {DIRECTORY: 32, REPORTS: 1}


def test_the_sweep_says_what_the_single_evidence_says(crowd):
    graph = client(crowd)
    single_reader = client(crowd, budget=DenyReports())  # one report request per student would take minutes
    upns = thirty(crowd)
    sweep = graph.sweep_evidence(upns, since=since())
    assert list(sweep.evidence) == upns
    for upn in upns:
        single, many = single_reader.gather_evidence(upn), sweep.evidence[upn]
        assert many.user == single.user, upn
        # The sweep maps JSON itself (the SDK's typed models cost milliseconds an object): the same values.
        assert sorted(many.methods, key=lambda m: m.id) == sorted(single.methods, key=lambda m: m.id), upn
        assert sorted(many.devices, key=lambda d: d.id) == sorted(single.devices, key=lambda d: d.id), upn
        assert set(many.errors) == set(single.errors) - {"sign_ins"}, upn
        assert all(s.app_id == AUTHENTICATOR_APP_ID for s in many.authenticator_sign_ins)
    traced = {u for u, e in sweep.evidence.items() if e.authenticator_sign_ins}
    assert traced == {u for u in upns if seed_state(crowd, u) == "half_registered" and sweep.evidence[u].user}
    assert sweep.evidence["radia.perlman@uni.test"].errors["user"].status == 404  # in AD, not in Entra


def test_sign_ins_are_read_tenant_wide_page_after_page(crowd):
    moment = since()
    whole = client(crowd).sweep_evidence(thirty(crowd), since=moment)
    tenant = len(crowd.graph_get(tenant_sign_ins_request(moment)).json()["value"])  # others' sign-ins too
    assert tenant > 8 and whole.sign_in_pages == 1
    paged = client(crowd)
    paged.sign_in_page_size = tenant // 3 + 1  # three pages: inside the 5 report requests a tenant gets per 10 s
    seq = crowd.last_seq()
    sweep = paged.sweep_evidence(thirty(crowd), since=moment)
    pages = [p for p in parts(crowd, seq) if p["path"] == "/v1.0/auditLogs/signIns"]
    assert len(pages) == sweep.sign_in_pages == 3 and all(p["status"] == 200 for p in pages)
    assert all("skiptoken" in p["query"] for p in pages[1:]) and "skiptoken" not in pages[0]["query"]
    for upn, evidence in whole.evidence.items():
        assert ({s.id for s in sweep.evidence[upn].authenticator_sign_ins}
                == {s.id for s in evidence.authenticator_sign_ins}), upn
    # The second page rides in the second methods batch; only the third needs a request of its own.
    assert sweep.requests == whole.requests + 1


def test_a_page_throttled_by_the_reports_limit_is_read_after_retry_after(crowd):
    """Five report requests in 10 s are all a tenant gets: the sixth is answered 429 and sent again later."""
    for _ in range(5):
        assert crowd.graph_get("/auditLogs/signIns?$top=1").status_code == 200
    budget = CountingBudget()
    seq = crowd.last_seq()
    sweep = client(crowd, budget=budget).sweep_evidence(thirty(crowd), since=since())
    assert all(not e.errors or set(e.errors) == {"user"} for e in sweep.evidence.values())
    assert sweep.evidence["ada.lovelace@uni.test"].authenticator_sign_ins
    pages = [p for p in parts(crowd, seq) if p["path"] == "/v1.0/auditLogs/signIns"]
    assert [p["status"] for p in pages] == [429, 200]
    assert pages[1]["time"] - pages[0]["time"] >= budget.back_offs[0][1] > 0
    assert budget.back_offs[0][0] == REPORTS


def test_a_failed_batch_fails_only_the_students_in_it(crowd):
    crowd.add_fault("/v1.0/$batch", "503", count=1)  # the first batch (a bulk job does not resend a whole batch)
    sweep = client(crowd, interactive_retries=0).sweep_evidence(thirty(crowd), since=since())
    failed = [u for u, e in sweep.evidence.items() if "methods" in e.errors]
    assert 0 < len(failed) < 30
    assert all(e.errors["methods"].status == 503 for u, e in sweep.evidence.items() if u in failed)
    assert all("sign_ins" in e.errors for e in sweep.evidence.values())  # the sign-in page rode in the first


def test_bad_and_hostile_upns_send_nothing_for_them(crowd):
    seq = crowd.last_seq()
    sweep = client(crowd).sweep_evidence(["not a upn", "x@y", "ADA.Lovelace@uni.test ", "o'brien@uni.test"],
                                         since=since())
    assert list(sweep.evidence) == ["not a upn", "x@y", "ada.lovelace@uni.test", "o'brien@uni.test"]
    assert sweep.evidence["not a upn"].errors["user"].status == 400
    assert sweep.evidence["x@y"].errors["user"].status == 400
    assert sweep.evidence["o'brien@uni.test"].errors["user"].status == 404  # the quote was escaped, not injected
    assert sweep.evidence["ada.lovelace@uni.test"].user is not None
    assert all(p["status"] in (200, 404) for p in parts(crowd, seq))


def test_nobody_valid_costs_no_request(crowd):
    seq = crowd.last_seq()
    sweep = client(crowd).sweep_evidence(["", "nobody"], since=since())
    assert sweep.requests == 0 and round_trips(crowd, seq) == []


def test_a_next_link_elsewhere_is_refused():
    base = "https://graph.example.test/v1.0"
    assert relative_link(base + "/auditLogs/signIns?$skiptoken=2", base) == "/auditLogs/signIns?$skiptoken=2"
    for link in ("https://evil.test/v1.0/users", "http://graph.example.test/v1.0/users",
                 "https://graph.example.test/beta/users"):
        with pytest.raises(GraphError):
            relative_link(link, base)


def test_one_user_filter_takes_at_most_fifteen():
    users_request(["a@uni.test"] * USERS_PER_FILTER)
    with pytest.raises(ValueError):
        users_request(["a@uni.test"] * (USERS_PER_FILTER + 1))


def test_the_simulator_refuses_sixteen_values_like_graph(crowd):
    wanted = ",".join(f"'s{i}@uni.test'" for i in range(16))
    answer = crowd.graph_get(f"/users?$filter=userPrincipalName in ({wanted})")
    assert answer.status_code == 400


def test_a_part_graph_left_unanswered_fails_its_students_and_the_sign_ins_say_so(crowd, monkeypatch):
    graph = client(crowd)
    real = graph._send_parts

    def drop_some(parts, retries, max_wait):
        answers, trips = real(parts, retries, max_wait)
        return {k: v for k, v in answers.items() if not k.startswith(("sign_ins-", "methods-0"))}, trips

    monkeypatch.setattr(graph, "_send_parts", drop_some)
    sweep = graph.sweep_evidence(thirty(crowd), since=since())
    first = sweep.evidence[thirty(crowd)[0]]
    assert first.errors["methods"].status == 0 and "methods" not in sweep.evidence[thirty(crowd)[1]].errors
    assert all("sign_ins" in e.errors for e in sweep.evidence.values())  # never "no sign-ins" on a missing answer
