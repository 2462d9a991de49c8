"""The simulated cloud's state: Entra users, their methods, sign-ins and devices, and a clock tests can move."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

from app.seed import Seed, SeedUser

PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"
# Graph gives phone methods fixed ids by phone type.
PHONE_METHOD_IDS = {"mobile": "3179e48a-750b-4051-897c-87b9720928f7",
                    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
                    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc"}
EMAIL_METHOD_ID = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f"
AUTHENTICATOR_APP_ID = "4813382a-8fa7-425e-ab75-3b753aab3abb"
# Seeded data is dated this long before the simulator starts.
SEED_AGE = dt.timedelta(days=40)


def iso(moment: dt.datetime) -> str:
    """Format a UTC time as Graph does: ISO 8601 with a Z."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "proofup-simulator:" + ":".join(parts)))


class Clock:
    """Wall-clock time plus an offset that the control endpoint can advance (for expiry tests)."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        return time.time() + self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.timezone.utc)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


@dataclass
class EntraUser:
    id: str
    upn: str
    display_name: str
    account_enabled: bool
    mail: str
    state: str
    privileged: bool


@dataclass
class Method:
    """One authentication method. It shows in Graph from visible_from on, until deleted_at."""

    id: str
    user_id: str
    kind: str
    created: dt.datetime
    visible_from: dt.datetime
    details: dict = field(default_factory=dict)
    deleted_at: dt.datetime | None = None

    def present_at(self, moment: dt.datetime) -> bool:
        return self.visible_from <= moment and (self.deleted_at is None or self.deleted_at > moment)


@dataclass
class SignIn:
    id: str
    user_id: str
    app_id: str
    app_display_name: str
    created: dt.datetime
    client_app_used: str = "Mobile Apps and Desktop clients"
    error_code: int = 0
    resource_display_name: str = "Microsoft Graph"


@dataclass
class Device:
    id: str
    device_id: str
    user_id: str
    display_name: str
    operating_system: str
    operating_system_version: str
    registered: dt.datetime


@dataclass
class Tunables:
    """Delays the real cloud has and tests want to control."""

    method_delay_seconds: float = 5.0  # a new method shows in Graph after this
    report_lag_seconds: float = 4 * 3600.0  # userRegistrationDetails lags behind methods by this
    notice_seconds: int = 5  # the AD FS notice counts down this long before it redirects


ALL_USERS = "all_users"  # the includeTarget id Entra uses for "every user"


@dataclass
class TapPolicy:
    """The tenant's Temporary Access Pass policy (Graph: temporaryAccessPassAuthenticationMethodConfiguration).

    Defaults are Entra's in practice: 1 h minimum and default, 8 h maximum, reusable (DOMAIN.md section 7).
    """

    state: str = "enabled"
    include_group_ids: list = field(default_factory=lambda: [ALL_USERS])
    exclude_group_ids: list = field(default_factory=list)
    minimum_minutes: int = 60
    maximum_minutes: int = 480
    default_minutes: int = 60
    usable_once: bool = False
    default_length: int = 8

    def covers(self, user_groups: set) -> bool:
        """Tell whether the policy lets a user with these Entra groups have a pass (exclusions win)."""
        if self.state != "enabled" or user_groups & set(self.exclude_group_ids):
            return False
        return ALL_USERS in self.include_group_ids or bool(user_groups & set(self.include_group_ids))


class World:
    """Everything the simulated Entra knows, behind one lock (the server runs one process, many threads)."""

    def __init__(self, seed: Seed, clock: Clock | None = None, tunables: Tunables | None = None):
        self.seed = seed
        self.clock = clock or Clock()
        self.tunables = tunables or Tunables()
        self.lock = threading.RLock()
        self.users: dict[str, EntraUser] = {}
        self.methods: list[Method] = []
        self.sign_ins: list[SignIn] = []
        self.devices: list[Device] = []
        self.tap_policy = TapPolicy()
        self.entra_groups: dict[str, set[str]] = {}  # Entra group id -> member user ids (for the TAP policy)
        self.federated_idp_mfa_behavior = "acceptIfMfaDoneByFederatedIdp"
        # A pass's code is Entra's to check, so it keeps a salted hash of it: never the code itself.
        self._tap_hashes: dict[str, tuple[bytes, bytes]] = {}
        for su in seed.users:
            if su.in_entra:
                self._load_user(su)

    # --- seeding -----------------------------------------------------------------------------------
    def _load_user(self, su: SeedUser) -> None:
        start = self.clock.now() - SEED_AGE
        user = EntraUser(id=su.object_id, upn=su.upn, display_name=su.display_name,
                         account_enabled=su.enabled, mail=su.upn, state=su.state, privileged=su.privileged)
        self.users[user.id] = user
        self.methods.append(Method(PASSWORD_METHOD_ID, user.id, "password", start, start))
        for kind in su.methods:
            self.add_method(user.id, kind, at=start, delay=0.0)
        if su.state == "half_registered":
            # Signed in to the Authenticator app before MFA was required: sign-ins and a device, no method.
            self._add_device(user, "iPhone", "iOS", "17.5.1", start)
            for days_ago in (30, 12, 2):
                self.record_sign_in(user.id, AUTHENTICATOR_APP_ID, "Microsoft Authenticator App",
                                    at=self.clock.now() - dt.timedelta(days=days_ago, hours=3))

    def _add_device(self, user: EntraUser, name: str, os_name: str, os_version: str, at: dt.datetime) -> None:
        self.devices.append(Device(id=_stable_id("device", user.id, name), device_id=_stable_id("deviceid", user.id, name),
                                   user_id=user.id, display_name=f"{user.display_name.split()[0]}'s {name}",
                                   operating_system=os_name, operating_system_version=os_version, registered=at))

    # --- queries -----------------------------------------------------------------------------------
    def find_user(self, id_or_upn: str) -> EntraUser | None:
        """Find by object id or UPN, case-insensitively, as Graph's /users/{id | userPrincipalName} does."""
        key = id_or_upn.strip().lower()
        with self.lock:
            for user in self.users.values():
                if user.id.lower() == key or user.upn.lower() == key:
                    return user
        return None

    def methods_of(self, user_id: str, kind: str | None = None, at: dt.datetime | None = None) -> list[Method]:
        """List the methods Graph shows for a user now (or as of an earlier moment, for the lagging report)."""
        moment = at or self.clock.now()
        with self.lock:
            return [m for m in self.methods
                    if m.user_id == user_id and m.present_at(moment) and (kind is None or m.kind == kind)]

    def registered_methods(self, user_id: str) -> list[Method]:
        """List every method not deleted, including those Graph does not show yet (My Sign-Ins shows them)."""
        with self.lock:
            return [m for m in self.methods if m.user_id == user_id and m.deleted_at is None]

    def has_usable_strong_method(self, user_id: str) -> bool:
        """Tell whether the Azure MFA adapter could challenge this user (a strong method is visible)."""
        return any(m.kind not in ("password", "temporaryAccessPass", "email", "qrCodePin")
                   for m in self.methods_of(user_id))

    def devices_of(self, user_id: str) -> list[Device]:
        with self.lock:
            return [d for d in self.devices if d.user_id == user_id]

    # --- changes -----------------------------------------------------------------------------------
    def add_method(self, user_id: str, kind: str, at: dt.datetime | None = None, delay: float | None = None,
                   details: dict | None = None) -> Method:
        """Register a method; it shows in Graph after the configured delay (Entra's replication lag)."""
        created = at or self.clock.now()
        wait = self.tunables.method_delay_seconds if delay is None else delay
        with self.lock:
            method_id = self._method_id(user_id, kind)
            method = Method(method_id, user_id, kind, created, created + dt.timedelta(seconds=wait),
                            details=details or self._default_details(user_id, kind))
            self.methods.append(method)
            if kind == "microsoftAuthenticator":
                user = self.users[user_id]
                if not self.devices_of(user_id):
                    self._add_device(user, "iPhone", "iOS", "17.5.1", created)
            return method

    def _method_id(self, user_id: str, kind: str) -> str:
        if kind == "phone":
            return PHONE_METHOD_IDS["mobile"]
        if kind == "email":
            return EMAIL_METHOD_ID
        return str(uuid.uuid4())

    @staticmethod
    def _default_details(user_id: str, kind: str) -> dict:
        return {
            "microsoftAuthenticator": {"displayName": "iPhone 15", "deviceTag": "SoftwareTokenActivated",
                                       "phoneAppVersion": "6.8.11"},
            "phone": {"phoneNumber": "+44 7700900" + str(int(user_id[:4], 16) % 1000).zfill(3),
                      "phoneType": "mobile", "smsSignInState": "notAllowedByPolicy"},
            "fido2": {"displayName": "Security key", "aaGuid": "cb69481e-8ff7-4039-93ec-0a2729a154a8",
                      "model": "YubiKey 5 Series", "attestationCertificates": [], "attestationLevel": "attested"},
            "softwareOath": {"secretKey": None},
            "windowsHelloForBusiness": {"displayName": "LAB-PC-01", "keyStrength": "normal"},
            "email": {"emailAddress": "personal.address@example.org"},
            "hardwareOath": {"serialNumber": "TOTP-0042", "manufacturer": "Token2", "model": "C202"},
            "platformCredential": {"displayName": "MacBook Air", "keyStrength": "normal", "platform": "macOS"},
            "externalAuthentication": {"displayName": "Partner MFA",
                                       "configurationId": "b9a5ab1b-0a1b-4a4b-9d5e-3f1e2d3c4b5a"},
            "futureMethod": {"displayName": "Something new"},
        }.get(kind, {})

    def delete_method(self, method: Method) -> None:
        """Delete a method from now on (the lagging report still shows it for a while)."""
        with self.lock:
            method.deleted_at = self.clock.now()

    def groups_of(self, user_id: str) -> set[str]:
        """Return the Entra group ids a user is a member of."""
        with self.lock:
            return {group for group, members in self.entra_groups.items() if user_id in members}

    def keep_tap_code(self, method: Method, code: str) -> None:
        """Remember a salted hash of a pass's code, so that a sign-in can check it."""
        salt = secrets.token_bytes(16)
        with self.lock:
            self._tap_hashes[method.id] = (salt, hashlib.sha256(salt + code.encode()).digest())

    def usable_tap(self, user_id: str) -> Method | None:
        """Return the user's pass if it can sign in now: within its lifetime, not spent, the policy allowing it."""
        now = self.clock.now()
        for method in self.methods_of(user_id, "temporaryAccessPass"):
            start = dt.datetime.fromisoformat(method.details["startDateTime"].replace("Z", "+00:00"))
            end = start + dt.timedelta(minutes=method.details["lifetimeInMinutes"])
            if start <= now < end and not method.details.get("used") and self.tap_policy.covers(self.groups_of(user_id)):
                return method
        return None

    def sign_in_with_tap(self, user_id: str, code: str) -> bool:
        """Check a pass typed at sign-in; a one-time pass is spent by its first good use."""
        with self.lock:
            method = self.usable_tap(user_id)
            kept = self._tap_hashes.get(method.id) if method else None
            if method is None or kept is None:
                return False
            salt, digest = kept
            if not hmac.compare_digest(hashlib.sha256(salt + code.encode()).digest(), digest):
                return False
            if method.details.get("isUsableOnce"):
                method.details["used"] = True
            return True

    def record_sign_in(self, user_id: str, app_id: str, app_display_name: str, at: dt.datetime | None = None,
                       resource: str = "Microsoft Graph") -> SignIn:
        with self.lock:
            entry = SignIn(id=str(uuid.uuid4()), user_id=user_id, app_id=app_id, app_display_name=app_display_name,
                           created=at or self.clock.now(), resource_display_name=resource)
            self.sign_ins.append(entry)
            return entry


class Ephemeral:
    """Short-lived single-use records (codes, pending sign-ins, sessions) keyed by random handles."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._items: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def put(self, value: object, lifetime_seconds: float) -> str:
        handle = secrets.token_urlsafe(32)
        with self._lock:
            self._prune()
            self._items[handle] = (self._clock.time() + lifetime_seconds, value)
        return handle

    def get(self, handle: str | None) -> object | None:
        with self._lock:
            found = self._items.get(handle or "")
        if found is None or found[0] <= self._clock.time():
            return None
        return found[1]

    def pop(self, handle: str | None) -> object | None:
        with self._lock:
            found = self._items.pop(handle or "", None)
        if found is None or found[0] <= self._clock.time():
            return None
        return found[1]

    def _prune(self) -> None:
        now = self._clock.time()
        for handle in [h for h, (expires, _) in self._items.items() if expires <= now]:
            del self._items[handle]
