"""An embedded directory for `proofup demo` and tests: same interface and semantics as LDAP on AD.

In memory by default; with a state file, every process that opens the file shares one directory (the demo,
and admin commands run against it in another terminal): writes hold a lock beside the file and replace it
whole, reads pick up whatever another process wrote.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from app.adapters.file_lock import exclusive_lock
from app.domain.directory import DirectoryError, DirectoryPermissionError, DirectoryUser, MembershipCheck, dn_key
from app.domain.upn import Upn
from app.seed import Seed

SERVER_NAME = "embedded"


@dataclass
class _Entry:
    user: DirectoryUser
    salt: bytes = field(repr=False)
    password_hash: bytes = field(repr=False)


def _matches(user: DirectoryUser, prefix: str) -> bool:
    """Match the LDAP search's prefix filter: userPrincipalName, sAMAccountName, displayName, givenName or sn."""
    names = [user.upn, user.sam_account_name, user.display_name, *user.display_name.split()]
    return any(name.lower().startswith(prefix) for name in names)


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10_000)


class EmbeddedDirectory:
    """A thread-safe stand-in for Active Directory, loaded from a seed, in memory or shared through a state file."""

    def __init__(self, seed: Seed | None, writable_group_dns: Iterable[str] | None = None, *,
                 state_file: str | Path | None = None):
        """Load the seed (and start the state file afresh from it), or, without a seed, open the state file.

        With writable_group_dns, act like a delegated service account limited to them.
        """
        self._writable = None if writable_group_dns is None else frozenset(dn_key(g) for g in writable_group_dns)
        self._lock = threading.RLock()
        self._users: dict[str, _Entry] = {}  # upn lower -> entry
        self._groups: dict[str, set[str]] = {}  # group dn_key -> direct member dn_keys
        self._names: dict[str, str] = {}  # dn_key -> DN as written
        self._path = Path(state_file) if state_file is not None else None
        self._loaded = b""  # the state file's bytes as last read or written
        if seed is None:
            if self._path is None:
                raise ValueError("an embedded directory needs a seed or a state file")
            self._refresh()
            return
        self._load(seed)
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self._file_lock():
                self._save()

    @classmethod
    def open(cls, state_file: str | Path) -> "EmbeddedDirectory":
        """Open the directory another process keeps in state_file (the running demo's)."""
        return cls(None, state_file=state_file)

    # --- the state file ------------------------------------------------------------------------

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold the lock beside the state file, so read-change-write steps of two processes never interleave."""
        if self._path is None:
            yield
            return
        with exclusive_lock(f"{self._path}.lock"):
            yield

    def _refresh(self) -> None:
        """Take over what another process wrote to the state file since we last read or wrote it."""
        if self._path is None:
            return
        data = self._path.read_bytes()  # whole and consistent: writers replace the file, never edit it
        if data == self._loaded:
            return
        state = json.loads(data)
        self._users = {Upn(u["upn"]): _Entry(DirectoryUser(**u["user"]), bytes.fromhex(u["salt"]),
                                                bytes.fromhex(u["password_hash"])) for u in state["users"]}
        self._groups = {group: set(members) for group, members in state["groups"].items()}
        self._names = dict(state["names"])
        self._loaded = data

    def _save(self) -> None:
        """Replace the state file with the directory as it is now (under the file lock)."""
        if self._path is None:
            return
        state = {
            # Demo data only: salted hashes of the seed's published demo passwords.
            "users": [{"upn": e.user.upn, "user": {k: v for k, v in asdict(e.user).items() if k != "group_dns"},
                       "salt": e.salt.hex(), "password_hash": e.password_hash.hex()} for e in self._users.values()],
            "groups": {group: sorted(members) for group, members in self._groups.items()},
            "names": self._names,
        }
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        partial = self._path.with_name(self._path.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, self._path)
        self._loaded = data

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            self._refresh()
            yield

    @contextmanager
    def _changing(self, group_dn: str) -> Iterator[None]:
        """Check write access, then hold both locks around reading, changing and writing the directory."""
        self._require_writable(group_dn)
        with self._lock, self._file_lock():
            self._refresh()
            yield

    def _load(self, seed: Seed) -> None:
        for group_dn in (seed.required_group_dn, seed.nested_required_group_dn, seed.bypass_group_dn,
                         seed.privileged_group_dn, seed.helpdesk_group_dn, seed.service_desk_group_dn,
                         seed.auditor_group_dn):
            self._groups[dn_key(group_dn)] = set()
            self._names[dn_key(group_dn)] = group_dn
        # The cohort group is nested inside MFA_Required, and the desk's team inside the helpdesk group,
        # as in the Samba test domain.
        self._groups[dn_key(seed.required_group_dn)].add(dn_key(seed.nested_required_group_dn))
        self._groups[dn_key(seed.helpdesk_group_dn)].add(dn_key(seed.service_desk_group_dn))
        for su in seed.users:
            if not su.in_directory:
                continue
            dn = seed.user_dn(su)
            self._names[dn_key(dn)] = dn
            if su.mfa_required:
                group = seed.nested_required_group_dn if su.nested else seed.required_group_dn
                self._groups[dn_key(group)].add(dn_key(dn))
            if su.privileged:
                self._groups[dn_key(seed.privileged_group_dn)].add(dn_key(dn))
            if su.staff_role:
                self._groups[dn_key(seed.staff_group_dn(su))].add(dn_key(dn))
            salt = os.urandom(16)
            user = DirectoryUser(
                dn=dn, upn=su.upn, sam_account_name=su.sam_account_name, display_name=su.display_name,
                enabled=su.enabled, admin_count=1 if su.privileged else 0, mail=su.mail,
                preferred_language=su.preferred_language,
            )
            self._users[Upn(su.upn)] = _Entry(user, salt, _hash(su.password, salt))

    def _effective_groups(self, member_key: str) -> frozenset[str]:
        found: set[str] = set()
        frontier = {member_key}
        while frontier:
            nxt = {g for g, members in self._groups.items() if members & frontier} - found
            found |= nxt
            frontier = nxt
        return frozenset(found)

    def find_user(self, upn: str) -> DirectoryUser | None:
        with self._reading():
            entry = self._users.get(Upn.parse(upn))
            if entry is None:
                return None
            return replace(entry.user, group_dns=self._effective_groups(dn_key(entry.user.dn)))

    def find_users(self, upns: Sequence[str], groups: Sequence[str]) -> dict[str, DirectoryUser]:
        """Find many users by UPN with their effective membership of `groups` only (as the LDAP adapter does)."""
        asked = frozenset(dn_key(g) for g in groups)
        found: dict[str, DirectoryUser] = {}
        with self._reading():
            for upn in upns:
                entry = self._users.get(Upn.parse(upn)) if isinstance(upn, str) else None
                if entry is not None:
                    groups_of = self._effective_groups(dn_key(entry.user.dn)) & asked
                    found[entry.user.upn] = replace(entry.user, group_dns=groups_of)
        return found

    def users_in_group(self, group_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts in a group, nested groups followed, sorted by UPN (as the LDAP adapter does)."""
        key = dn_key(group_dn)
        with self._reading():
            if key not in self._groups:
                raise DirectoryError(f"{group_dn} is not a group")
            found = [e.user for e in self._users.values() if key in self._effective_groups(dn_key(e.user.dn))]
        return self._bounded(found, group_dn, limit)

    def users_under(self, base_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts under a DN (an OU), sorted by UPN; an OU nothing lives under is unknown."""
        key = dn_key(base_dn)
        with self._reading():
            known = any(k == key or k.endswith("," + key) for k in (*self._names, *self._groups))
            if not known:
                raise DirectoryError(f"{base_dn}: no such entry")
            found = [e.user for e in self._users.values() if dn_key(e.user.dn).endswith("," + key)]
        return self._bounded(found, base_dn, limit)

    @staticmethod
    def _bounded(users: list[DirectoryUser], where: str, limit: int) -> list[DirectoryUser]:
        if len(users) > limit:
            raise DirectoryError(f"{where} holds more than {limit} users")
        return sorted(users, key=lambda u: u.upn)

    def search_users(self, prefix: str, limit: int) -> list[DirectoryUser]:
        """Find users whose UPN, account name, display name or a word of it starts with prefix (as LDAP would)."""
        wanted = prefix.strip().lower()
        if not wanted or limit < 1:
            return []
        with self._reading():  # the demo's state file may have changed in another process
            found = [e.user for e in self._users.values() if _matches(e.user, wanted)]
        return sorted(found, key=lambda u: u.upn)[:limit]

    def verify_password(self, upn: str, password: str) -> bool:
        with self._reading():
            entry = self._users.get(Upn.parse(upn))
        if entry is None or not entry.user.enabled or not password:
            return False
        return hmac.compare_digest(_hash(password, entry.salt), entry.password_hash)

    def _require_writable(self, group_dn: str) -> None:
        if self._writable is not None and dn_key(group_dn) not in self._writable:
            raise DirectoryPermissionError(f"{SERVER_NAME}: the service account may not change the members of {group_dn}")

    def add_member(self, group_dn: str, member_dn: str, ttl_seconds: int | None = None) -> bool:
        with self._changing(group_dn):
            members = self._groups.setdefault(dn_key(group_dn), set())
            if dn_key(member_dn) in members:
                return False
            members.add(dn_key(member_dn))
            self._save()
            return True

    def remove_member(self, group_dn: str, member_dn: str) -> bool:
        with self._changing(group_dn):
            members = self._groups.setdefault(dn_key(group_dn), set())
            if dn_key(member_dn) not in members:
                return False
            members.discard(dn_key(member_dn))
            self._save()
            return True

    def list_members(self, group_dn: str) -> list[str]:
        with self._reading():
            return sorted(self._names.get(k, k) for k in self._groups.get(dn_key(group_dn), ()))

    def is_member(self, group_dn: str, member_dn: str) -> bool:
        with self._reading():
            return dn_key(member_dn) in self._groups.get(dn_key(group_dn), ())

    def confirm_membership(self, group_dn: str, member_dn: str, present: bool = True,
                           timeout_seconds: float = 20.0) -> MembershipCheck:
        ok = self.is_member(group_dn, member_dn) == present
        return MembershipCheck(agreeing=(SERVER_NAME,) if ok else (), lagging=() if ok else (SERVER_NAME,))

    def check_write_access(self, group_dn: str) -> bool:
        with self._reading():
            return dn_key(group_dn) in self._groups and (self._writable is None or dn_key(group_dn) in self._writable)

    def servers(self) -> tuple[str, ...]:
        return (SERVER_NAME,)

    def close(self) -> None:
        pass
