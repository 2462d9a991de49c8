"""Read and validate the portal's settings from PROOFUP_* environment variables."""
from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many

from app.domain.batches import ReminderSchedule
from app.domain.grants import GrantError, check_minutes
from app.domain.mail import valid_address
from app.domain.tap import REMEDY_SETTINGS

ADFS_SUFFIX = "/adfs"
ENV_FILE_VARIABLE = "PROOFUP_ENV_FILE"  # a file of PROOFUP_* lines, read under the process environment
DEMO_ENV_FILE = "demo.env"  # what `proofup demo` writes into its state directory for the admin commands
# Entra's shared authorities accept accounts of any tenant (or any Microsoft account): never for this portal.
ENTRA_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def authority_tenant(authority: str, tenant_id: str = "") -> str:
    """Return the tenant id an Entra authority pins: the GUID in its path, else tenant_id ("" if neither)."""
    segment = urlparse(authority).path.strip("/").split("/")[0].lower()
    return segment if _GUID.fullmatch(segment) else tenant_id.strip().lower()


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the portal needs to know about its environment, validated once at start-up."""

    secret_key: str
    authority: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    tenant_id: str = ""
    graph_authority: str = ""
    graph_client_id: str = ""
    graph_client_secret: str = field(default="", repr=False)
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str = ""
    ldap_url: str = ""
    ldap_bind_dn: str = ""
    ldap_password: str = field(default="", repr=False)
    ldap_base_dn: str = ""
    required_group_dn: str = ""
    bypass_group_dn: str = ""
    privileged_group_dns: tuple[str, ...] = ()
    scope_base_dn: str = ""
    grant_minutes: int = 30
    database_url: str = "sqlite:///instance/proofup.sqlite3"
    mysignins_url: str = "https://mysignins.microsoft.com/security-info"
    ldap_use_ttl: bool = False
    replication_wait_seconds: float = 20.0
    session_minutes: int = 20  # idle limit: a session nobody used for this long ends
    session_max_minutes: int = 60  # absolute limit: a student session ends this long after sign-in, however active
    max_unlocks: int = 3  # unlocks (of any remedy) per student in a rolling 7 days; then the service desk decides
    # Which way through the loop the portal offers (docs/tap.md): bypass (the AD group for a while), tap (a
    # Temporary Access Pass, where the tenant's policy allows it), or both (the pass first, the group otherwise).
    remedy: str = "bypass"
    check_interval_seconds: float = 5.0  # the shortest gap between the worker's methods checks of one grant
    worker_interval_seconds: float = 30.0
    confirm_interval_seconds: float = 5.0  # the worker's bulk method checks between full cycles
    # The service desk's console (docs/helpdesk.md): roles from these groups (nested membership counts),
    # staff sessions need MFA and end this long after sign-in; an optional application of its own at AD FS.
    helpdesk_group_dn: str = ""  # members act: look up, grant, release, extend, end sessions
    auditor_group_dn: str = ""  # members read the console and the audit trail, and change nothing
    staff_session_max_minutes: int = 30  # absolute limit of a staff session (the students' one if that is shorter)
    # Kiosks at orientation events (docs/kiosk.md): on a portal page an idle student is signed out everywhere
    # after this many seconds (a visible countdown and "I'm still here" first) ...
    kiosk_idle_seconds: int = 120
    # ... and a student away from the portal's pages (in My Sign-Ins, in the same window) after this long.
    kiosk_away_minutes: int = 10
    staff_client_id: str = ""  # empty: staff sign in through PROOFUP_CLIENT_ID too
    staff_client_secret: str = field(default="", repr=False)
    # The demo's embedded directory, kept in this file so admin commands in another process share it (demo only).
    demo_directory: str = ""
    redis_url: str = field(default="", repr=False)  # may carry the Redis password
    timezone: str = "UTC"  # IANA name; the pages show times (an unlock's end, sign-ins) in it
    proxy_hops: int = 0  # reverse proxies in front of the portal whose X-Forwarded-* headers are trusted
    # Where students reach the portal (scheme, host, optional path): every absolute URL is built from it and
    # requests for any other host are refused. Required to serve pages; plain http only on loopback (the demo).
    public_url: str = ""
    # Rate limits in Flask-Limiter's notation ("20 per minute", "10/hour;50/day"); app/web/limits.py applies them.
    # Sign-in (per client address): each visit stores a pending sign-in for 10 minutes; 20 a minute lets a
    # student retry freely but stops one address from filling the table (a NAT'ed lab may need more).
    rate_limit_sign_in: str = "20 per minute"
    # Unlock and cancel (each, per student): every one writes to AD; a real student needs two or three an hour.
    rate_limit_unlock: str = "10 per hour"
    # Status polling (per student): three tabs polling every 2 s make 90 a minute; 120 leaves room for
    # "check now" clicks while still stopping a runaway script.
    rate_limit_status: str = "120 per minute"
    # Diagnosis (per student): each one is a Graph $batch; a reload a second is far beyond any human need.
    rate_limit_diagnosis: str = "30 per minute"
    # Mail (app/adapters/mailer.py, docs/mail.md). No host: the portal sends no mail and queues none.
    smtp_host: str = ""
    smtp_port: int = 0  # 0: the usual port of the security mode (587 STARTTLS, 465 TLS, 25 none)
    smtp_security: str = "starttls"  # starttls | tls (implicit) | none (only to a server on this machine)
    smtp_username: str = ""  # empty: no login
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = ""  # the sender address, required with a host
    smtp_reply_to: str = ""  # where replies go, e.g. the desk's mailbox
    smtp_timeout_seconds: float = 30.0  # for connecting and for every answer of the server
    mail_language: str = "en"  # language of a mail when neither the directory nor the student's visit names one
    invite_days: int = 7  # how long an invite link works (docs/mail.md, "Invites")
    # /metrics answers only a scraper that shows this bearer token or comes from PROOFUP_METRICS_ALLOW's
    # networks (addresses or CIDRs, comma or space separated); with neither set it answers 404.
    metrics_token: str = field(default="", repr=False)
    metrics_allow: str = ""
    # /health/dependencies and the proofup_dependency_up gauges: each process checks the directory (every DC),
    # the sign-in authority, Graph's token, the mail server and Redis at most this often, in the background,
    # when a scrape asks; /readyz never waits for them.
    dependency_check_seconds: float = 15.0
    # Retention (docs/privacy.md): the worker deletes audit events and ended grants older than this.
    retain_audit_days: int = 365
    retain_grant_days: int = 365
    retain_mail_days: int = 90  # sent, bounced and failed mails in the outbox
    # Branding and the service desk: a page without the university's name looks like phishing, and "contact
    # the service desk" must say where and how. Shown in the header and footer and on every dead end.
    university_name: str = ""
    logo_file: str = ""  # an image file (svg, png, jpg, webp) shown beside the name in the header
    desk_text: str = ""  # who and where, e.g. "IT Service Desk, Library, ground floor"
    desk_phone: str = ""
    desk_url: str = ""
    desk_hours: str = ""  # free text, e.g. "Mon-Fri 8:00-18:00"
    # Weekly batches (docs/helpdesk.md): reminders go out this many days after a batch's invites ("2;5"), each
    # once, until the student is registered or the batch is closed.
    batch_reminder_days: tuple[str, ...] = ("2", "5")

    @property
    def authority_is_adfs(self) -> bool:
        """Tell whether the sign-in authority is AD FS (path ends in /adfs) rather than Entra."""
        return urlparse(self.authority).path.rstrip("/").lower().endswith(ADFS_SUFFIX)

    @property
    def remedies(self) -> tuple:
        """Return the remedies PROOFUP_REMEDY allows, the preferred first."""
        return REMEDY_SETTINGS[self.remedy]

    @property
    def reminder_days(self) -> tuple[int, ...]:
        """Return PROOFUP_BATCH_REMINDER_DAYS as whole days (checked at start-up)."""
        return tuple(int(day) if day.isdigit() else -1 for day in self.batch_reminder_days)

    @property
    def ldap_urls(self) -> tuple[str, ...]:
        """Split PROOFUP_LDAP_URL into the DCs AD FS uses (space or comma separated)."""
        return tuple(u for u in self.ldap_url.replace(",", " ").split() if u)

    def redacted(self) -> dict[str, object]:
        """Return the settings with every secret replaced, for `proofup doctor` and logs."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("(set)" if value else "(empty)") if f.name in SECRET_FIELDS else value
        return out


