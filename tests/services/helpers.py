"""Small test doubles for the grant, sweeper and budget tests: a settable clock and a scripted Graph."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Sequence

from app.domain.actors import Actor
from app.domain.evidence import AuthMethod, GraphError

ADMIN = Actor.cli("tester", reason="test")  # an admin acting in a test, where who acts does not matter

AUTHENTICATOR = AuthMethod(id="m-auth", kind="microsoftAuthenticator", display_name="Pixel")
PASSWORD = AuthMethod(id="28c10230-6103-485e-b985-444c60001490", kind="password")
TAP = AuthMethod(id="m-tap", kind="temporaryAccessPass")


class FakeClock:
    """A clock the test moves by hand; callable like utc_now."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def epoch(self) -> float:
        return self.now.timestamp()


class ScriptedGraph:
    """The Graph Protocol's methods_for, answering from a dict; records every call."""

    def __init__(self) -> None:
        self.methods: dict[str, tuple[AuthMethod, ...]] = {}
        self.failures: dict[str, GraphError] = {}
        self.calls: list[list[str]] = []
        self.raise_on_call: Exception | None = None

    def methods_for(self, user_ids: Sequence[str]) -> dict[str, tuple[AuthMethod, ...] | GraphError]:
        self.calls.append(list(user_ids))
        if self.raise_on_call is not None:
            raise self.raise_on_call
        return {uid: self.failures.get(uid) or self.methods.get(uid, (PASSWORD,)) for uid in user_ids}

    def gather_evidence(self, upn: str):  # pragma: no cover - not used by the worker
        raise NotImplementedError

    def create_temporary_access_pass(self, user_id: str, lifetime_minutes: int = 60, one_time: bool = True):
        raise NotImplementedError  # pragma: no cover


class FlakyDirectory:
    """Wrap a real Directory; named operations raise the given error (once, or every time) instead of running."""

    def __init__(self, inner, **failures: Exception):
        self.inner = inner
        self.failures = dict(failures)
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        operation = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            if name in self.failures:
                raise self.failures[name]
            return operation(*args, **kwargs)

        return call


class RecordingBudget:
    """A RequestBudget that always grants and remembers every back-off."""

    def __init__(self) -> None:
        self.back_offs: list[tuple[str, float]] = []

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        return True

    def back_off(self, category: str, seconds: float) -> None:
        self.back_offs.append((category, seconds))
