"""The Graph adapter with the real msgraph-sdk and msal against the simulated Graph (gunicorn, keep-alive TLS)."""
from __future__ import annotations

import logging
import time
import uuid

import pytest

from app.adapters.graph import SIGN_INS_SKIPPED, GraphClient
from app.domain.evidence import AUTHENTICATOR_APP_ID, GraphError, GraphThrottled, GraphUnavailable
from app.domain.ports import DIRECTORY, REPORTS
from tests.support import run_in_forked_child


class RecordingBudget:
    """A RequestBudget that grants what `grant` allows and remembers every take and back-off."""

    def __init__(self, deny: frozenset[str] = frozenset()):
        self.deny = deny
        self.taken: list[tuple[str, int]] = []
        self.back_offs: list[tuple[str, float]] = []

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        self.taken.append((category, count))
        return category not in self.deny

    def back_off(self, category: str, seconds: float) -> None:
        self.back_offs.append((category, seconds))


def make_client(simulator, client_id=None, **options) -> GraphClient:
    client_id = client_id or simulator.graph_client_id
    return GraphClient(simulator.entra_authority, client_id, simulator.secret(client_id), simulator.graph_url,
                       ca_file=simulator.ca_file, **options)


@pytest.fixture
def graph(simulator):
    return make_client(simulator)


@pytest.fixture(autouse=True)
def fresh_simulator(simulator):
    """Each test starts with no faults and full throttling buckets (sign-in reports allow 5 per 10 s)."""
    simulator.clear_faults()
    simulator.reset_throttle()
    yield
    simulator.clear_faults()


def graph_requests(simulator, since: int) -> list[dict]:
    """Requests the simulator received under /v1.0 since a sequence number: (round trips, batch parts)."""
    return [e for e in simulator.requests_log(since) if e["path"].startswith("/v1.0")]


def round_trips(entries: list[dict]) -> list[dict]:
    return [e for e in entries if not e["batch_part"]]


def test_half_registered_student_evidence_in_one_round_trip(simulator, graph):
    graph.gather_evidence("barbara.liskov@uni.test")  # token and typed models ready: count only the real call
    since, sent_before = simulator.last_seq(), graph.requests_sent
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    entries = graph_requests(simulator, since)
    assert [(e["method"], e["path"]) for e in round_trips(entries)] == [("POST", "/v1.0/$batch")]
    assert sorted(e["path"] for e in entries if e["batch_part"]) == sorted([
        "/v1.0/users/ada.lovelace@uni.test", "/v1.0/users/ada.lovelace@uni.test/authentication/methods",
        "/v1.0/users/ada.lovelace@uni.test/registeredDevices", "/v1.0/auditLogs/signIns"])
    assert evidence.round_trips == 1 and graph.requests_sent - sent_before == 1
    assert evidence.complete, evidence.errors
    assert evidence.user.upn == "ada.lovelace@uni.test" and evidence.user.account_enabled
    assert evidence.user.id == simulator.graph_get("/users/ada.lovelace@uni.test").json()["id"]
    assert evidence.strong_methods == () and [m.kind for m in evidence.methods] == ["password"]
    assert evidence.authenticator_sign_ins, "a half-registered student has signed in to the Authenticator app"
    assert all(s.app_id == AUTHENTICATOR_APP_ID for s in evidence.authenticator_sign_ins)
    assert evidence.devices


@pytest.mark.parametrize("upn, strong", [("barbara.liskov@uni.test", ["microsoftAuthenticator"]),
                                         ("donald.knuth@uni.test", ["phone"]),
                                         ("grace.hopper@uni.test", [])])
def test_registered_and_unregistered_students(graph, upn, strong):
    evidence = graph.gather_evidence(upn)
    assert evidence.complete, evidence.errors
    assert [m.kind for m in evidence.strong_methods] == strong
    if upn == "grace.hopper@uni.test":
        assert evidence.authenticator_sign_ins == ()


def test_disabled_account_is_reported(graph):
    evidence = graph.gather_evidence("dennis.ritchie@uni.test")
    assert evidence.user is not None and evidence.user.account_enabled is False


