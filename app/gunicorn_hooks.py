"""gunicorn server hooks for `proofup serve` (loaded with `--config python:app.gunicorn_hooks`)."""
from __future__ import annotations

import gc
import os

from app import logs, metrics

# The portal's, gunicorn's and the access log's lines, in PROOFUP_LOG_FORMAT (plain or json), on stderr.
logconfig_dict = logs.gunicorn_config(os.environ.get("PROOFUP_LOG_LEVEL", "WARNING"), logs.log_format())


def on_starting(server) -> None:
    """Drop the metric files of processes from earlier starts, so the totals begin afresh."""
    removed = metrics.clear_dead_files()
    if removed:
        server.log.info("metrics: removed %d value file(s) of processes that no longer run", removed)


def child_exit(server, worker) -> None:
    """Forget a dead worker's live gauges (its counters stay in the totals)."""
    metrics.mark_dead(worker.pid)


def when_ready(server) -> None:
    """Freeze what the preloaded app made, just before the workers fork.

    A full collection in a worker would otherwise touch every preloaded object and un-share its page
    (copy-on-write): frozen objects are never examined, so the workers keep sharing them.
    """
    gc.collect()
    gc.freeze()
