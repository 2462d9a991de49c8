"""`proofup doctor`: check every outside part the portal needs, read-only, and say what is wrong in plain words."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.config import Settings, SettingsError, env_name

# Application permissions of the Graph app (docs/deploy-identity.md section 4). Each entry is satisfied by
# any one of its names (ReadWrite includes Read).
REQUIRED_ROLES = (("User.Read.All",), ("UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"))
# Without these the diagnosis cannot see Authenticator sign-ins (half-registered students look unregistered).
SIGN_IN_LOG_ROLES = (("AuditLog.Read.All",), ("Directory.Read.All",))


@dataclass(frozen=True)
class Check:
    """The result of one check: a name, whether it passed, what was found, and whether a setting is to blame."""

    name: str
    ok: bool
    detail: str
    misconfigured: bool = False
    warning: bool = False  # it passed, but something needs a look (printed as "warn")


class Caveat(Exception):
    """A check passed with a caveat worth a person's attention."""


def run_checks(settings: Settings) -> list[Check]:
    """Run every check; none changes anything (no file, no row, no membership)."""
    checks = [("database", lambda: database(settings)), ("sign-in", lambda: sign_in_authority(settings)),
              ("graph", lambda: graph(settings)), ("directory", lambda: directory(settings)),
              ("ttl", lambda: ttl(settings)), ("tap", lambda: temporary_access_pass(settings))]
    if settings.redis_url:
        checks.append(("redis", lambda: redis(settings)))
    if settings.smtp_host:
        checks.append(("mail", lambda: mail(settings)))
    return [_run(name, probe) for name, probe in checks]


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except Caveat as caveat:
        return Check(name, True, str(caveat), warning=True)
    except SettingsError as exc:
        return Check(name, False, str(exc), misconfigured=True)
    except Exception as exc:  # doctor reports every failure and carries on
        return Check(name, False, describe_failure(exc))


def describe_failure(exc: BaseException) -> str:
    """Say what went wrong in one line for an admin: the kind of error and its message."""
    return f"{type(exc).__name__}: {exc}"


def database(settings: Settings) -> str:
    """Read the schema revision without creating or upgrading anything."""
    from app.adapters.store import schema_is_known, schema_state

    current, head, exists = schema_state(settings.database_url)
    if not exists:
        folder = _nearest_existing(Path(settings.database_url.split("///", 1)[-1]).parent)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"no database yet, and {folder} is not writable: the portal could not create it")
        return "no database yet: the portal creates it at its first start"
    if current is None:
        return "empty: the portal creates the schema at its first start"
    if current == head:
        return f"schema up to date ({head})"
    if schema_is_known(current):
        return f"schema {current}: the portal upgrades it to {head} at its next start"
    raise RuntimeError(f"schema {current} is newer than this version of the portal knows ({head}): "
                       "upgrade the portal, or restore a matching backup")


def mail(settings: Settings) -> str:
    """Connect to the mail server, secure the connection and log in as a send would; send nothing."""
    from app.adapters.mailer import SmtpMailer
    from app.domain.mail import MailConfigError

    try:
        return SmtpMailer.from_settings(settings).probe()
    except MailConfigError as exc:  # login, certificate or STARTTLS: a PROOFUP_SMTP_* setting is to blame
        raise SettingsError(str(exc)) from None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def sign_in_authority(settings: Settings) -> str:
    """Fetch the authority's discovery document and its signing keys."""
    from app.wiring import build_identity

    return authority_discovery(build_identity(settings))


def authority_discovery(identity) -> str:
    """Fetch the discovery document and the signing keys through an Identity's session; say what answered."""
    found = identity.http_session.get(identity.discovery_url)
    found.raise_for_status()
    metadata = found.json()
    missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri") if not metadata.get(k)]
    if missing:
        raise ValueError(f"the discovery document at {identity.discovery_url} lacks " + ", ".join(missing))
    keys = identity.http_session.get(metadata["jwks_uri"])
    keys.raise_for_status()
    signing = [k for k in keys.json().get("keys", []) if k.get("kid") and k.get("use", "sig") == "sig"]
    if not signing:
        raise ValueError(f"{metadata['jwks_uri']} lists no signing key")
    return f"discovery and {len(signing)} signing key(s) at {metadata['issuer']}"


def graph(settings: Settings) -> str:
    """Get an app-only token, compare its roles with what the portal needs, and send one harmless $batch."""
    from app.adapters.budget import UnlimitedBudget
    from app.wiring import build_graph

    client = build_graph(settings, UnlimitedBudget())
    roles = graph_permissions(client)
    # A user that cannot exist: one $batch proves the token, the permissions and the route, and changes nothing.
    evidence = client.gather_evidence("proofup-doctor-probe@invalid.example")
    failed = {part: err for part, err in evidence.errors.items() if err.status != 404}
    if failed:
        raise next(iter(failed.values()))
    note = ""
    if any(not roles.intersection(names) for names in SIGN_IN_LOG_ROLES):
        note = "; without AuditLog.Read.All and Directory.Read.All a half-registered student looks unregistered"
    return f"app-only token with {', '.join(sorted(roles))}; $batch answered{note}"


# Reading the TAP policy and the domains' federation (docs/deploy-identity.md section 4).
TAP_POLICY_ROLES = ("Policy.Read.AuthenticationMethod", "Policy.ReadWrite.AuthenticationMethod")
FEDERATION_ROLES = ("Domain.Read.All", "Domain.ReadWrite.All")