def test_student_missing_in_entra(graph):
    evidence = graph.gather_evidence("radia.perlman@uni.test")
    assert evidence.user is None and evidence.methods == ()
    assert list(evidence.errors) == ["user"] and evidence.errors["user"].status == 404
    assert not evidence.complete


def test_missing_permissions_show_as_part_errors(simulator):
    limited = make_client(simulator, simulator.limited_client_id)  # User.Read.All only
    evidence = limited.gather_evidence("ada.lovelace@uni.test")
    assert evidence.user is not None
    assert evidence.errors["methods"].status == 403 and evidence.errors["sign_ins"].status == 403
    assert "devices" not in evidence.errors


def test_a_bad_upn_sends_nothing(simulator, graph):
    since = simulator.last_seq()
    for bad in ("ada@uni.test/../../groups", "ada@uni.test?$select=*", "' or 1 eq 1", ""):
        with pytest.raises(ValueError):
            graph.gather_evidence(bad)
    assert graph_requests(simulator, since) == []


def test_a_quote_in_a_upn_is_escaped_not_injected(simulator, graph):
    since = simulator.last_seq()
    evidence = graph.gather_evidence("o'brien@uni.test")
    assert evidence.errors["user"].status == 404
    sign_ins = [e for e in graph_requests(simulator, since) if e["path"] == "/v1.0/auditLogs/signIns"]
    assert sign_ins and sign_ins[0]["status"] == 200  # the doubled quote kept the $filter valid


def test_reports_budget_exhausted_skips_the_sign_in_part(simulator):
    budget = RecordingBudget(deny=frozenset({REPORTS}))
    graph = make_client(simulator, budget=budget)
    since = simulator.last_seq()
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert (DIRECTORY, 3) in budget.taken and (REPORTS, 1) in budget.taken
    assert str(evidence.errors["sign_ins"]) == SIGN_INS_SKIPPED
    assert evidence.user is not None and evidence.methods
    parts = [e["path"] for e in graph_requests(simulator, since) if e["batch_part"]]
    assert len(parts) == 3 and "/v1.0/auditLogs/signIns" not in parts


def test_directory_budget_exhausted_sends_nothing(simulator):
    graph = make_client(simulator, budget=RecordingBudget(deny=frozenset({DIRECTORY})), budget_wait=0)
    since = simulator.last_seq()
    with pytest.raises(GraphThrottled):
        graph.gather_evidence("ada.lovelace@uni.test")
    assert graph_requests(simulator, since) == []


def batch_times(simulator, since: int) -> list[float]:
    return [e["time"] for e in round_trips(graph_requests(simulator, since))]


def test_a_fractional_retry_after_on_the_batch_is_waited_out(simulator, graph):
    """Graph sends Retry-After like 2.7: the retry middleware used to read only whole numbers and retry at once."""
    graph.gather_evidence("barbara.liskov@uni.test")
    simulator.add_fault("/v1.0/$batch", "429", seconds=2.7, count=1)
    since = simulator.last_seq()
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert evidence.complete, evidence.errors
    first, retry = batch_times(simulator, since)
    assert retry - first >= 2.7


def test_a_throttled_part_is_sent_again_after_its_own_retry_after(simulator):
    """The batch answers 200 with one part 429: that part goes again, alone, after its Retry-After."""
    budget = RecordingBudget()
    graph = make_client(simulator, budget=budget)
    graph.gather_evidence("barbara.liskov@uni.test")
    budget.back_offs.clear()
    simulator.add_fault("/v1.0/auditLogs/signIns", "429", seconds=1.6, count=1)
    since = simulator.last_seq()
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert evidence.complete, evidence.errors
    assert evidence.authenticator_sign_ins and evidence.round_trips == 2
    first, again = batch_times(simulator, since)
    assert again - first >= 1.6
    parts = [e["path"] for e in graph_requests(simulator, since) if e["batch_part"] and e["time"] > first]
    assert parts == ["/v1.0/auditLogs/signIns"]
    assert budget.back_offs == [(REPORTS, 1.6)]  # told first, so that every instance waits too
    assert budget.taken[-1] == (REPORTS, 1)  # the resent part is paid for again