# The worker's and checks' durations: (smallest, largest, unit). Zero, negative and endless values would
# stop the worker or spin it; the grant length has its own rule (app.domain.grants.check_minutes) and the
# session limits theirs (below).
DURATION_BOUNDS = {
    "replication_wait_seconds": (0, 300, "seconds"),
    "check_interval_seconds": (0.5, 3600, "seconds"),
    "worker_interval_seconds": (0.5, 3600, "seconds"),
    "confirm_interval_seconds": (0.5, 3600, "seconds"),
    "invite_days": (1, 30, "days"),
    "dependency_check_seconds": (1, 3600, "seconds"),
}
BRANDING_TEXT_FIELDS = ("university_name", "desk_text", "desk_hours")
LOGO_SUFFIXES = (".svg", ".png", ".jpg", ".jpeg", ".webp")
LOGO_MAX_BYTES = 512 * 1024
PHONE_PATTERN = re.compile(r"^\+?[0-9][0-9 ()/.-]{3,28}[0-9]$")
RATE_LIMIT_FIELDS = ("rate_limit_sign_in", "rate_limit_unlock", "rate_limit_status", "rate_limit_diagnosis")
MAX_SESSION_MINUTES = 24 * 60  # a portal session never outlives a working day
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")
SECRET_FIELDS = frozenset({"secret_key", "client_secret", "graph_client_secret", "ldap_password", "redis_url",
                           "smtp_password", "metrics_token", "staff_client_secret"})
