"""Load the seed file that describes a demo or test university: directory layout, tenant, students."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEMO_SEED = Path(__file__).parent / "data" / "demo-seed.yaml"

STAFF_ROLES = frozenset({"helpdesk", "auditor"})
USER_STATES = frozenset(
    {"unregistered", "half_registered", "registered", "not_required", "privileged", "disabled"}
)
# Kinds a seeded user may have; futureMethod is a type Graph does not list (the portal must not unlock on it).
METHOD_KINDS = frozenset(
    {"microsoftAuthenticator", "phone", "fido2", "softwareOath", "windowsHelloForBusiness", "email",
     "hardwareOath", "platformCredential", "externalAuthentication", "qrCodePin", "futureMethod"}
)


class SeedError(ValueError):
    """The seed file is malformed; the message names the entry."""


@dataclass(frozen=True)
class SeedUser:
    """One person of the seeded university."""

    upn: str
    password: str = field(repr=False)
    display_name: str
    object_id: str
    state: str
    methods: tuple[str, ...] = ()
    nested: bool = False  # MFA-required through a nested group, not directly
    in_entra: bool = True
    in_directory: bool = True
    mail: str = ""  # AD's `mail` attribute; the seed file's default is the UPN (mail: "" for none)
    preferred_language: str = ""  # AD's `preferredLanguage`, e.g. de-DE
    staff_role: str = ""  # "helpdesk" or "auditor": a service-desk account, not a student
    # The demo's second factor for a staff account: the one-time code the simulated AD FS asks for.
    staff_mfa: str = field(default="", repr=False)

    @property
    def sam_account_name(self) -> str:
        return self.upn.split("@", 1)[0][:20]

    @property
    def enabled(self) -> bool:
        return self.state != "disabled"

    @property
    def privileged(self) -> bool:
        return self.state == "privileged"

    @property
    def mfa_required(self) -> bool:
        return self.state in ("unregistered", "half_registered", "registered", "privileged", "disabled")


@dataclass(frozen=True)
class Seed:
    """A whole seeded university."""

    base_dn: str
    upn_suffix: str
    tenant_id: str
    tenant_domain: str
    users_ou: str
    groups_ou: str
    service_ou: str
    required_group: str
    nested_required_group: str
    bypass_group: str
    privileged_group: str
    users: tuple[SeedUser, ...]
    helpdesk_group: str = "ProofUp_Helpdesk"  # acts in the console (PROOFUP_HELPDESK_GROUP_DN)
    service_desk_group: str = "IT_ServiceDesk"  # the desk's team group, nested in the helpdesk group
    auditor_group: str = "ProofUp_Auditors"  # reads the console only (PROOFUP_AUDITOR_GROUP_DN)

    def dn(self, cn: str, ou: str) -> str:
        """Build a DN under the base (cn escaped for commas)."""
        return f"CN={cn.replace(',', chr(92) + ',')},{ou},{self.base_dn}"

    def user_dn(self, user: SeedUser) -> str:
        return self.dn(user.display_name, self.users_ou)

    def group_dn(self, name: str) -> str:
        return self.dn(name, self.groups_ou)

    @property
    def required_group_dn(self) -> str:
        return self.group_dn(self.required_group)

    @property
    def nested_required_group_dn(self) -> str:
        return self.group_dn(self.nested_required_group)

    @property
    def bypass_group_dn(self) -> str:
        return self.group_dn(self.bypass_group)

    @property
    def helpdesk_group_dn(self) -> str:
        return self.group_dn(self.helpdesk_group)

    @property
    def service_desk_group_dn(self) -> str:
        return self.group_dn(self.service_desk_group)

    @property
    def auditor_group_dn(self) -> str:
        return self.group_dn(self.auditor_group)

    def staff_group_dn(self, user: SeedUser) -> str:
        """Return the group that gives a staff account its role (the helpdesk's through nesting)."""
        return self.service_desk_group_dn if user.staff_role == "helpdesk" else self.auditor_group_dn

    @property
    def staff(self) -> tuple[SeedUser, ...]:
        return tuple(u for u in self.users if u.staff_role)

    @property
    def privileged_group_dn(self) -> str:
        """Domain Admins lives in CN=Users in every AD."""
        return f"CN={self.privileged_group},CN=Users,{self.base_dn}"

    def user(self, upn: str) -> SeedUser:
        for u in self.users:
            if u.upn.lower() == upn.lower():
                return u
        raise KeyError(upn)


def load_seed(path: str | Path = DEMO_SEED) -> Seed:
    """Read and validate a seed file (YAML or JSON)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SeedError(f"seed file {path} must hold a mapping")
    d = raw.get("directory", {})
    t = raw.get("tenant", {})
    users = []
    seen: set[str] = set()
    for i, entry in enumerate(raw.get("users") or []):
        where = f"users[{i}]"
        try:
            upn = str(entry["upn"]).strip()
            state = str(entry.get("state", "unregistered"))
        except (KeyError, TypeError):
            raise SeedError(f"{where}: every user needs a upn") from None
        if state not in USER_STATES:
            raise SeedError(f"{where} ({upn}): unknown state {state!r}; use one of {sorted(USER_STATES)}")
        methods = tuple(entry.get("methods") or (("microsoftAuthenticator",) if state == "registered" else ()))
        unknown = set(methods) - METHOD_KINDS
        if unknown:
            raise SeedError(f"{where} ({upn}): unknown method(s) {sorted(unknown)}")
        staff_role = str(entry.get("staff_role") or "")
        if staff_role and staff_role not in STAFF_ROLES:
            raise SeedError(f"{where} ({upn}): unknown staff_role {staff_role!r}; use one of {sorted(STAFF_ROLES)}")
        if upn.lower() in seen:
            raise SeedError(f"{where}: duplicate upn {upn}")
        seen.add(upn.lower())
        users.append(
            SeedUser(
                upn=upn,
                password=str(entry.get("password") or raw.get("default_password") or ""),
                display_name=str(entry.get("display_name") or upn.split("@")[0]),
                object_id=str(entry.get("object_id") or uuid.uuid5(uuid.NAMESPACE_URL, "proofup:" + upn.lower())),
                state=state,
                methods=methods,
                nested=bool(entry.get("nested", False)),
                in_entra=bool(entry.get("in_entra", True)),
                in_directory=bool(entry.get("in_directory", True)),
                mail=str(entry.get("mail", upn) or "").strip(),
                preferred_language=str(entry.get("preferred_language") or "").strip(),
                staff_role=staff_role,
                staff_mfa=str(entry.get("staff_mfa") or ""),
            )
        )
        if not users[-1].password:
            raise SeedError(f"{where} ({upn}): no password and no default_password")
    return Seed(
        base_dn=d.get("base_dn", "DC=uni,DC=test"),
        upn_suffix=d.get("upn_suffix", "uni.test"),
        tenant_id=str(t.get("id", "8d3f2b4e-6c1a-4f5e-9b7d-2a1c0e9f8b7a")),
        tenant_domain=t.get("domain", "uni.test"),
        users_ou=d.get("users_ou", "OU=Students"),
        groups_ou=d.get("groups_ou", "OU=Groups"),
        service_ou=d.get("service_ou", "OU=Service Accounts"),
        required_group=d.get("required_group", "MFA_Required"),
        nested_required_group=d.get("nested_required_group", "MFA_Required_Cohort2026"),
        bypass_group=d.get("bypass_group", "MFA_ProofUpBypass"),
        privileged_group=d.get("privileged_group", "Domain Admins"),
        users=tuple(users),
        helpdesk_group=d.get("helpdesk_group", "ProofUp_Helpdesk"),
        service_desk_group=d.get("service_desk_group", "IT_ServiceDesk"),
        auditor_group=d.get("auditor_group", "ProofUp_Auditors"),
    )