def test_a_failed_resend_keeps_the_parts_that_were_answered(simulator):
    graph = make_client(simulator, budget=RecordingBudget(), interactive_retries=0)
    simulator.add_fault("/v1.0/auditLogs/signIns", "429", seconds=0.5, count=1)
    simulator.add_fault("/v1.0/$batch", "latency", seconds=0, count=1)  # faults are used in order: the first
    simulator.add_fault("/v1.0/$batch", "503", count=1)  # batch is answered, the resend is not
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert evidence.user is not None and evidence.methods
    assert isinstance(evidence.errors["sign_ins"], GraphThrottled)


def test_a_part_throttled_for_longer_than_a_page_may_wait_is_reported(simulator):
    budget = RecordingBudget()
    graph = make_client(simulator, budget=budget)
    simulator.add_fault("/v1.0/auditLogs/signIns", "429", seconds=30, count=1)
    since, started = simulator.last_seq(), time.monotonic()
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert time.monotonic() - started < 3
    throttled = evidence.errors["sign_ins"]
    assert isinstance(throttled, GraphThrottled) and throttled.retry_after == 30
    assert budget.back_offs == [(REPORTS, 30)]
    assert evidence.user is not None and set(evidence.errors) == {"sign_ins"}
    assert len(round_trips(graph_requests(simulator, since))) == 1


def test_reports_limit_of_the_simulator_is_waited_out_part_by_part(simulator, graph):
    """Diagnoses in a burst empty Graph's 5-per-10-s report bucket: the next diagnosis's sign-in part is throttled
    with a fractional Retry-After (about 2 s), and that part alone is sent again once it has passed."""
    for _ in range(5):
        graph.gather_evidence("ada.lovelace@uni.test")
    # The bucket refills at 0.5 a second: on a slow machine the five may have earned a token back, so take
    # what is left directly (at most a few) until the simulator answers 429.
    answers = []
    for _ in range(4):
        answers.append(simulator.graph_get("/auditLogs/signIns?$top=1"))
        if answers[-1].status_code == 429:
            break
    answer = answers[-1]
    assert answer.status_code == 429, [a.status_code for a in answers]
    retry_after = float(answer.headers["Retry-After"])
    assert 0 < retry_after <= 10 and not retry_after.is_integer(), answer.headers["Retry-After"]
    evidence = graph.gather_evidence("ada.lovelace@uni.test")
    assert evidence.complete, evidence.errors
    assert evidence.round_trips >= 2


def test_methods_for_45_users_takes_3_batches(simulator, graph):
    seeded = [u.upn for u in simulator.seed.users]
    ghosts = [str(uuid.uuid4()) for _ in range(45 - len(seeded))]
    since = simulator.last_seq()
    results = graph.methods_for(seeded + ghosts)
    trips = round_trips(graph_requests(simulator, since))
    assert [e["path"] for e in trips] == ["/v1.0/$batch"] * 3
    assert list(results) == seeded + ghosts
    assert [m.kind for m in results["barbara.liskov@uni.test"] if m.strong] == ["microsoftAuthenticator"]
    assert isinstance(results["radia.perlman@uni.test"], GraphError)
    assert all(isinstance(results[g], GraphError) and results[g].status == 404 for g in ghosts)


def test_methods_for_sends_a_briefly_throttled_part_again(simulator):
    graph = make_client(simulator, budget=RecordingBudget())
    users = [u.upn for u in simulator.seed.users]
    simulator.add_fault("/v1.0/users/alan.turing@uni.test/authentication/methods", "429", seconds=1.5, count=1)
    since = simulator.last_seq()
    results = graph.methods_for(users)
    assert all(isinstance(results[u], tuple) for u in users if u != "radia.perlman@uni.test")
    first, again = batch_times(simulator, since)
    assert again - first >= 1.5
    assert [e["path"] for e in graph_requests(simulator, since) if e["batch_part"] and e["time"] > first] == [
        "/v1.0/users/alan.turing@uni.test/authentication/methods"]


