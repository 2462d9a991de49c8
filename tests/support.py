"""Helpers shared by test modules: the rule for missing real parts, and a migrated store."""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest


def real_parts_required() -> bool:
    """Tell whether a missing real part (Samba, Chromium, PostgreSQL) must fail rather than skip."""
    return bool(os.environ.get("CI") or os.environ.get("PROOFUP_REQUIRE_REAL"))


def missing_real_part(what: str, how: str = "run scripts/test, which installs it") -> None:
    """Fail in CI (and under scripts/test), skip elsewhere: a missing real part is never silently passed."""
    message = f"{what} is not available: {how}"
    if real_parts_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def real_tool(command: str, package: str) -> str:
    """Return the path of a command the tests run for real, or fail/skip naming its Debian package."""
    import shutil

    found = shutil.which(command)
    if found is None:
        missing_real_part(f"{command} (Debian package {package})")
    return found


def run_in_forked_child(work, timeout: float = 30.0):
    """Run work() in a child made by os.fork() and return its JSON-able result; fail if it raises or hangs."""
    import json
    import time

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe and never return into pytest
        code = 1
        try:
            os.write(write_end, json.dumps({"result": work()}).encode())
            code = 0
        except BaseException as error:  # noqa: BLE001 - reported to the parent as text
            os.write(write_end, json.dumps({"error": repr(error)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the forked child did not finish within {timeout:.0f} s")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as pipe:
        answer = json.loads(pipe.read() or b'{"error": "no answer"}')
    if "error" in answer:
        pytest.fail(f"the forked child failed: {answer['error']}")
    return answer["result"]


@contextmanager
def upgraded_store(url: str, clock):
    """Open a Store on `url`, bring its schema to head, and dispose of it afterwards."""
    from app.adapters.store import Store

    store = Store(url, clock=clock)
    store.upgrade()
    try:
        yield store
    finally:
        store.dispose()


@contextmanager
def closing_each(make, close):
    """Yield a factory that keeps whatever make() returns, and close each of them when the block ends."""
    made = []

    def factory(*args, **kwargs):
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    try:
        yield factory
    finally:
        for thing in made:
            close(thing)


def run_in_threads(work, count: int) -> list[BaseException]:
    """Run work() in `count` threads at once, wait for all, and return what they raised."""
    import threading

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed back for the test's assertion
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def fresh_python(code: str, **env: str) -> object:
    """Run code in a fresh interpreter with this checkout first on the path; return the JSON of its last line.

    For what only a new process shows: which modules an action imports.
    """
    import json
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root), **env}, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