SMTP_SECURITY_MODES = ("starttls", "tls", "none")
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LANGUAGE = "en"
REQUIRED_FIELDS = ("secret_key", "authority", "client_id")
_PREFIX = "PROOFUP_"


def is_loopback(host: str) -> bool:
    """Tell whether a host name or address stays on this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def has_catalogue(language: str) -> bool:
    """Tell whether the portal speaks a language (English, or a compiled catalogue in app/translations)."""
    return language == DEFAULT_LANGUAGE or (language.isalpha() and (TRANSLATIONS_DIR / language).is_dir())


def language_of(tag: str | None) -> str:
    """Return the catalogue a language tag (de-DE, de_AT, EN) points to, or "" if the portal lacks it."""
    language = re.split(r"[-_]", (tag or "").strip().lower(), maxsplit=1)[0]
    return language if language and has_catalogue(language) else ""


def env_name(field_name: str) -> str:
    """Return the environment variable that sets a field."""
    return _PREFIX + field_name.upper()


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse a list of addresses or networks separated by commas or spaces; ValueError if one is malformed."""
    return tuple(ipaddress.ip_network(part, strict=False) for part in value.replace(",", " ").split())


def _convert(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{env_name(name)} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{env_name(name)} must be a whole number, not {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{env_name(name)} must be a number, not {raw!r}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(";") if part.strip())
    return raw.strip()


def read_env_file(path: str) -> dict[str, str]:
    """Read NAME=value lines (shell quoting allowed; blank lines and # comments skipped) into a mapping."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise SettingsError(f"{ENV_FILE_VARIABLE} names no readable file: {path!r} ({exc.strerror})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = None
        if not equals or not name.strip().isidentifier() or words is None or len(words) > 1:
            raise SettingsError(f"{path}, line {number}: expected NAME=value")
        values[name.strip()] = words[0] if words else ""
    return values


def env_file_text(settings: Settings) -> str:
    """Return the settings that differ from the defaults as NAME=value lines, for read_env_file."""
    lines = []
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, tuple):
            value = ";".join(value)
        lines.append(f"{env_name(f.name)}={shlex.quote(str(value))}")
    return "\n".join(lines) + "\n"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment (over PROOFUP_ENV_FILE's lines, if it names a file) plus overrides."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_FILE_VARIABLE):
        environ = {**read_env_file(environ[ENV_FILE_VARIABLE]), **environ}
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is not None:
            default = "" if f.default is MISSING else f.default
            values[f.name] = _convert(f.name, raw, default)
    values.update(overrides)
    missing = [env_name(n) for n in REQUIRED_FIELDS if not values.get(n)]
    if missing:
        raise SettingsError("missing required setting(s): " + ", ".join(missing))
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _validate_public_url(value: str) -> None:
    """PROOFUP_PUBLIC_URL: https://host[:port][/path], http only for a loopback host."""
    parts = urlparse(value)
    try:
        parts.port
    except ValueError:
        raise SettingsError(f"{env_name('public_url')} has a bad port: {value!r}") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or parts.username or parts.password or parts.params):
        raise SettingsError(f"{env_name('public_url')} must be the portal's address, scheme, host and optional "
                            f"path, like https://proofup.uni.example, not {value!r}")
    if parts.scheme == "http" and not (parts.hostname in LOOPBACK_HOSTS or parts.hostname.startswith("127.")):
        raise SettingsError(f"{env_name('public_url')} must be an https URL (plain http only on loopback, for "
                            f"the demo), not {value!r}")