def test_methods_for_stops_at_a_throttled_part(simulator):
    budget = RecordingBudget()
    graph = make_client(simulator, budget=budget)
    seeded = [u.upn for u in simulator.seed.users]
    users = seeded + [str(uuid.uuid4()) for _ in range(15)]  # 25: two batches
    simulator.add_fault("/v1.0/users/alan.turing@uni.test/authentication/methods", "429", seconds=30, count=1)
    since = simulator.last_seq()
    results = graph.methods_for(users)
    assert isinstance(results["alan.turing@uni.test"], GraphThrottled)
    assert results["alan.turing@uni.test"].retry_after == 30
    assert (DIRECTORY, 30) in budget.back_offs
    assert isinstance(results["barbara.liskov@uni.test"], tuple)  # the rest of that batch still counts
    assert all(isinstance(results[u], GraphThrottled) for u in users[20:])  # the next batch was not sent
    assert len(round_trips(graph_requests(simulator, since))) == 1


def test_methods_for_never_raises(simulator):
    graph = make_client(simulator, timeout=2)
    simulator.add_fault("/v1.0/$batch", "503")
    results = graph.methods_for(["ada.lovelace@uni.test", "not a upn"])
    assert isinstance(results["ada.lovelace@uni.test"], GraphUnavailable)
    assert results["not a upn"].status == 400


def test_503_gives_graph_unavailable_after_one_bounded_retry(simulator):
    graph = make_client(simulator, timeout=5)
    graph.gather_evidence("barbara.liskov@uni.test")
    simulator.add_fault("/v1.0/$batch", "503")
    since, started = simulator.last_seq(), time.monotonic()
    with pytest.raises(GraphUnavailable) as caught:
        graph.gather_evidence("ada.lovelace@uni.test")
    assert caught.value.status == 503
    assert time.monotonic() - started < 4
    assert len(round_trips(graph_requests(simulator, since))) == 2  # first try + interactive_retries=1


def test_a_long_retry_after_is_not_slept_through(simulator):
    budget = RecordingBudget()
    graph = make_client(simulator, budget=budget)
    simulator.add_fault("/v1.0/$batch", "429", seconds=30)
    started = time.monotonic()
    with pytest.raises(GraphThrottled) as caught:
        graph.gather_evidence("ada.lovelace@uni.test")
    assert time.monotonic() - started < 3
    assert caught.value.retry_after == 30 and (DIRECTORY, 30) in budget.back_offs


def test_a_hung_graph_gives_graph_unavailable_in_bounded_time(simulator):
    graph = make_client(simulator, timeout=1.0, interactive_retries=0)
    graph.gather_evidence("barbara.liskov@uni.test")
    simulator.add_fault("/v1.0/$batch", "hang", seconds=4, count=1)
    started = time.monotonic()
    with pytest.raises(GraphUnavailable):
        graph.gather_evidence("ada.lovelace@uni.test")
    assert time.monotonic() - started < 2.5
    assert graph.gather_evidence("ada.lovelace@uni.test").user is not None  # the client is still usable


def test_many_calls_on_a_keep_alive_server(simulator, graph):
    for _ in range(8):
        assert graph.methods_for(["barbara.liskov@uni.test", "ada.lovelace@uni.test"])
    time.sleep(5.5)  # longer than the server's keep-alive: the pooled connection is gone
    assert graph.gather_evidence("ada.lovelace@uni.test").user is not None


def test_the_adapter_works_in_a_forked_child(simulator, graph):
    assert graph.gather_evidence("ada.lovelace@uni.test").user is not None  # loop and connections in the parent

    def in_child():
        evidence = graph.gather_evidence("barbara.liskov@uni.test")
        return {"upn": evidence.user.upn, "trips": evidence.round_trips}

    assert run_in_forked_child(in_child) == {"upn": "barbara.liskov@uni.test", "trips": 1}
    assert graph.gather_evidence("grace.hopper@uni.test").user is not None  # the parent still works


@pytest.fixture
def private_graph(simulator_factory):
    """A Graph client on a simulator of its own: a TAP changes a student's methods for good."""
    private = simulator_factory()
    return private, make_client(private)


