#!/usr/bin/env python3
"""Run a throw-away Samba AD DC on loopback and populate it from a seed file.

Usage:
    python scripts/samba_dc.py up --dir DIR [--seed FILE] [--ip 127.0.0.1]
    python scripts/samba_dc.py down --dir DIR

`up` installs Samba from Debian's packages if it is missing, provisions a fresh domain inside DIR
(nothing under /etc, /run or /var), starts it, waits for a verified LDAPS bind, populates it from
the seed, and prints the PROOFUP_LDAP_* settings for the portal's service account (throw-away
credentials, generated per run). `down` stops the DC by its PID.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ldap3
import trustme
from ldap3.core.exceptions import LDAPException

from app.seed import DEMO_SEED, Seed, load_seed

PACKAGES = ("samba", "samba-dsdb-modules", "samba-vfs-modules", "samba-ad-provision")
REALM = "UNI.TEST"
NETBIOS_DOMAIN = "UNI"
SERVICE_ACCOUNT = "svc-proofup"
# schemaIDGUID of the `member` attribute: the one property the service account may write.
MEMBER_ATTRIBUTE_GUID = "bf9679c0-0de6-11d0-a285-00aa003049e2"
UF_NORMAL_ACCOUNT = 0x200
UF_ACCOUNTDISABLE = 0x2
GLOBAL_SECURITY_GROUP = -2147483646
RESULT_ENTRY_ALREADY_EXISTS = 68


class SambaError(RuntimeError):
    """Samba could not be installed, provisioned, started or populated; the message says which step."""


def _strong_password() -> str:
    """Return a random password that satisfies AD's default complexity rules."""
    return secrets.token_urlsafe(18) + "aA1!"


@dataclass
class SambaDC:
    """One throw-away domain controller: where it lives and how to reach it as its administrator."""

    directory: Path
    ip: str = "127.0.0.1"
    admin_password: str = field(default_factory=_strong_password, repr=False)
    host_name: str = "dc1"

    @property
    def fqdn(self) -> str:
        return f"{self.host_name}.{REALM.lower()}"

    @property
    def base_dn(self) -> str:
        return ",".join(f"DC={part}" for part in REALM.lower().split("."))

    @property
    def url(self) -> str:
        return f"ldaps://{self.ip}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "private" / "tls" / "ca.pem"

    @property
    def admin_dn(self) -> str:
        return f"CN=Administrator,CN=Users,{self.base_dn}"

    @property
    def conf_file(self) -> Path:
        return self.directory / "etc" / "smb.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "run" / "samba.pid"

    @property
    def sam_ldb(self) -> Path:
        return self.directory / "private" / "sam.ldb"

    def connect(self, bind_dn: str | None = None, password: str | None = None) -> ldap3.Connection:
        """Open a verified LDAPS connection, bound as the administrator unless told otherwise."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
        server = ldap3.Server(self.ip, port=636, use_ssl=True, tls=tls, connect_timeout=5)
        return ldap3.Connection(
            server, user=bind_dn or self.admin_dn, password=self.admin_password if password is None else password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS, raise_exceptions=True, receive_timeout=30,
        )


@dataclass(frozen=True)
class Population:
    """What populate() created that callers need: the portal's service account."""

    service_dn: str
    service_password: str = field(repr=False)
    service_sid: str


def _missing_packages() -> list[str]:
    """Name the AD DC packages not installed (all four are needed: provisioning fails without the last three)."""
    if not shutil.which("dpkg-query"):  # not Debian: trust the binaries
        return [] if shutil.which("samba-tool") and Path(_samba_binary()).exists() else list(PACKAGES)
    result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *PACKAGES],
                            capture_output=True, text=True)
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in PACKAGES if p not in installed]


def ensure_installed() -> None:
    """Install Samba's AD DC packages from Debian's archive if any is missing."""
    if not _missing_packages():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SambaError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def _samba_binary() -> str:
    return shutil.which("samba") or "/usr/sbin/samba"


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SambaError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout


def provision(dc: SambaDC) -> None:
    """Provision a fresh domain into dc.directory, with a certificate valid for the DC's IP and name."""
    if dc.directory.exists():
        shutil.rmtree(dc.directory)
    dc.directory.mkdir(parents=True)
    d = dc.directory
    options = {
        "interfaces": f"{dc.ip}/8",
        "bind interfaces only": "yes",
        "pid directory": d / "run",
        "ncalrpc dir": d / "ncalrpc",
        "winbindd socket directory": d / "winbindd",
        "log file": d / "log.%m",
        "server services": "ldap",
    }
    command = [
        "samba-tool", "domain", "provision", "-s", "/dev/null", f"--targetdir={d}", f"--realm={REALM}",
        f"--domain={NETBIOS_DOMAIN}", "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
        f"--adminpass={dc.admin_password}", f"--host-name={dc.host_name}",
        *(f"--option={key}={value}" for key, value in options.items()),
    ]
    _run(command, "samba-tool domain provision")
    (d / "run").mkdir(exist_ok=True)
    _write_tls_files(dc)


