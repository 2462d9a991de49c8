"""Active Directory over LDAP (ldap3): find students, manage the bypass group, confirm changes on each DC."""
from __future__ import annotations

import math
import re
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Callable, Sequence, TypeVar
from urllib.parse import urlparse

import ldap3
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from app.config import Settings
from app.domain.directory import (
    DirectoryAuthError,
    DirectoryError,
    DirectoryPermissionError,
    DirectoryUnavailable,
    DirectoryUser,
    MembershipCheck,
    dn_key,
)

T = TypeVar("T")

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: transitive group membership
UF_ACCOUNTDISABLE = 0x2
MAX_VAL_RANGE = 1500  # AD's default MaxValRange: values of `member` per answer
PAGE_SIZE = 1000  # AD's default MaxPageSize
UPNS_PER_SEARCH = 100  # UPNs OR-ed into one filter by find_users: short filters, few round trips
POLL_INTERVAL = 0.5  # seconds between reads while waiting for replication
RETRY_PAUSE = 0.2
CONFIRM_GRACE = 1.0  # seconds past the wait for a last read to come back

# LDAP result codes with a meaning of their own here (RFC 4511 section 4.1.9).
TIME_LIMIT_EXCEEDED = 3
STRONGER_AUTH_REQUIRED = 8
CONFIDENTIALITY_REQUIRED = 13
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS_RIGHTS = 50
BUSY = 51
UNAVAILABLE = 52
TRANSIENT_RESULTS = frozenset({TIME_LIMIT_EXCEEDED, BUSY, UNAVAILABLE})

_RANGE_ATTRIBUTE = re.compile(r"^member;range=(\d+)-(\d+|\*)$", re.IGNORECASE)
SEARCH_ATTRIBUTES = ("userPrincipalName", "sAMAccountName", "displayName", "givenName", "sn")  # what a look-up matches
USER_ATTRIBUTES = ["userPrincipalName", "sAMAccountName", "displayName", "userAccountControl", "adminCount", "mail",
                   "preferredLanguage"]


def _translate(exc: Exception, what: str, where: str) -> DirectoryError:
    """Turn an ldap3 or socket failure into the portal's typed error, with a message fit for an admin."""
    if isinstance(exc, DirectoryError):
        return exc
    code = getattr(exc, "result", None)
    if isinstance(exc, lx.LDAPOperationResult) and isinstance(code, int):
        detail = f"{exc.description or ''} ({code}) {exc.message or ''}".strip()
        if code == INVALID_CREDENTIALS:
            return DirectoryAuthError(f"{where} refused the bind for {what}: wrong DN or password ({detail})")
        if code == INSUFFICIENT_ACCESS_RIGHTS:
            return DirectoryPermissionError(f"{where}: the service account may not {what} ({detail})")
        if code in TRANSIENT_RESULTS:
            return DirectoryUnavailable(f"{where} could not {what} right now: {detail}")
        if code in (STRONGER_AUTH_REQUIRED, CONFIDENTIALITY_REQUIRED):
            return DirectoryError(f"{where} requires TLS to {what}: use ldaps:// or StartTLS ({detail})")
        if code == NO_SUCH_OBJECT:
            return DirectoryError(f"{where}: cannot {what}: no such entry ({detail})")
        return DirectoryError(f"{where}: cannot {what}: {detail}")
    # Only a refused certificate is one: ldap3 wraps every TLS failure (a DC hanging up mid-handshake too) as SSLError.
    if isinstance(exc, (lx.LDAPCertificateError, ssl.SSLCertVerificationError)):
        return DirectoryUnavailable(f"{where}: TLS certificate check failed while trying to {what}: {exc}")
    return DirectoryUnavailable(f"{where} did not answer while trying to {what}: {exc}")


def _unbind(conn: ldap3.Connection | None) -> None:
    """Close a connection if there is one, quietly: a failed unbind means the socket is gone already."""
    if conn is None:
        return
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - nothing is left to release
        pass


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, lx.LDAPOperationResult):
        return exc.result in TRANSIENT_RESULTS
    if isinstance(exc, (lx.LDAPCertificateError, ssl.SSLCertVerificationError)):
        return False  # a wrong certificate stays wrong
    return isinstance(exc, (lx.LDAPCommunicationError, lx.LDAPStartTLSError, lx.LDAPSocketOpenError,
                            lx.LDAPResponseTimeoutError, OSError))


