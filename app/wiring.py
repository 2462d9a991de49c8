"""Build the adapters and services from Settings; tests and the demo inject their own parts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.config import Settings, SettingsError, env_name
from app.domain.sessions import Lifetime, SessionKind, SessionPolicy
from app.domain.state import Policy
from app import metrics
from app.services.events import Events, subscribe_audit_feed
from app.services.bulk_diagnosis import BulkDiagnosisService
from app.services.scan import ScanJobs, ScanService
from app.services.onboarding import OnboardingService
from app.services.sessions import SessionService


@dataclass
class Services:
    """Everything the web app and the CLI call; views reach adapters only through these."""

    settings: Settings
    directory: Any
    graph: Any
    identity: Any
    store: Any
    grants: Any
    onboarding: OnboardingService
    budget: Any
    sessions: SessionService
    events: Events  # subscribe here (metrics, mail); the audit feed already listens
    outbox: Any = None  # the mail outbox (OutboxStore); queueing needs PROOFUP_SMTP_HOST, reading does not
    staff_identity: Any = None  # the staff sign-in's application (PROOFUP_STAFF_CLIENT_ID), else `identity`
    helpdesk: Any = None  # the service desk's console (HelpdeskService)
    invites: Any = None  # invite links (InviteService): the desk's, a batch's, a scan's
    bulk_diagnosis: Any = None  # many students at once (BulkDiagnosisService): batches and the scan
    dependencies: Any = None  # the dependency checks monitoring reads (app.health.DependencyMonitor)
    scan: Any = None  # who will loop before MFA is switched on (ScanService)
    scans: Any = None  # the desk's background scans and their reports (ScanJobs)
    batches: Any = None  # the desk's weekly batches (BatchService)
    kiosks: Any = None  # enrolled kiosk devices (KioskService)

    def close(self) -> None:
        """Release connections held by the adapters."""
        for part in (self.directory, self.graph, self.store):
            close = getattr(part, "close", None) or getattr(part, "dispose", None)
            if close:
                close()


def policy_from(settings: Settings) -> Policy:
    """Return the eligibility policy the settings describe."""
    return Policy(
        required_group_dn=settings.required_group_dn,
        bypass_group_dn=settings.bypass_group_dn,
        privileged_group_dns=settings.privileged_group_dns,
        scope_base_dn=settings.scope_base_dn,
        max_unlocks=settings.max_unlocks,
    )


def session_policy_from(settings: Settings) -> SessionPolicy:
    """Return the lifetimes of the session kinds this portal offers (kiosks add theirs here)."""
    student = Lifetime(idle=timedelta(minutes=settings.session_minutes),
                       absolute=timedelta(minutes=settings.session_max_minutes))
    # Staff sessions are shorter: whichever of the two absolute limits ends first, and never idle longer.
    staff_absolute = min(timedelta(minutes=settings.staff_session_max_minutes), student.absolute)
    staff = Lifetime(idle=min(student.idle, staff_absolute), absolute=staff_absolute)
    # A kiosk session ends when its student is idle on a portal page (the page's countdown) or away in My Sign-Ins
    # for longer than kiosk_away_minutes; the server enforces the longer of the two.
    kiosk_idle = max(timedelta(seconds=settings.kiosk_idle_seconds), timedelta(minutes=settings.kiosk_away_minutes))
    kiosk = Lifetime(idle=min(kiosk_idle, student.absolute), absolute=student.absolute)
    return SessionPolicy({SessionKind.STUDENT: student, SessionKind.STAFF: staff, SessionKind.KIOSK: kiosk})


def build_sessions(settings: Settings, store, clock=None) -> SessionService:
    """Return the portal's session service over the store."""
    from app.adapters.store import SessionStore

    return SessionService(SessionStore(store), store, session_policy_from(settings), clock=clock)


