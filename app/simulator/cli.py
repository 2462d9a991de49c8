"""`proofup simulator`: start the simulated Microsoft cloud in one command and say how to reach it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.seed import DEMO_SEED, SeedError, load_seed
from app.simulator import create_simulator
from app.simulator.clients import GRAPH_CLIENT_ID, LIMITED_CLIENT_ID, PORTAL_CLIENT_ID
from app.simulator.keys import ensure_tls
from app.simulator.server import run_gunicorn
from app.simulator.world import Tunables


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proofup simulator",
                                     description="Serve a stand-in for AD FS, Entra ID, Microsoft Graph and My Sign-Ins.")
    parser.add_argument("--port", type=int, default=8443, help="https port (default 8443)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--state-dir", type=Path, default=Path("var/simulator"),
                        help="keys, CA, registrations and control token live here (default var/simulator)")
    parser.add_argument("--seed", type=Path, default=DEMO_SEED, help="seed file (YAML or JSON)")
    parser.add_argument("--method-delay", type=float, default=Tunables.method_delay_seconds,
                        help="seconds before a newly registered method shows in Graph")
    parser.add_argument("--report-lag", type=float, default=Tunables.report_lag_seconds,
                        help="seconds userRegistrationDetails lags behind method changes")
    parser.add_argument("--notice-seconds", type=int, default=Tunables.notice_seconds,
                        help="countdown of the AD FS 'register' notice (Microsoft's snippet uses 5)")
    parser.add_argument("--portal-url", default="",
                        help="the ProofUp Portal's address: the AD FS 'register' notice links to it, as the "
                             "web-theme change in docs/deploy-ad.md does")
    parser.add_argument("--directory-limit", type=int, default=None,
                        help="Graph directory bucket in resource units per 10 s (default: by seeded tenant size)")
    parser.add_argument("--redirect-uri", action="append", default=[],
                        help="another redirect URI for the portal's registration (repeatable)")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads (default 16)")
    parser.add_argument("--directory", choices=("embedded", "ldap"), default="embedded",
                        help="where AD FS reads users, passwords and groups: an in-process directory made from "
                             "the seed, or LDAP configured by the portal's PROOFUP_LDAP_* variables")
    return parser


def ldap_directory(seed) -> tuple[object, str, str]:
    """Build the LDAP directory from the portal's own PROOFUP_* settings; return it with the two group DNs."""
    from app.adapters.directory import LdapDirectory

    env = os.environ
    missing = [n for n in ("PROOFUP_LDAP_URL", "PROOFUP_LDAP_BIND_DN", "PROOFUP_LDAP_PASSWORD") if not env.get(n)]
    if missing:
        raise SeedError("--directory ldap needs " + ", ".join(missing))
    urls = env["PROOFUP_LDAP_URL"].replace(",", " ").split()
    directory = LdapDirectory(urls, env["PROOFUP_LDAP_BIND_DN"], env["PROOFUP_LDAP_PASSWORD"],
                              env.get("PROOFUP_LDAP_BASE_DN") or seed.base_dn,
                              ca_file=env.get("PROOFUP_CA_BUNDLE") or None,
                              use_starttls=any(u.startswith("ldap://") for u in urls))
    return (directory, env.get("PROOFUP_REQUIRED_GROUP_DN") or seed.required_group_dn,
            env.get("PROOFUP_BYPASS_GROUP_DN") or seed.bypass_group_dn)


def describe(base_url: str, state_dir: Path, seed_path: Path, seed) -> str:
    """Say where everything is, which apps are registered and who is seeded (no secrets)."""
    lines = [
        f"ProofUp simulator at {base_url}",
        f"  CA certificate:   {state_dir / 'ca.pem'}",
        f"  AD FS authority:  {base_url}/adfs",
        f"  Entra authority:  {base_url}/{seed.tenant_id}",
        f"  Graph:            {base_url}/v1.0",
        f"  My Sign-Ins:      {base_url}/security-info",
        f"  Control token:    {state_dir / 'control-token'}",
        f"  Client secrets:   {state_dir / 'client-secrets.json'}",
        f"  Portal client id: {PORTAL_CLIENT_ID}",
        f"  Graph client id:  {GRAPH_CLIENT_ID} (least-privilege test app: {LIMITED_CLIENT_ID})",
        f"Seeded users (passwords as in {seed_path}):",
    ]
    width = max((len(u.upn) for u in seed.users), default=0)
    for user in seed.users:
        extra = f" methods={','.join(user.methods)}" if user.methods else ""
        where = "" if user.in_entra and user.in_directory else (" (not in Entra)" if not user.in_entra
                                                               else " (not in AD)")
        lines.append(f"  {user.upn.ljust(width)}  {user.state}{extra}{where}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print("--port must be between 1 and 65535", file=sys.stderr)
        return 2
    try:
        seed = load_seed(args.seed)
        directory, required_dn, bypass_dn = ldap_directory(seed) if args.directory == "ldap" else (None, "", "")
    except SeedError as exc:
        print(f"cannot start the simulator: {exc}", file=sys.stderr)
        return 2
    args.state_dir.mkdir(parents=True, exist_ok=True)
    tls = ensure_tls(args.state_dir)
    tunables = Tunables(method_delay_seconds=args.method_delay, report_lag_seconds=args.report_lag,
                        notice_seconds=args.notice_seconds)
    app = create_simulator(args.state_dir, seed, directory=directory, tunables=tunables,
                           directory_limit=args.directory_limit, extra_redirect_uris=tuple(args.redirect_uri),
                           required_group_dn=required_dn, bypass_group_dn=bypass_dn, portal_url=args.portal_url)
    host = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(describe(f"https://{host}:{args.port}", args.state_dir, args.seed, seed), flush=True)
    run_gunicorn(app, args.host, args.port, tls, threads=args.threads)
    return 0