def require_public_url(settings: Settings) -> None:
    """Raise SettingsError unless PROOFUP_PUBLIC_URL is set (every process that serves pages needs it)."""
    if not settings.public_url:
        raise SettingsError(f"{env_name('public_url')} is required to serve pages: the address students use, "
                            "like https://proofup.uni.example (the sign-in redirect URI is built from it)")


def _validate_entra_authority(settings: Settings) -> None:
    """An Entra sign-in authority must name one tenant, the portal's own, so its tokens can be pinned to it."""
    segment = urlparse(settings.authority).path.strip("/").split("/")[0].lower()
    if segment in ENTRA_SHARED_TENANTS:
        raise SettingsError(f"{env_name('authority')} must name your tenant "
                            f"(https://login.microsoftonline.com/<tenant id>), not /{segment}: that would let "
                            "accounts of any tenant sign in")
    tenant = settings.tenant_id.strip().lower()
    if tenant and not _GUID.fullmatch(tenant):
        raise SettingsError(f"{env_name('tenant_id')} must be the tenant's id (a GUID), not {settings.tenant_id!r}")
    if _GUID.fullmatch(segment) and tenant and segment != tenant:
        raise SettingsError(f"{env_name('authority')} names tenant {segment}, but {env_name('tenant_id')} "
                            f"is {tenant}")
    if not authority_tenant(settings.authority, tenant):
        raise SettingsError(f"{env_name('tenant_id')} is required when {env_name('authority')} names the tenant "
                            "by domain: sign-ins are pinned to that tenant id")