def build_kiosks(store, clock=None):
    """Return the kiosk devices' service over the store."""
    from app.adapters.store.kiosks import KioskStore
    from app.services.kiosks import KioskService

    return KioskService(KioskStore(store), store, clock=clock)


def _require(settings: Settings, *names: str, what: str) -> None:
    missing = [env_name(n) for n in names if not getattr(settings, n)]
    if missing:
        raise SettingsError(f"{what} needs " + ", ".join(missing))


def build_directory(settings: Settings):
    """Connect to the DCs in PROOFUP_LDAP_URL, or open the running demo's directory (PROOFUP_DEMO_DIRECTORY)."""
    if settings.demo_directory and not settings.ldap_url:
        from app.adapters.directory_embedded import EmbeddedDirectory

        return EmbeddedDirectory.open(settings.demo_directory)
    _require(settings, "ldap_url", what="the directory")
    from app.adapters.directory import LdapDirectory

    directory = LdapDirectory.from_settings(settings)
    directory.observe_operations(metrics.count_ldap_operation)
    return directory


def build_store(settings: Settings, *, upgrade_in_child: bool = False):
    """Open the database and bring its schema up to date (in a forked child for a long-running process)."""
    from app.adapters.store import Store

    store = Store(settings.database_url)
    if upgrade_in_child:
        store.upgrade_in_child()  # Alembic never enters `proofup serve` or `proofup worker` (docs/benchmarks.md)
    else:
        store.upgrade()
    return store


def build_budget(settings: Settings, store):
    """Return the Graph request budget shared by every instance (kept in the database)."""
    from app.adapters.budget import DatabaseBudget

    return metrics.MeteredBudget(DatabaseBudget(store))


def build_graph(settings: Settings, budget):
    """Return the Graph client (app-only token)."""
    _require(settings, "graph_authority", "graph_client_id", "graph_client_secret", what="Microsoft Graph")
    from app.adapters.graph import GraphClient

    return GraphClient.from_settings(settings, budget=budget)


def build_identity(settings: Settings):
    """Return the sign-in adapter for the configured authority."""
    from app.adapters.identity import Identity

    return Identity.from_settings(settings)


def build_staff_identity(settings: Settings, identity):
    """Return the application staff sign in with: its own (an AD FS policy that requires MFA) or the portal's."""
    if not settings.staff_client_id:
        return identity
    from app.adapters.identity import Identity

    return Identity(settings.authority, settings.staff_client_id, settings.staff_client_secret,
                    tenant_id=settings.tenant_id, ca_file=settings.ca_bundle or None)


def build_helpdesk(settings: Settings, *, store, directory, onboarding, grants, sessions, clock=None):
    """Return the service desk's console over the same policy, grants and sessions as the students'."""
    from app.domain.staff import StaffGroups
    from app.services.helpdesk import HelpdeskService

    return HelpdeskService(store=store, directory=directory, onboarding=onboarding, grants=grants,
                           sessions=sessions, groups=StaffGroups(settings.helpdesk_group_dn, settings.auditor_group_dn),
                           bypass_group_dn=settings.bypass_group_dn, grant_minutes=settings.grant_minutes,
                           reference_key=settings.secret_key, clock=clock)


def build_batches(settings: Settings, *, store, onboarding, invites, bulk, clock=None):
    """Return the weekly batches over the batch tables, the bulk diagnosis and the invites."""
    from app.adapters.store import BatchStore
    from app.domain.batches import ReminderSchedule
    from app.services.batches import BatchService

    return BatchService(batches=BatchStore(store), bulk=bulk, invites=invites,
                        onboarding=onboarding, store=store,
                        schedule=ReminderSchedule(settings.reminder_days), clock=clock)