def _write_tls_files(dc: SambaDC) -> None:
    # Samba's own self-signed certificate names the DC only in its CN; TLS clients check the
    # subjectAltName, so issue one that covers both the loopback IP and the DC's DNS name.
    tls_dir = dc.ca_file.parent
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="ProofUp test CA")
    cert = ca.issue_cert(dc.fqdn, dc.ip)
    key_file = tls_dir / "key.pem"
    key_file.write_bytes(cert.private_key_pem.bytes())
    key_file.chmod(0o600)  # Samba refuses a key other users can read
    (tls_dir / "cert.pem").write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    dc.ca_file.write_bytes(ca.cert_pem.bytes())


def free_loopback_ip(preferred: str | None = None) -> str:
    """Return a loopback address with nothing on the LDAP ports: preferred if free, else a random one.

    LDAP's ports are fixed, so test sessions running at the same time on one machine each need an
    address of their own; a random one out of 127.0.0.0/8 makes two sessions meeting unlikely.
    """
    candidates = [preferred] if preferred else []
    candidates += [f"127.{random.randint(16, 250)}.{random.randint(0, 255)}.{random.randint(2, 250)}"
                   for _ in range(20)]
    for ip in candidates:
        if not any(_listening(ip, port) for port in (389, 636)):
            return ip
    raise SambaError("no free loopback address for a DC")


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((ip, port)) == 0