def validate(settings: Settings) -> None:
    """Raise SettingsError naming the first setting that cannot work."""
    if len(settings.secret_key) < 16:
        raise SettingsError(f"{env_name('secret_key')} must be at least 16 characters")
    for name in ("authority", "graph_authority", "graph_url", "mysignins_url", "desk_url"):
        value = getattr(settings, name)
        if value and urlparse(value).scheme != "https":
            raise SettingsError(f"{env_name(name)} must be an https URL, not {value!r}")
    if not settings.authority_is_adfs and not urlparse(settings.authority).path.strip("/"):
        raise SettingsError(
            f"{env_name('authority')} needs a path: https://adfs.example/adfs or "
            "https://login.microsoftonline.com/<tenant>"
        )
    if not settings.authority_is_adfs:
        _validate_entra_authority(settings)
    for url in settings.ldap_urls:
        if urlparse(url).scheme not in ("ldap", "ldaps"):
            raise SettingsError(f"{env_name('ldap_url')} entries must be ldap:// or ldaps:// URLs, not {url!r}")
    try:
        check_minutes(settings.grant_minutes)
    except GrantError as exc:
        raise SettingsError(f"{env_name('grant_minutes')}: {exc}") from None
    if not 1 <= settings.session_minutes <= MAX_SESSION_MINUTES:
        raise SettingsError(f"{env_name('session_minutes')} must be between 1 and {MAX_SESSION_MINUTES} minutes")
    if not settings.session_minutes <= settings.session_max_minutes <= MAX_SESSION_MINUTES:
        raise SettingsError(f"{env_name('session_max_minutes')} must be between {env_name('session_minutes')} "
                            f"({settings.session_minutes}) and {MAX_SESSION_MINUTES} minutes")
    if not 1 <= settings.staff_session_max_minutes <= MAX_SESSION_MINUTES:
        raise SettingsError(f"{env_name('staff_session_max_minutes')} must be between 1 and {MAX_SESSION_MINUTES}")
    if settings.remedy not in REMEDY_SETTINGS:
        raise SettingsError(f"{env_name('remedy')} must be bypass, tap or both, not {settings.remedy!r}")
    if not 5 <= settings.kiosk_idle_seconds <= 1800:
        raise SettingsError(f"{env_name('kiosk_idle_seconds')} must be between 5 and 1800 seconds")
    if not 1 <= settings.kiosk_away_minutes <= 60:
        raise SettingsError(f"{env_name('kiosk_away_minutes')} must be between 1 and 60 minutes")
    if not 1 <= settings.max_unlocks <= 100:
        raise SettingsError(f"{env_name('max_unlocks')} must be between 1 and 100")
    for name, (low, high, unit) in DURATION_BOUNDS.items():
        value = getattr(settings, name)
        if not (math.isfinite(value) and low <= value <= high):
            raise SettingsError(f"{env_name(name)} must be between {low:g} and {high:g} {unit}, not {value:g}")
    if settings.public_url:
        _validate_public_url(settings.public_url)
    if not 0 <= settings.proxy_hops <= 5:
        raise SettingsError(f"{env_name('proxy_hops')} must be between 0 and 5")
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{env_name('timezone')} must be an IANA time zone like Europe/Berlin, "
                            f"not {settings.timezone!r}") from None
    for name in RATE_LIMIT_FIELDS:
        value = getattr(settings, name)
        try:
            parse_many(value)
        except ValueError:
            raise SettingsError(f"{env_name(name)} must be a rate limit like '20 per minute' or '10/hour;50/day', "
                                f"not {value!r}") from None
    if settings.redis_url and urlparse(settings.redis_url).scheme not in REDIS_SCHEMES:
        raise SettingsError(f"{env_name('redis_url')} must be a redis:// or rediss:// URL")
    for name in ("retain_audit_days", "retain_grant_days", "retain_mail_days"):
        if not 1 <= getattr(settings, name) <= 3650:
            raise SettingsError(f"{env_name(name)} must be between 1 and 3650 days")
    if settings.metrics_token and len(settings.metrics_token) < 16:
        raise SettingsError(f"{env_name('metrics_token')} must be at least 16 characters")
    try:
        parse_networks(settings.metrics_allow)
    except ValueError:
        raise SettingsError(f"{env_name('metrics_allow')} must list addresses or networks like 10.0.0.0/8, "
                            f"not {settings.metrics_allow!r}") from None
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        raise SettingsError(f"{env_name('ca_bundle')} names no readable file: {settings.ca_bundle!r}")
    if settings.demo_directory and settings.ldap_urls:
        raise SettingsError(f"set {env_name('ldap_url')} or {env_name('demo_directory')}, not both")
    if settings.demo_directory and not os.path.isfile(settings.demo_directory):
        raise SettingsError(f"{env_name('demo_directory')} names no file: {settings.demo_directory!r} "
                            "(is the demo running?)")
    validate_branding(settings)
    if settings.ldap_urls:
        for name in ("ldap_bind_dn", "ldap_password", "ldap_base_dn", "required_group_dn", "bypass_group_dn"):
            if not getattr(settings, name):
                raise SettingsError(f"{env_name(name)} is required when {env_name('ldap_url')} is set")
    _validate_mail(settings)
    _validate_reminders(settings)