def build_grants(settings: Settings, store, directory, clock=None, events: Events | None = None, graph=None):
    """Return the grant lifecycle service (Graph for Temporary Access Passes)."""
    from app.services.grants import GrantService

    _require(settings, "bypass_group_dn", what="unlocking")
    extra = {"clock": clock} if clock is not None else {}
    return GrantService(store, directory, bypass_group_dn=settings.bypass_group_dn,
                        grant_minutes=settings.grant_minutes, use_ttl=settings.ldap_use_ttl,
                        replication_wait_seconds=settings.replication_wait_seconds, events=events, graph=graph,
                        **extra)


def build_outbox(settings: Settings, store):
    """Return the outbox table's verbs (Message-IDs in the sender's domain)."""
    from app.adapters.store import OutboxStore

    return OutboxStore(store, sender=settings.smtp_from)


def _request_locale() -> str:
    """Return the language of the page being served, if a request caused the change; "" in the worker."""
    from flask import has_request_context
    from flask_babel import get_locale

    return str(get_locale() or "") if has_request_context() else ""


def subscribe_notices(settings: Settings, events: Events, outbox):
    """Mail the security notices (unlocked, new method) when a mail server is configured; return them or None."""
    if not settings.smtp_host:
        return None
    from app.services.notices import SecurityNotices, desk_line

    notices = SecurityNotices(outbox, desk=desk_line(settings), university=settings.university_name,
                              locale=_request_locale)
    notices.subscribe(events)
    return notices


def build_invites(settings: Settings, store, outbox, directory=None, clock=None, events: Events | None = None):
    """Return the invite links' use cases (mail needs PROOFUP_SMTP_HOST and the portal's public address)."""
    from app.adapters.sealing import Sealer
    from app.adapters.store import InviteStore
    from app.services.invites import SEAL_LABEL, InviteService, InviteSettings
    from app.services.notices import desk_line

    config = InviteSettings(days=settings.invite_days, desk=desk_line(settings), university=settings.university_name,
                            public_url=settings.public_url, mail_enabled=bool(settings.smtp_host))
    return InviteService(store, InviteStore(store), outbox, Sealer(settings.secret_key, SEAL_LABEL), config,
                         directory=directory, clock=clock, locale=_request_locale, events=events)


def build_mail_sender(services: Services):
    """Return the worker's mail pass, or None when no mail server is configured (PROOFUP_SMTP_HOST)."""
    settings = services.settings
    if not settings.smtp_host:
        return None
    from app.adapters.mail_templates import MailTemplates
    from app.adapters.mailer import SmtpMailer
    from app.services.invites import InviteLinks
    from app.services.outbox import OutboxSender

    invites = services.invites
    links = InviteLinks(invites.invites, invites.sealer, invites.settings.public_url)
    return OutboxSender(services.outbox, SmtpMailer.from_settings(settings), MailTemplates(timezone=settings.timezone),
                        services.directory, language=settings.mail_language, expanders=(links,),
                        events=services.events)


def build_worker(services: Services, clock=None):
    """Return the sweeper and the lease the background worker runs with (tests may give the grants' clock)."""
    from app.adapters.lease import Lease
    from app.domain.grants import utc_now
    from app.services.sweeper import Sweeper
    from app.worker import lease_ttl_for

    settings = services.settings
    # The worker does every methods check (a poll only reads the database): its confirm passes check a grant
    # at most once per confirm interval and never more often than PROOFUP_CHECK_INTERVAL_SECONDS, so a student
    # is released within about one confirm interval of Entra showing the method, tab open or closed.
    sweeper = Sweeper(services.store, services.directory, services.graph, services.grants, services.budget,
                      bypass_group_dn=settings.bypass_group_dn, clock=clock or utc_now,
                      check_every_seconds=max(settings.check_interval_seconds, settings.confirm_interval_seconds),
                      pass_every_seconds=settings.confirm_interval_seconds, events=services.events)
    return sweeper, Lease(services.store, ttl_seconds=lease_ttl_for(settings.worker_interval_seconds))