def _require_dn(value: object, what: str) -> str:
    """Return value if it is a syntactically valid DN; a DN never comes from raw user input here."""
    if not isinstance(value, str) or not value.strip() or value.lstrip().startswith("<"):
        raise DirectoryError(f"{what} must be a distinguished name, not {value!r}")
    try:
        parse_dn(value)
    except lx.LDAPInvalidDnError as exc:
        raise DirectoryError(f"{what} is not a valid distinguished name: {value!r} ({exc})") from None
    return value


class _Link:
    """One DC: its server definition and one reusable, lock-guarded service-account connection."""

    def __init__(self, url: str, open_connection: Callable[[ldap3.Server, str, str], ldap3.Connection],
                 server: ldap3.Server, bind_dn: str, password: str):
        self.url = url
        self.server = server
        self._open_connection = open_connection
        self._bind_dn = bind_dn
        self._password = password
        self._lock = threading.Lock()
        self._conn: ldap3.Connection | None = None
        self.observe: Callable[[str, bool], None] | None = None  # told (DC, succeeded) after every operation

    def run(self, what: str, operation: Callable[[ldap3.Connection], T]) -> T:
        """Run operation on the shared connection (retried once on a transient fault); tell the observer."""
        try:
            result = self._run(what, operation)
        except Exception:
            self._tell(False)
            raise
        self._tell(True)
        return result

    def check(self, what: str, operation: Callable[[ldap3.Connection], object]) -> None:
        """Run operation once on a connection of its own, closed after (never waits for the shared one's lock)."""
        conn = None
        try:
            conn = self._open_connection(self.server, self._bind_dn, self._password)
            operation(conn)
        except Exception as exc:  # ldap3 raises many unrelated classes; classify them once here
            self._tell(False)
            raise _translate(exc, what, self.url) from exc
        finally:
            _unbind(conn)
        self._tell(True)

    def _tell(self, succeeded: bool) -> None:
        if self.observe is not None:
            self.observe(self.url, succeeded)

    def _run(self, what: str, operation: Callable[[ldap3.Connection], T]) -> T:
        with self._lock:
            try:
                return self._attempt(operation)
            except Exception as exc:  # ldap3 raises many unrelated classes; classify them once here
                if not _is_transient(exc):
                    raise _translate(exc, what, self.url) from exc
            time.sleep(RETRY_PAUSE)
            try:
                return self._attempt(operation)
            except Exception as exc:
                raise _translate(exc, what, self.url) from exc

    def _attempt(self, operation: Callable[[ldap3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open_connection(self.server, self._bind_dn, self._password)
        try:
            return operation(self._conn)
        except DirectoryError:
            raise
        except lx.LDAPOperationResult as exc:
            if exc.result in TRANSIENT_RESULTS:
                self._drop()
            raise
        except Exception:
            self._drop()  # the connection may be broken half-way through a message
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _unbind(conn)

    def close(self) -> None:
        with self._lock:
            self._drop()


class LdapDirectory:
    """Active Directory through ldap3 over verified TLS, as the portal's least-privileged service account."""

    def __init__(self, urls: Sequence[str], bind_dn: str, password: str, base_dn: str, ca_file: str | None = None,
                 use_starttls: bool = False, use_ttl: bool = False, timeout: float = 10.0,
                 replication_wait: float = 20.0, range_size: int = MAX_VAL_RANGE):
        if isinstance(urls, str):
            urls = urls.replace(",", " ").split()
        if not urls:
            raise ValueError("LdapDirectory needs at least one DC URL")
        if not bind_dn or not password:
            raise ValueError("LdapDirectory needs the service account's bind DN and password")
        self._base_dn = _require_dn(base_dn, "the base DN")
        self._ca_file = ca_file or None
        self._use_starttls = use_starttls
        self._use_ttl = use_ttl
        self._timeout = timeout
        self._replication_wait = replication_wait
        self._range_size = range_size
        self._urls = tuple(urls)
        self._links = [_Link(url, self._open, self._server(url), bind_dn, password) for url in self._urls]

    def observe_operations(self, observe: Callable[[str, bool], None]) -> None:
        """Have observe(DC URL, succeeded) called after every LDAP operation (the metrics count them)."""
        for link in self._links:
            link.observe = observe

    @classmethod
    def from_settings(cls, settings: Settings) -> "LdapDirectory":
        """Build the directory from app.config.Settings (PROOFUP_LDAP_*); ldap:// URLs mean StartTLS."""
        urls = settings.ldap_urls
        return cls(
            urls, settings.ldap_bind_dn, settings.ldap_password, settings.ldap_base_dn,
            ca_file=settings.ca_bundle or None,
            use_starttls=any(urlparse(u).scheme == "ldap" for u in urls),
            use_ttl=settings.ldap_use_ttl, replication_wait=settings.replication_wait_seconds,
        )

    # -- connections -------------------------------------------------------------------------------

    def _server(self, url: str) -> ldap3.Server:
        parsed = urlparse(url)
        if parsed.scheme not in ("ldaps", "ldap") or not parsed.hostname:
            raise ValueError(f"not an LDAP URL: {url!r} (use ldaps://host or ldap://host with StartTLS)")
        if parsed.scheme == "ldap" and not self._use_starttls:
            raise ValueError(f"{url}: simple binds need TLS; use ldaps:// or turn on StartTLS")
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self._ca_file)
        use_ssl = parsed.scheme == "ldaps"
        return ldap3.Server(parsed.hostname, port=parsed.port or (636 if use_ssl else 389), use_ssl=use_ssl,
                            tls=tls, get_info=ldap3.NONE, connect_timeout=self._timeout)

    def _open(self, server: ldap3.Server, user: str, password: str) -> ldap3.Connection:
        """Open a TLS connection and simple-bind; raises ldap3 errors for the caller to classify."""
        conn = ldap3.Connection(
            server, user=user, password=password, auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=True,
            auto_referrals=False, receive_timeout=math.ceil(self._timeout),  # ldap3 packs it as an integer
            auto_range=False, return_empty_attributes=False,  # ranges are followed explicitly below
        )
        # ldap3 skips an address for 5 s after a failure; the retry policy here is ours, so forget it.
        server.reset_availability()
        try:
            conn.open()
            if not server.ssl:
                conn.start_tls()
            conn.bind()
        except Exception:
            _unbind(conn)
            raise
        return conn

    def _primary(self, what: str, operation: Callable[[ldap3.Connection], T]) -> T:
        """Run on the first DC: writes go there, and reads that must see them too."""
        return self._links[0].run(what, operation)

    # -- users -------------------------------------------------------------------------------------

    def find_user(self, upn: str) -> DirectoryUser | None:
        """Find a user by UPN (case-insensitive) with effective nested group memberships; None if unknown."""
        if not isinstance(upn, str) or not upn.strip():
            return None
        value = escape_filter_chars(upn.strip())
        user_filter = f"(&(objectCategory=person)(objectClass=user)(userPrincipalName={value}))"

        def lookup(conn: ldap3.Connection) -> DirectoryUser | None:
            found = _search_all(conn, self._base_dn, user_filter, USER_ATTRIBUTES)
            if not found:
                return None
            if len(found) > 1:
                raise DirectoryError(f"{len(found)} accounts share the UPN {upn.strip()!r}; fix the directory")
            dn, attrs = found[0]
            groups = _search_all(conn, self._base_dn,
                                 f"(&(objectClass=group)(member:{IN_CHAIN}:={escape_filter_chars(dn)}))", [])
            return _user_from(dn, attrs, upn.strip(), frozenset(dn_key(group_dn) for group_dn, _ in groups))

        return self._primary("look up a user", lookup)

    def search_users(self, prefix: str, limit: int) -> list[DirectoryUser]:
        """Find at most limit users whose UPN, account name, display, given or surname starts with prefix.

        The prefix is escaped (an injected `*)(` is searched for literally); group memberships are not read.
        """
        wanted = prefix.strip() if isinstance(prefix, str) else ""
        if not wanted or limit < 1:
            return []
        value = escape_filter_chars(wanted)
        names = "".join(f"({attr}={value}*)" for attr in SEARCH_ATTRIBUTES)
        search_filter = f"(&(objectCategory=person)(objectClass=user)(|{names}))"

        def search(conn: ldap3.Connection) -> list[DirectoryUser]:
            try:
                conn.search(self._base_dn, search_filter, ldap3.SUBTREE, attributes=USER_ATTRIBUTES,
                            size_limit=limit)
            except lx.LDAPSizeLimitExceededResult:
                pass  # the first `limit` entries arrived; more exist, and the caller said it wants no more
            entries = [(r["dn"], r["attributes"]) for r in conn.response or [] if r.get("type") == "searchResEntry"]
            found = [_user_from(dn, attrs, "", frozenset()) for dn, attrs in entries]
            return sorted((u for u in found if u is not None), key=lambda u: u.upn)[:limit]

        return self._primary("search for users", search)

    def find_users(self, upns: Sequence[str], groups: Sequence[str]) -> dict[str, DirectoryUser]:
        """Find many users by UPN, 100 to a search, with their effective membership of `groups` only.

        Per 100 UPNs: one search for the users and one in-chain search per group limited to them, instead of
        a user search and an in-chain search per user (find_user). Keyed by lower-cased UPN; unknown ones left out.
        """
        wanted = list(dict.fromkeys(u.strip().lower() for u in upns if isinstance(u, str) and u.strip()))
        group_dns = [_require_dn(g, "the group") for g in dict.fromkeys(groups)]
        found: dict[str, DirectoryUser] = {}
        for start in range(0, len(wanted), UPNS_PER_SEARCH):
            chunk = wanted[start:start + UPNS_PER_SEARCH]
            names = "".join(f"(userPrincipalName={escape_filter_chars(u)})" for u in chunk)
            users_filter = f"(&(objectCategory=person)(objectClass=user)(|{names}))"

            def lookup(conn: ldap3.Connection, users_filter: str = users_filter) -> dict[str, DirectoryUser]:
                entries = _search_all(conn, self._base_dn, users_filter, USER_ATTRIBUTES)
                memberships: dict[str, set[str]] = {}
                for group_dn in group_dns:
                    in_group = f"(&{users_filter}(memberOf:{IN_CHAIN}:={escape_filter_chars(group_dn)}))"
                    for dn, _ in _search_all(conn, self._base_dn, in_group, []):
                        memberships.setdefault(dn_key(dn), set()).add(dn_key(group_dn))
                users: dict[str, DirectoryUser] = {}
                for dn, attrs in entries:
                    user = _user_from(dn, attrs, "", frozenset(memberships.get(dn_key(dn), ())))
                    if user is None:
                        continue
                    if user.upn in users:
                        raise DirectoryError(f"several accounts share the UPN {user.upn!r}; fix the directory")
                    users[user.upn] = user
                return users

            found.update(self._primary("look up users", lookup))
        return found

    def users_in_group(self, group_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts in a group, nested groups followed, sorted by UPN; no memberships read.

        `member` is read with range retrieval (AD hands out 1,500 values at a time), the member DNs are
        resolved 100 to a search (each DN escaped in the filter), and each nested group is opened once, so a
        loop of groups ends. More than `limit` users raise DirectoryError rather than a partial list.
        """
        _require_dn(group_dn, "the group")

        def collect(conn: ldap3.Connection) -> list[DirectoryUser]:
            users: dict[str, DirectoryUser] = {}
            opened, pending = {dn_key(group_dn)}, [group_dn]
            while pending:
                group = pending.pop()
                conn.search(group, "(objectClass=group)", ldap3.BASE, attributes=[])
                if not any(r.get("type") == "searchResEntry" for r in conn.response or []):
                    raise DirectoryError(f"{group} is not a group")
                members = _ranged_members(conn, group, self._range_size)
                for start in range(0, len(members), UPNS_PER_SEARCH):
                    names = "".join(f"(distinguishedName={escape_filter_chars(dn)})"
                                    for dn in members[start:start + UPNS_PER_SEARCH])
                    for dn, attrs in _search_all(conn, self._base_dn, f"(|{names})",
                                                 [*USER_ATTRIBUTES, "objectClass"]):
                        classes = {str(c).lower() for c in attrs.get("objectClass") or ()}
                        if "group" in classes and dn_key(dn) not in opened:
                            opened.add(dn_key(dn))
                            pending.append(dn)
                        elif "user" in classes and "computer" not in classes:
                            user = _user_from(dn, attrs, "", frozenset())
                            if user is not None:
                                users[user.upn] = user
                    if len(users) > limit:
                        raise DirectoryError(f"{group_dn} holds more than {limit} users")
            return sorted(users.values(), key=lambda u: u.upn)

        return self._primary(f"list the users in {group_dn}", collect)

    def users_under(self, base_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts in the subtree under an OU (paged search), sorted by UPN; no memberships read.

        More than `limit` users raise DirectoryError rather than a partial list.
        """
        _require_dn(base_dn, "the OU")
        users_filter = "(&(objectCategory=person)(objectClass=user))"

        def collect(conn: ldap3.Connection) -> list[DirectoryUser]:
            found = [_user_from(dn, attrs, "", frozenset())
                     for dn, attrs in _search_all(conn, base_dn, users_filter, USER_ATTRIBUTES)]
            users = sorted((u for u in found if u is not None), key=lambda u: u.upn)
            if len(users) > limit:
                raise DirectoryError(f"{base_dn} holds more than {limit} users")
            return users

        return self._primary(f"list the users under {base_dn}", collect)

    def verify_password(self, upn: str, password: str) -> bool:
        """Tell whether the password is right for an enabled user, by a simple bind as that user over TLS."""
        if not isinstance(password, str) or not password:
            return False  # an empty password would be an anonymous bind, which "succeeds"
        user = self.find_user(upn)
        if user is None or not user.enabled:
            return False
        server = self._links[0].server
        try:
            conn = self._open(server, user.dn, password)
        except lx.LDAPOperationResult as exc:
            if exc.result == INVALID_CREDENTIALS:
                return False
            raise _translate(exc, "check a password", self._urls[0]) from exc
        except Exception as exc:  # socket and TLS faults
            raise _translate(exc, "check a password", self._urls[0]) from exc
        conn.unbind()
        return True

    # -- membership --------------------------------------------------------------------------------

    def add_member(self, group_dn: str, member_dn: str, ttl_seconds: int | None = None) -> bool:
        """Add a direct member; True if added, False if it already was one (68). TTL only with use_ttl."""
        _require_dn(group_dn, "the group")
        value = _require_dn(member_dn, "the member")
        with_ttl = ttl_seconds is not None and self._use_ttl
        if with_ttl:
            if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool) or ttl_seconds <= 0:
                raise DirectoryError(f"a membership time-to-live must be a positive number of seconds, not {ttl_seconds!r}")
            # Privileged Access Management feature: AD drops the link by itself when the TTL runs out.
            value = f"<TTL={ttl_seconds},{member_dn}>"

        def add(conn: ldap3.Connection) -> bool:
            try:
                conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [value])]})
            except lx.LDAPEntryAlreadyExistsResult:
                return False
            except lx.LDAPInvalidDNSyntaxResult as exc:
                if with_ttl:
                    raise DirectoryError(
                        f"{self._urls[0]} refused a time-to-live membership: this forest lacks the Privileged "
                        "Access Management feature; set PROOFUP_LDAP_USE_TTL=false") from exc
                raise
            return True

        return self._primary(f"add a member to {group_dn}", add)

    def remove_member(self, group_dn: str, member_dn: str) -> bool:
        """Remove a direct member; True if removed, False if it was not one (53)."""
        _require_dn(group_dn, "the group")
        _require_dn(member_dn, "the member")

        def remove(conn: ldap3.Connection) -> bool:
            try:
                conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [member_dn])]})
            except (lx.LDAPUnwillingToPerformResult, lx.LDAPNoSuchAttributeResult):
                # 53 for a non-member; 16 noSuchAttribute when the group has no members at all (Samba).
                return False
            return True

        return self._primary(f"remove a member from {group_dn}", remove)

    def list_members(self, group_dn: str) -> list[str]:
        """List a group's direct member DNs, following range retrieval (member;range=lo-hi) to the end."""
        _require_dn(group_dn, "the group")
        return self._primary(f"list the members of {group_dn}",
                             lambda conn: _ranged_members(conn, group_dn, self._range_size))

    def is_member(self, group_dn: str, member_dn: str) -> bool:
        """Tell whether member_dn is a direct member of group_dn (on the first DC)."""
        return self._member_on(self._links[0], group_dn, member_dn)

    def _member_on(self, link: _Link, group_dn: str, member_dn: str) -> bool:
        _require_dn(group_dn, "the group")
        _require_dn(member_dn, "the member")
        member_filter = f"(member={escape_filter_chars(member_dn)})"

        def probe(conn: ldap3.Connection) -> bool:
            # A base search with the member as filter: no need to fetch a large group's values.
            conn.search(group_dn, member_filter, ldap3.BASE, attributes=[])
            return any(r.get("type") == "searchResEntry" for r in conn.response or [])

        return link.run(f"read the members of {group_dn}", probe)

    def confirm_membership(self, group_dn: str, member_dn: str, present: bool = True,
                           timeout_seconds: float | None = None) -> MembershipCheck:
        """Read every configured DC until it shows the wanted state or the bounded wait ends; report each.

        The DCs are polled in parallel, so one hung DC cannot stretch the wait past its bound.
        """
        _require_dn(group_dn, "the group")
        _require_dn(member_dn, "the member")
        wait = max(0.0, self._replication_wait if timeout_seconds is None else timeout_seconds)
        deadline = time.monotonic() + wait
        pool = ThreadPoolExecutor(max_workers=len(self._links), thread_name_prefix="confirm")
        futures = {pool.submit(self._await_state, link, group_dn, member_dn, present, deadline): link.url
                   for link in self._links}
        done, _ = wait_for(futures, timeout=wait + CONFIRM_GRACE)
        pool.shutdown(wait=False)  # a hung DC's poll ends with its own socket timeout
        agreeing, lagging, errors = [], [], {}
        for future, url in futures.items():  # in configured order
            outcome = future.result() if future in done else f"{url} gave no answer within {wait:.0f} s"
            if outcome is True:
                agreeing.append(url)
            elif outcome is False:
                lagging.append(url)
            else:
                errors[url] = outcome
        return MembershipCheck(agreeing=tuple(agreeing), lagging=tuple(lagging), errors=errors)

    def _await_state(self, link: _Link, group_dn: str, member_dn: str, present: bool, deadline: float
                     ) -> bool | str:
        """Poll one DC: True once it agrees, False if it still lags at the deadline, else the error."""
        while True:
            try:
                if self._member_on(link, group_dn, member_dn) == present:
                    return True
                outcome: bool | str = False
            except DirectoryUnavailable as exc:
                outcome = str(exc)  # may come back before the deadline
            except DirectoryError as exc:
                return str(exc)  # wrong password or rights on this DC: waiting will not help
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return outcome
            time.sleep(min(POLL_INTERVAL, remaining))

    def check_write_access(self, group_dn: str) -> bool:
        """Tell, without changing anything, whether the service account may write the group's member."""
        return "member" in self.writable_attributes(group_dn)

    def writable_attributes(self, group_dn: str) -> frozenset[str]:
        """Return the group's attributes the service account may write (lower case), changing nothing.

        Reads allowedAttributesEffective, which AD (and Samba) compute from the group's ACL for the
        account that asks.
        """
        _require_dn(group_dn, "the group")

        def probe(conn: ldap3.Connection) -> frozenset[str]:
            conn.search(group_dn, "(objectClass=group)", ldap3.BASE, attributes=["allowedAttributesEffective"])
            entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
            if not entries:
                raise DirectoryError(f"{self._urls[0]}: {group_dn} is not a group")
            return frozenset(str(name).lower() for name in entries[0]["attributes"].get("allowedAttributesEffective", []))

        return self._primary(f"read the rights on {group_dn}", probe)

    def ttl_supported(self) -> bool:
        """Tell whether the forest has the Privileged Access Management feature (memberships with a TTL)."""

        def probe(conn: ldap3.Connection) -> bool:
            conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["configurationNamingContext"])
            entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
            config = _first(entries[0]["attributes"], "configurationNamingContext") if entries else None
            if not config:
                raise DirectoryError(f"{self._urls[0]}: the root DSE names no configuration partition")
            conn.search(f"CN=Partitions,{config}", "(objectClass=*)", ldap3.BASE, attributes=["msDS-EnabledFeature"])
            entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
            features = entries[0]["attributes"].get("msDS-EnabledFeature", []) if entries else []
            return any(str(f).lower().startswith("cn=privileged access management feature,") for f in features)

        return self._primary("read the forest's optional features", probe)

    def servers(self) -> tuple[str, ...]:
        """Name the DCs this directory talks to, first one first (it takes the writes)."""
        return self._urls

    def check_servers(self) -> dict[str, DirectoryError | None]:
        """Bind on every DC afresh and read the base entry, one attempt each, in parallel; None where it worked.

        For health checks: each DC gets a connection of its own, so a check never queues behind (or holds up)
        a student's look-up, and a dead DC costs one connection attempt, not the retries a look-up makes.
        """
        def read_base(conn: ldap3.Connection) -> None:
            conn.search(self._base_dn, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])  # 1.1: no attributes

        def check(link: _Link) -> DirectoryError | None:
            try:
                link.check("answer a health check", read_base)
            except DirectoryError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=len(self._links), thread_name_prefix="dc-check") as pool:
            return dict(zip(self._urls, pool.map(check, self._links)))

    def close(self) -> None:
        """Release every DC connection; the next call reconnects."""
        for link in self._links:
            link.close()