def _validate_reminders(settings: Settings) -> None:
    try:
        ReminderSchedule(settings.reminder_days)
    except ValueError:
        raise SettingsError(f"{env_name('batch_reminder_days')} must be whole days, each later than the one before, "
                            f"separated by ';' (e.g. 2;5), not {';'.join(settings.batch_reminder_days)!r}") from None


def _validate_mail(settings: Settings) -> None:
    if not has_catalogue(settings.mail_language):
        raise SettingsError(f"{env_name('mail_language')} must be a language the portal speaks (en, de), "
                            f"not {settings.mail_language!r}")
    if not settings.smtp_host:
        return
    if settings.smtp_security not in SMTP_SECURITY_MODES:
        raise SettingsError(f"{env_name('smtp_security')} must be starttls, tls or none, not {settings.smtp_security!r}")
    if settings.smtp_security == "none" and not is_loopback(settings.smtp_host):
        raise SettingsError(f"{env_name('smtp_security')}=none (no TLS) is allowed only for a server on this machine "
                            f"(localhost, 127.0.0.1, ::1), not {settings.smtp_host!r}")
    if not 0 <= settings.smtp_port <= 65535:
        raise SettingsError(f"{env_name('smtp_port')} must be a port number (1 to 65535), or 0 for the usual one")
    if not settings.smtp_timeout_seconds > 0:
        raise SettingsError(f"{env_name('smtp_timeout_seconds')} must be a positive number of seconds")
    if not valid_address(settings.smtp_from):
        raise SettingsError(f"{env_name('smtp_from')} must be one mail address like portal@uni.example "
                            f"when {env_name('smtp_host')} is set")
    if settings.smtp_reply_to and not valid_address(settings.smtp_reply_to):
        raise SettingsError(f"{env_name('smtp_reply_to')} must be one mail address, not {settings.smtp_reply_to!r}")
    if bool(settings.smtp_username) != bool(settings.smtp_password):
        raise SettingsError(f"{env_name('smtp_username')} and {env_name('smtp_password')} go together")
    if settings.smtp_username and settings.smtp_security == "none":
        raise SettingsError(f"{env_name('smtp_username')} needs TLS: a password is never sent in the clear")


def validate_branding(settings: Settings) -> None:
    """Check the university's name, logo and service-desk contact: short printable text, a real image, a phone."""
    for name in BRANDING_TEXT_FIELDS:
        value = getattr(settings, name)
        if len(value) > 120 or not value.isprintable():
            raise SettingsError(f"{env_name(name)} must be one line of at most 120 characters")
    if settings.desk_phone and not PHONE_PATTERN.match(settings.desk_phone):
        raise SettingsError(f"{env_name('desk_phone')} must be a phone number like +49 30 1234 5678, "
                            f"not {settings.desk_phone!r}")
    if settings.logo_file:
        logo = settings.logo_file
        if not logo.lower().endswith(LOGO_SUFFIXES):
            raise SettingsError(f"{env_name('logo_file')} must be an image ending in "
                                f"{', '.join(LOGO_SUFFIXES)}, not {logo!r}")
        if not os.path.isfile(logo):
            raise SettingsError(f"{env_name('logo_file')} names no readable file: {logo!r}")
        if os.path.getsize(logo) > LOGO_MAX_BYTES:
            raise SettingsError(f"{env_name('logo_file')} must be smaller than {LOGO_MAX_BYTES // 1024} KB")
