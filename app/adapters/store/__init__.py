"""The database, by concern: one module per aggregate, one Store that offers them all, and units of work.

- base.py          engine, transactions, schema base, Alembic upgrades (SQLite file or PostgreSQL)
- grants.py        grants (one open grant per person, compare-and-set state changes)
- audit.py         the audit trail (actor kind and id, target, reason; secrets redacted)
- signin_flows.py  pending sign-in flows (single use)
- leases.py        named expiring leases (one worker at a time)
- budget.py        the Graph request budget's rows
- bypass_checks.py the worker's last look at the bypass group (counts for /metrics)
- outbox.py        mail queued with what caused it, claimed by compare-and-set (OutboxStore)
- invites.py       invite links under the hash of their token, their mail, their derived state (InviteStore)
- sessions.py      portal sessions behind a random token (SessionStore)
- scans.py         the desk's scans of who will loop: progress while running, the report after (ScanStore)
- kiosks.py        enrolled kiosk devices behind the hash of their credential (KioskStore)
- batches.py       weekly batches and their rows: checks, invites, reminders (BatchStore)
- unit_of_work.py  one transaction for a change and its audit event

Each verb of the Store runs in a transaction of its own; `Store.unit_of_work()` joins several (a grant's
state change and the audit event that records it). Nothing ORM leaves the package: callers get frozen
snapshots (GrantView, AuditEvent, BudgetState). A new table belongs to one module here and migrates
through app/migrations on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from app.adapters.store.audit import REDACTED, AuditEvent, AuditLog, AuditQuery, AuditStore, redact
from app.adapters.store.base import (MIGRATIONS_DIR, Base, Database, UTCDateTime, schema_head, schema_is_known,
                                     schema_state)
from app.adapters.store.batches import BatchStore
from app.adapters.store.budget import BudgetState, BudgetStore
from app.adapters.store.bypass_checks import BypassCheck, BypassCheckStore
from app.adapters.store.grants import Grants, GrantStore
from app.adapters.store.invites import InviteFilter, Invites, InviteStore
from app.adapters.store.kiosks import KioskStore
from app.adapters.store.leases import LeaseStore
from app.adapters.store.outbox import OutboxStore
from app.adapters.store.scans import ScanStore, ScanView
from app.adapters.store.sessions import SessionStore
from app.adapters.store.signin_flows import SignInFlowStore
from app.adapters.store.unit_of_work import UnitOfWork, UnitOfWorkStore


class Store(GrantStore, AuditStore, SignInFlowStore, LeaseStore, BudgetStore, BypassCheckStore, UnitOfWorkStore):
    """The portal's database with the verbs of every store module (each module keeps its own tables)."""


__all__ = ["MIGRATIONS_DIR", "REDACTED", "AuditEvent", "AuditLog", "AuditQuery", "Base", "BatchStore", "BudgetState",
           "BypassCheck", "Database", "Grants", "InviteFilter", "InviteStore", "Invites", "KioskStore",
           "OutboxStore", "ScanStore", "ScanView", "SessionStore", "Store", "UTCDateTime", "UnitOfWork", "redact",
           "schema_head", "schema_is_known", "schema_state"]