def running_pid(directory: Path) -> int | None:
    """Return the PID of the DC running from this directory, or None."""
    try:
        pid = int((directory / "run" / "samba.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def start(dc: SambaDC, timeout: float = 60.0) -> None:
    """Start the DC in the background and wait until an administrator bind over verified LDAPS works."""
    _run([_samba_binary(), "-D", "-M", "single", "-s", str(dc.conf_file)], "starting samba")
    wait_ready(dc, timeout)


def wait_ready(dc: SambaDC, timeout: float = 60.0) -> None:
    """Wait for a real LDAPS bind (not a port probe): the first start also generates keys."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if running_pid(dc.directory) is None and last_error is not None:
            raise SambaError(f"samba exited during start-up; see {dc.directory}/log.samba ({last_error})")
        try:
            dc.connect().unbind()
            return
        except LDAPException as exc:
            last_error = exc
            time.sleep(0.2)
    raise SambaError(f"no LDAPS bind to {dc.url} within {timeout:.0f} s: {last_error}")


def stop(directory: Path, timeout: float = 10.0) -> bool:
    """Stop the DC running from directory by its PID (TERM, then KILL); tell whether one was running."""
    pid = running_pid(directory)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _add(conn: ldap3.Connection, dn: str, object_class: list[str], attributes: dict) -> bool:
    """Add an entry; False if it already exists (populate is idempotent)."""
    try:
        conn.add(dn, object_class, attributes)
        return True
    except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
        return False


def _add_member(conn: ldap3.Connection, group_dn: str, member_dn: str) -> None:
    try:
        conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
    except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
        pass


def _unicode_pwd(password: str) -> bytes:
    return f'"{password}"'.encode("utf-16-le")


def _ensure_user(conn: ldap3.Connection, dn: str, sam: str, upn: str, display_name: str, password: str,
                 enabled: bool, mail: str = "", preferred_language: str = "") -> None:
    flags = UF_NORMAL_ACCOUNT | (0 if enabled else UF_ACCOUNTDISABLE)
    attributes = {
        "sAMAccountName": sam, "userPrincipalName": upn, "displayName": display_name,
        "unicodePwd": _unicode_pwd(password), "userAccountControl": str(flags),
    }
    # Given name and surname from the display name, so a look-up by either finds the person (as in AD).
    given, _, surname = display_name.rpartition(" ")
    attributes.update({name: value for name, value in (("mail", mail), ("preferredLanguage", preferred_language),
                                                       ("givenName", given), ("sn", surname if given else ""))
                       if value})
    if not _add(conn, dn, ["top", "person", "organizationalPerson", "user"], attributes):
        conn.modify(dn, {name: [(ldap3.MODIFY_REPLACE, [value])] for name, value in attributes.items()
                         if name != "sAMAccountName"})


def populate(dc: SambaDC, seed: Seed, service_password: str | None = None) -> Population:
    """Create the seed's OUs, groups, users and the least-privileged service account (idempotent).

    The service account gets a fresh random password unless one is given (several DCs that stand
    in for one domain share it).
    """
    conn = dc.connect()
    try:
        for ou in (seed.users_ou, seed.groups_ou, seed.service_ou):
            _add(conn, f"{ou},{seed.base_dn}", ["top", "organizationalUnit"], {})
        for name in (seed.required_group, seed.nested_required_group, seed.bypass_group, seed.helpdesk_group,
                     seed.service_desk_group, seed.auditor_group):
            _add(conn, seed.group_dn(name), ["top", "group"],
                 {"sAMAccountName": name, "groupType": str(GLOBAL_SECURITY_GROUP)})
        _add_member(conn, seed.required_group_dn, seed.nested_required_group_dn)
        _add_member(conn, seed.helpdesk_group_dn, seed.service_desk_group_dn)  # the desk's team, nested
        for user in seed.users:
            if not user.in_directory:
                continue
            dn = seed.user_dn(user)
            _ensure_user(conn, dn, user.sam_account_name, user.upn, user.display_name, user.password, user.enabled,
                         mail=user.mail, preferred_language=user.preferred_language)
            if user.mfa_required:
                _add_member(conn, seed.nested_required_group_dn if user.nested else seed.required_group_dn, dn)
            if user.privileged:
                _add_member(conn, seed.privileged_group_dn, dn)
                # AD's SDProp sets adminCount only eventually; the portal's policy needs it now.
                conn.modify(dn, {"adminCount": [(ldap3.MODIFY_REPLACE, ["1"])]})
            if user.staff_role:
                _add_member(conn, seed.staff_group_dn(user), dn)
        service_dn = f"CN={SERVICE_ACCOUNT},{seed.service_ou},{seed.base_dn}"
        service_password = service_password or _strong_password()
        _ensure_user(conn, service_dn, SERVICE_ACCOUNT, f"{SERVICE_ACCOUNT}@{seed.upn_suffix}",
                     "ProofUp Portal service account", service_password, enabled=True)
        conn.search(service_dn, "(objectClass=user)", ldap3.BASE, attributes=["objectSid"])
        service_sid = str(conn.entries[0].objectSid.value)
    finally:
        conn.unbind()
    _delegate_member_write(dc, seed.bypass_group_dn, service_sid)
    return Population(service_dn=service_dn, service_password=service_password, service_sid=service_sid)


def _delegate_member_write(dc: SambaDC, group_dn: str, sid: str) -> None:
    """Let the SID write `member` of one group and nothing else (dsacls /G ...:WP;member)."""
    ace = f"(OA;;WP;{MEMBER_ATTRIBUTE_GUID};;{sid})"
    base = ["samba-tool", "dsacl", "-s", str(dc.conf_file), "-H", f"tdb://{dc.sam_ldb}"]
    current = _run([*base[:2], "get", *base[2:], f"--objectdn={group_dn}"], "samba-tool dsacl get")
    if ace.lower() not in current.lower():
        _run([*base[:2], "set", *base[2:], f"--objectdn={group_dn}", f"--sddl={ace}"], "samba-tool dsacl set")


def up(directory: Path, seed: Seed, ip: str = "127.0.0.1",
       service_password: str | None = None) -> tuple[SambaDC, Population]:
    """Install if needed, provision, start and populate a DC; return it and the service account."""
    ensure_installed()
    stop(directory)
    busy = [port for port in (389, 636) if _listening(ip, port)]
    if busy:
        raise SambaError(f"{ip} already has a server on port(s) {busy}; choose another loopback address (--ip)")
    dc = SambaDC(directory=directory, ip=ip)
    provision(dc)
    start(dc)
    try:
        return dc, populate(dc, seed, service_password)
    except Exception:
        stop(directory)
        raise


def portal_env(dc: SambaDC, seed: Seed, population: Population, urls: list[str] | None = None) -> dict[str, str]:
    """Return the PROOFUP_LDAP_* settings that point the portal at this DC as its service account."""
    return {
        "PROOFUP_LDAP_URL": " ".join(urls or [dc.url]),
        "PROOFUP_LDAP_BIND_DN": population.service_dn,
        "PROOFUP_LDAP_PASSWORD": population.service_password,
        "PROOFUP_LDAP_BASE_DN": seed.base_dn,
        "PROOFUP_CA_BUNDLE": str(dc.ca_file),
        "PROOFUP_REQUIRED_GROUP_DN": seed.required_group_dn,
        "PROOFUP_BYPASS_GROUP_DN": seed.bypass_group_dn,
        "PROOFUP_PRIVILEGED_GROUP_DNS": seed.privileged_group_dn,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the `up` or `down` command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="provision, start and populate a fresh DC")
    up_parser.add_argument("--dir", required=True, type=Path, help="private directory for the DC (wiped)")
    up_parser.add_argument("--seed", type=Path, default=DEMO_SEED, help="seed file (default: the demo seed)")
    up_parser.add_argument("--ip", default="127.0.0.1", help="loopback address to listen on")
    down_parser = sub.add_parser("down", help="stop the DC started from DIR")
    down_parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            print("stopped" if stop(args.dir) else f"no DC running from {args.dir}")
            return 0
        seed = load_seed(args.seed)
        dc, population = up(args.dir.resolve(), seed, args.ip)
    except (SambaError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # The operator asked for this DC: hand over its throw-away service credentials once, on stdout.
    print(json.dumps(portal_env(dc, seed, population), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
