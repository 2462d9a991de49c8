"""A portal process for the crash tests: builds the real services from PROOFUP_* settings, then grants,
releases or runs the worker, and can SIGKILL itself at a named point (no fault hooks in production code).

    python -m tests.faults.harness open UPN [--kill-at POINT]
    python -m tests.faults.harness close UPN [--kill-at POINT]
    python -m tests.faults.harness cycle [--later SECONDS]      one worker cycle, clock moved forward
    python -m tests.faults.harness worker --interval SECONDS    the worker loop until killed

Settings come from the environment (samba_dc.env() plus PROOFUP_DATABASE_URL). Graph is left out
(graph=None): crash safety is about the directory and the records.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import timedelta

from app.adapters.budget import UnlimitedBudget
from app.adapters.directory import LdapDirectory
from app.adapters.lease import Lease
from app.config import load_settings
from app.domain.grants import utc_now
from app.services.sweeper import Sweeper
from app.wiring import build_grants, build_store
from app.worker import lease_ttl_for, run_worker
from tests.services.helpers import ADMIN

# Where a process may die: (directory operation, before or after it runs).
KILL_POINTS = {
    "open:before_add": ("add_member", "before"),  # intent written, LDAP untouched
    "open:after_add": ("add_member", "after"),  # member added, grant still pending
    "open:after_confirm": ("confirm_membership", "after"),  # confirmed on the DCs, not yet marked active
    "close:before_remove": ("remove_member", "before"),  # decided to close, LDAP untouched
    "close:after_remove": ("remove_member", "after"),  # member removed, grant still marked active
}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingDirectory:
    """Pass every call to the real directory; SIGKILL this process before or after one named operation."""

    def __init__(self, inner, operation: str, when: str):
        self.inner, self.operation, self.when = inner, operation, when

    def __getattr__(self, name: str):
        real = getattr(self.inner, name)
        if name != self.operation:
            return real

        def call(*args, **kwargs):
            if self.when == "before":
                die()
            result = real(*args, **kwargs)
            die()
            return result

        return call


def settings_from_env():
    # The web-only settings are irrelevant here; give harmless values so validation passes.
    return load_settings(secret_key="crash-harness-secret-key", authority="https://adfs.invalid/adfs",
                         client_id="crash-harness", replication_wait_seconds=2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["open", "close", "cycle", "worker"])
    parser.add_argument("upn", nargs="?")
    parser.add_argument("--kill-at", choices=sorted(KILL_POINTS))
    parser.add_argument("--later", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=30.0)
    args = parser.parse_args(argv)

    settings = settings_from_env()
    store = build_store(settings)
    directory = LdapDirectory.from_settings(settings)
    if args.kill_at:
        directory = KillingDirectory(directory, *KILL_POINTS[args.kill_at])
    clock = (lambda: utc_now() + timedelta(seconds=args.later)) if args.later else utc_now
    grants = build_grants(settings, store, directory)
    grants.clock = clock

    if args.command == "open":
        user = directory.find_user(args.upn)
        grant = grants.open_grant(upn=user.upn, user_dn=user.dn, entra_user_id="", actor=ADMIN,
                                  reason="crash test")
        print(grant.state.value, flush=True)
    elif args.command == "close":
        grant = grants.release_open_grant(args.upn, actor=ADMIN, reason="crash test")
        print(grant.state.value if grant else "none", flush=True)
    else:
        sweeper = Sweeper(store, directory, None, grants, UnlimitedBudget(),
                          bypass_group_dn=settings.bypass_group_dn, clock=clock)
        if args.command == "cycle":
            report = sweeper.run_cycle()
            print(report.summary(), flush=True)
            return 1 if report.errors else 0
        lease = Lease(store, ttl_seconds=lease_ttl_for(args.interval))
        print("worker ready", flush=True)
        run_worker(sweeper, lease, interval=args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
