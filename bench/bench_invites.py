#!/usr/bin/env python3
"""Benchmark invite_many: a batch's invites in ONE unit of work, against the same invites made one by one.

Real parts: the store (SQLite file, or PostgreSQL with --database-url), the outbox, the invite service with
its sealing (Fernet) and audit lines. Nothing is mailed: this measures what the desk's "send" click costs.

Measured, side by side on fresh databases:
  bulk       invite_many(N students): one transaction, bulk statements (the batches' and the scan's call)
  supersede  invite_many(the same N) again: each older invite revoked and audited (a reminder round)
  single     N calls of invite(upn): one transaction each (the desk's button, N times)

Usage: .venv/bin/python bench/bench_invites.py [--students 2000] [--database-url URL]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.sealing import Sealer  # noqa: E402
from app.adapters.store import InviteStore, OutboxStore, Store  # noqa: E402
from app.domain.actors import Actor  # noqa: E402
from app.services.invites import SEAL_LABEL, InviteService, InviteSettings  # noqa: E402

DESK = Actor.staff("desk@uni.test", role="helpdesk", reason="bench")


def service(url: str) -> InviteService:
    store = Store(url)
    store.upgrade()
    return InviteService(store, InviteStore(store), OutboxStore(store, sender="proofup@uni.test"),
                         Sealer("bench-secret-key-0123456789", SEAL_LABEL),
                         InviteSettings(public_url="https://proofup.uni.test", mail_enabled=True))


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    upns = [f"student{n:04d}@uni.test" for n in range(args.students)]
    with tempfile.TemporaryDirectory() as folder:
        bulk_service = service(args.database_url or f"sqlite:///{folder}/bulk.sqlite3")
        bulk = timed(lambda: bulk_service.invite_many(upns, DESK, batch_id=1))
        supersede = timed(lambda: bulk_service.invite_many(upns, DESK, batch_id=1))
        single_service = bulk_service if args.database_url else service(f"sqlite:///{folder}/single.sqlite3")
        others = [f"single-{upn}" for upn in upns]  # students with no invite yet, as in the bulk run
        single = timed(lambda: [single_service.invite_many([upn], DESK) for upn in others])
    n = args.students
    print(f"{n} invites, {'PostgreSQL' if args.database_url else 'SQLite file'}")
    print(f"  bulk       {bulk:7.2f} s  {1000 * bulk / n:6.2f} ms per invite")
    print(f"  supersede  {supersede:7.2f} s  {1000 * supersede / n:6.2f} ms per invite")
    print(f"  single     {single:7.2f} s  {1000 * single / n:6.2f} ms per invite")
    print(f"  single / bulk = {single / bulk:.1f}x")


if __name__ == "__main__":
    main()
