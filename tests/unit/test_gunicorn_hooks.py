"""The gunicorn hooks of `proofup serve`: metric files start afresh, dead workers' gauges go, objects are frozen."""
from __future__ import annotations

import gc
import os

from app import gunicorn_hooks


class Server:
    class log:  # noqa: N801 - gunicorn's attribute name
        lines: list[str] = []

        @classmethod
        def info(cls, message, *args):
            cls.lines.append(message % args)


class Worker:
    def __init__(self, pid: int):
        self.pid = pid


def test_a_start_removes_only_the_files_of_processes_that_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone, alive = tmp_path / "counter_999999999.db", tmp_path / f"counter_{os.getpid()}.db"
    for path in (gone, alive):
        path.write_bytes(b"\0" * 8)
    gunicorn_hooks.on_starting(Server)
    assert not gone.exists() and alive.exists()


def test_a_dead_worker_leaves_its_counters_but_not_its_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    counter, live_gauge = tmp_path / "counter_4242.db", tmp_path / "gauge_livesum_4242.db"
    for path in (counter, live_gauge):
        path.write_bytes(b"\0" * 8)
    gunicorn_hooks.child_exit(Server, Worker(4242))
    assert counter.exists() and not live_gauge.exists()


def test_the_preloaded_objects_are_frozen_before_the_workers_fork():
    try:
        gunicorn_hooks.when_ready(Server)
        assert gc.get_freeze_count() > 10_000  # the app's modules and objects, never examined by a worker's gc
    finally:
        gc.unfreeze()