def temporary_access_pass(settings: Settings) -> str:
    """Read the tenant's TAP policy and each federated domain's federatedIdpMfaBehavior; warn where a pass fails."""
    from app.adapters.budget import UnlimitedBudget
    from app.domain.tap import ENFORCE_MFA_BY_FEDERATED_IDP, Remedy
    from app.wiring import build_graph

    wanted = Remedy.TAP in settings.remedies
    client = build_graph(settings, UnlimitedBudget())
    roles = client.granted_roles()
    if roles.isdisjoint(TAP_POLICY_ROLES) or roles.isdisjoint(FEDERATION_ROLES):
        lacking = "Policy.Read.AuthenticationMethod and Domain.Read.All"
        if not wanted:
            return f"not read (PROOFUP_REMEDY={settings.remedy}; a TAP needs {lacking})"
        raise PermissionError(f"{env_name('remedy')}={settings.remedy}, but the Graph app lacks {lacking} "
                              "(docs/deploy-identity.md section 4)")
    if wanted and not roles.intersection(("UserAuthenticationMethod.ReadWrite.All",)):
        raise PermissionError("creating a pass needs UserAuthenticationMethod.ReadWrite.All")
    policy = client.tap_policy()
    if wanted and not policy.enabled:
        raise SettingsError(f"{env_name('remedy')}={settings.remedy}, but the tenant's Temporary Access Pass "
                            "policy is disabled (Entra admin centre: Authentication methods)")
    enforced = [d for d in client.federated_domains()
                if client.federated_idp_mfa_behavior(d) == ENFORCE_MFA_BY_FEDERATED_IDP]
    line = f"policy {policy.summary()}; offered: {'yes' if wanted else 'no'} (PROOFUP_REMEDY={settings.remedy})"
    if enforced:
        raise Caveat(f"{line}; {', '.join(enforced)} has federatedIdpMfaBehavior=enforceMfaByFederatedIdp: "
                       "Entra may still send a pass holder to AD FS for MFA, which AD FS cannot do with a pass")
    return line


def graph_permissions(client) -> frozenset[str]:
    """Get an app-only token (MSAL's cached one while valid) and return its roles; raise if the portal's are missing."""
    roles = client.granted_roles()
    lacking = [" or ".join(names) for names in REQUIRED_ROLES if not roles.intersection(names)]
    if lacking:
        raise PermissionError("the Graph app lacks the application permission(s) " + "; ".join(lacking)
                              + " (docs/deploy-identity.md section 4)")
    return roles


def uses_demo_directory(settings: Settings) -> bool:
    """Tell whether the portal runs on the demo's directory file instead of LDAP (build_directory's rule)."""
    return bool(settings.demo_directory and not settings.ldap_url)


def directory(settings: Settings) -> str:
    """Bind as the service account; it may write the bypass group's member and nothing else there."""
    from app.wiring import build_directory

    if not settings.bypass_group_dn:
        raise SettingsError(f"{env_name('bypass_group_dn')} is not set")
    if uses_demo_directory(settings):
        return f"the running demo's directory file {settings.demo_directory} (no LDAP, no access rights to check)"
    ldap = build_directory(settings)
    try:
        failed = [error for error in ldap.check_servers().values() if error is not None]  # a bind on every DC
        if failed:
            raise failed[0]
        writable = ldap.writable_attributes(settings.bypass_group_dn)  # raises if the group does not exist
        if "member" not in writable:
            raise PermissionError(f"the service account may not write member of {settings.bypass_group_dn}")
        more = sorted(writable - {"member"})
        if more:
            raise PermissionError(f"the service account may write more than member of the bypass group: "
                                  f"{', '.join(more[:8])}{' ...' if len(more) > 8 else ''} (docs/deploy-ad.md section 2)")
        if settings.required_group_dn and "member" in ldap.writable_attributes(settings.required_group_dn):
            raise PermissionError(f"the service account may write member of {settings.required_group_dn}: "
                                  "it could take students out of MFA for good")
        return "bind ok on " + ", ".join(ldap.servers()) + "; may write the bypass group's member and nothing else"
    finally:
        ldap.close()


def ttl(settings: Settings) -> str:
    """Say whether memberships can carry AD's time-to-live, and whether the setting matches."""
    from app.wiring import build_directory

    if uses_demo_directory(settings):
        return "off (the demo's directory has no time-to-live); the worker ends memberships"
    ldap = build_directory(settings)
    try:
        supported = ldap.ttl_supported()
    finally:
        ldap.close()
    if settings.ldap_use_ttl and not supported:
        raise SettingsError(f"{env_name('ldap_use_ttl')} is true, but the forest lacks the Privileged Access "
                            "Management feature: set it to false")
    if settings.ldap_use_ttl:
        return "on: AD ends each membership at its grant's end, even without the worker"
    return ("off (the forest supports it: PROOFUP_LDAP_USE_TTL=true would let AD end memberships by itself)"
            if supported else "off (the forest lacks Privileged Access Management); the worker ends memberships")


def redis(settings: Settings) -> str:
    """Ping the Redis that keeps the rate-limit counters, through the same library the rate limits use."""
    from limits.storage import storage_from_string

    if not storage_from_string(settings.redis_url).check():
        raise ConnectionError(f"Redis at {env_name('redis_url')} does not answer")
    return "answers"