def _first(attrs: dict, name: str) -> object:
    value = attrs.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _user_from(dn: str, attrs: dict, upn: str, group_dns: frozenset[str]) -> DirectoryUser | None:
    """Build a DirectoryUser from a search entry's attributes (None for an account without a UPN)."""
    flags = int(_first(attrs, "userAccountControl") or 0)
    found_upn = str(_first(attrs, "userPrincipalName") or upn)
    if "@" not in found_upn:
        return None
    return DirectoryUser(
        dn=dn,
        upn=found_upn,
        sam_account_name=str(_first(attrs, "sAMAccountName") or ""),
        display_name=str(_first(attrs, "displayName") or ""),
        enabled=not flags & UF_ACCOUNTDISABLE,
        admin_count=int(_first(attrs, "adminCount") or 0),
        mail=str(_first(attrs, "mail") or "").strip(),
        preferred_language=str(_first(attrs, "preferredLanguage") or "").strip(),
        group_dns=group_dns,
    )


def _search_all(conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str]
                ) -> list[tuple[str, dict]]:
    """Run a paged subtree search and return (dn, attributes) of the entries, skipping referrals."""
    found: list[tuple[str, dict]] = []
    cookie = None
    while True:
        conn.search(base, search_filter, ldap3.SUBTREE, attributes=attributes or None,
                    paged_size=PAGE_SIZE, paged_cookie=cookie)
        found.extend((r["dn"], r["attributes"]) for r in conn.response or [] if r.get("type") == "searchResEntry")
        cookie = (conn.result.get("controls") or {}).get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
        if not cookie:
            return found


def _ranged_members(conn: ldap3.Connection, group_dn: str, range_size: int) -> list[str]:
    """Read every value of `member`, asking for explicit ranges the way AD hands them out."""
    members: list[str] = []
    low = 0
    while True:
        conn.search(group_dn, "(objectClass=*)", ldap3.BASE, attributes=[f"member;range={low}-{low + range_size - 1}"])
        entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
        if not entries:
            raise DirectoryError(f"{group_dn} was not found")
        attrs = entries[0]["raw_attributes"]
        if not attrs:
            return members  # no (more) members
        name, values = next(iter(attrs.items()))
        members.extend(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values)
        match = _RANGE_ATTRIBUTE.match(name)
        if match is None or match.group(2) == "*":
            return members  # a plain `member` or the last range: everything is here
        low = int(match.group(2)) + 1
