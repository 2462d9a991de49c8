"""How the Graph adapter tells the shared request budget about Graph's 429 answers (no network)."""
from __future__ import annotations

from app.adapters.graph import GraphClient
from app.domain.evidence import GraphThrottled, GraphUnavailable
from app.domain.ports import DIRECTORY, REPORTS


class Recorder:
    def __init__(self):
        self.back_offs: list[tuple[str, float]] = []

    def take(self, category, count=1, wait_seconds=0.0):
        return True

    def back_off(self, category, seconds):
        self.back_offs.append((category, seconds))


def client(budget) -> GraphClient:
    return GraphClient("https://login.example/t", "id", "secret", "https://graph.example/v1.0/", budget=budget)


def test_retry_after_wins_and_one_call_backs_off_once():
    budget = Recorder()
    client(budget)._settle(DIRECTORY, [GraphThrottled("a", 429, retry_after=1.5),
                                       GraphThrottled("b", 429, retry_after=3.0), GraphUnavailable("c", 503)])
    assert budget.back_offs == [(DIRECTORY, 3.0)]


def test_without_retry_after_the_back_off_doubles_until_a_clean_call():
    budget = Recorder()
    graph = client(budget)
    for _ in range(3):
        graph._settle(REPORTS, [GraphThrottled("x", 429)])
    graph._settle(DIRECTORY, [GraphThrottled("x", 429)])  # categories count apart
    graph._settle(REPORTS, [GraphUnavailable("not a 429", 503)])
    graph._settle(REPORTS, [GraphThrottled("x", 429)])
    assert budget.back_offs == [(REPORTS, 2.0), (REPORTS, 4.0), (REPORTS, 8.0), (DIRECTORY, 2.0), (REPORTS, 2.0)]


def test_the_base_url_never_ends_in_a_slash():
    assert client(Recorder()).graph_url == "https://graph.example/v1.0"