def build_retention(services: Services):
    """Return what purges old records after each of the worker's full cycles."""
    from app.adapters.store import BatchStore, SessionStore
    from app.adapters.store.kiosks import KioskStore
    from app.services.retention import Retention, RetentionPolicy

    settings = services.settings
    policy = RetentionPolicy(audit_days=settings.retain_audit_days, grant_days=settings.retain_grant_days,
                             mail_days=settings.retain_mail_days)
    return Retention(services.store, policy, sessions=SessionStore(services.store), outbox=services.outbox,
                     invites=services.invites.invites if services.invites is not None else None,
                     scans=services.scans.scans if services.scans is not None else None,
                     batches=BatchStore(services.store), kiosks=KioskStore(services.store))


def build_dependency_monitor(settings: Settings, clock=None):
    """Return the background checks of the directory, the authority, Graph, mail and Redis (app/health.py)."""
    from app.domain.grants import utc_now
    from app.health import DependencyMonitor, dependency_probes

    return DependencyMonitor(lambda: dependency_probes(settings), settings.dependency_check_seconds,
                             clock=clock or utc_now)


def warm_up_graph(services: Services) -> None:
    """Import what the first Graph call imports (typed models, network stack: 0.8 s, 10 MiB) now, not in a worker."""
    warm_up = getattr(services.graph, "warm_up", None)
    if warm_up is not None:
        warm_up()


def build_services(settings: Settings, *, directory=None, graph=None, identity=None, store=None, grants=None,
                   budget=None, clock=None, upgrade_in_child: bool = False) -> Services:
    """Assemble the services; every part given is used as is, every other part is built from settings."""
    store = store if store is not None else build_store(settings, upgrade_in_child=upgrade_in_child)
    directory = directory if directory is not None else build_directory(settings)
    budget = budget if budget is not None else build_budget(settings, store)
    graph = graph if graph is not None else build_graph(settings, budget)
    identity = identity if identity is not None else build_identity(settings)
    events = getattr(grants, "events", None) or Events()  # an injected grant service brings its own
    subscribe_audit_feed(events, store)
    metrics.subscribe(events)
    grants = grants if grants is not None else build_grants(settings, store, directory, clock, events, graph)
    if getattr(grants, "graph", False) is None:
        grants.graph = graph  # an injected grant service passes Temporary Access Passes through the same Graph
    outbox = build_outbox(settings, store)
    subscribe_notices(settings, events, outbox)
    onboarding = OnboardingService(
        directory=directory, graph=graph, store=store, grants=grants, policy=policy_from(settings),
        grant_minutes=settings.grant_minutes, clock=clock, events=events, remedies=settings.remedies,
    )
    sessions = build_sessions(settings, store, clock)
    helpdesk = build_helpdesk(settings, store=store, directory=directory, onboarding=onboarding, grants=grants,
                              sessions=sessions, clock=clock)
    bulk_diagnosis = BulkDiagnosisService(directory=directory, graph=graph, store=store,
                                          policy=policy_from(settings), clock=clock)
    invites = build_invites(settings, store, outbox, directory, clock, events)
    scan = ScanService(directory=directory, bulk=bulk_diagnosis, store=store, invites=invites)
    from app.adapters.store import ScanStore

    scans = ScanJobs(scan, ScanStore(store), clock=clock)
    return Services(settings=settings, dependencies=build_dependency_monitor(settings, clock),
                    directory=directory, graph=graph, identity=identity, store=store,
                    grants=grants, onboarding=onboarding, budget=budget, events=events, sessions=sessions,
                    outbox=outbox, staff_identity=build_staff_identity(settings, identity),
                    helpdesk=helpdesk, invites=invites,
                    bulk_diagnosis=bulk_diagnosis, scan=scan, scans=scans,
                    batches=build_batches(settings, store=store, onboarding=onboarding, invites=invites,
                                          bulk=bulk_diagnosis, clock=clock),
                    kiosks=build_kiosks(store, clock))