KNOWN_KINDS = {"microsoftAuthenticator": True, "phone": True, "fido2": True, "softwareOath": True,
               "hardwareOath": True, "windowsHelloForBusiness": True, "email": False, "platformCredential": True,
               "externalAuthentication": True, "qrCodePin": False}


def test_every_method_type_and_an_unknown_one(private_graph):
    """Every type Graph v1.0 lists maps to its kind; a type the portal does not know counts as a method."""
    simulator, graph = private_graph
    upn = "grace.hopper@uni.test"  # unregistered: only the password so far
    for kind in [*KNOWN_KINDS, "futureMethod"]:
        simulator.add_method(upn, kind)
    methods = {m.kind: m for m in graph.gather_evidence(upn).methods}
    assert set(methods) == {"password", *KNOWN_KINDS, "unknown"}
    assert {kind: methods[kind].strong for kind in KNOWN_KINDS} == KNOWN_KINDS
    unknown = methods["unknown"]
    assert unknown.strong and unknown.display_name == "Something new"


def test_temporary_access_pass(private_graph):
    simulator, graph = private_graph
    user_id = graph.gather_evidence("grace.hopper@uni.test").user.id
    tap = graph.create_temporary_access_pass(user_id, lifetime_minutes=60, one_time=True)
    assert tap.code and tap.id and tap.lifetime_minutes == 60 and tap.one_time
    assert tap.code not in repr(tap)
    kinds = [m.kind for m in graph.methods_for([user_id])[user_id]]
    assert "temporaryAccessPass" in kinds


def test_temporary_access_pass_bad_input_and_faults(simulator, graph):
    since = simulator.last_seq()
    for minutes in (5, 50000):
        with pytest.raises(ValueError):
            graph.create_temporary_access_pass("grace.hopper@uni.test", minutes)
    with pytest.raises(ValueError):
        graph.create_temporary_access_pass("not a user", 60)
    assert graph_requests(simulator, since) == []
    simulator.add_fault("/v1.0/users/grace.hopper@uni.test/authentication/temporaryAccessPassMethods", "503")
    with pytest.raises(GraphUnavailable):
        graph.create_temporary_access_pass("grace.hopper@uni.test", 60)
    posts = [e for e in graph_requests(simulator, since) if e["method"] == "POST"]
    assert len(posts) == 1  # never retried: a second POST would replace the pass just shown


def test_no_secret_token_or_code_reaches_the_logs(private_graph, caplog):
    caplog.set_level(logging.DEBUG)
    simulator, graph = private_graph
    evidence = graph.gather_evidence("grace.hopper@uni.test")
    graph.methods_for([evidence.user.id])
    tap = graph.create_temporary_access_pass(evidence.user.id, 60)
    token = graph._access_token()  # MSAL's cached token: the one the calls above carried
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    for secret in (simulator.secret(simulator.graph_client_id), token, token.split(".")[2], tap.code):
        assert secret not in logged


def test_a_refused_app_token_is_a_clear_error_and_sends_nothing_to_graph(simulator):
    wrong = GraphClient(simulator.entra_authority, simulator.graph_client_id, "not-the-secret", simulator.graph_url,
                        ca_file=simulator.ca_file)
    since = simulator.last_seq()
    with pytest.raises(GraphError) as caught:
        wrong.gather_evidence("ada.lovelace@uni.test")
    assert caught.value.status == 401 and caught.value.code == "invalid_client"
    assert not isinstance(caught.value, GraphUnavailable)
    assert graph_requests(simulator, since) == []


def test_an_unreachable_token_authority_is_graph_unavailable(simulator):
    dead = GraphClient("https://127.0.0.1:9/tenant", simulator.graph_client_id, "secret", simulator.graph_url,
                       ca_file=simulator.ca_file, timeout=2)
    with pytest.raises(GraphUnavailable):
        dead.gather_evidence("ada.lovelace@uni.test")
    assert dead.methods_for(["ada.lovelace@uni.test"])["ada.lovelace@uni.test"].transient
