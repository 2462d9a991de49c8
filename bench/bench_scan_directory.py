#!/usr/bin/env python3
"""Benchmark the directory side of a scan on Samba: 2,000 students read in bulk against one look-up each.

Starts a throw-away Samba AD DC (scripts/samba_dc.py), creates the students in an OU and puts them into a
cohort group (one multi-value modify), then measures as the portal's service account, side by side:
users_in_group (ranged `member` reads, DNs resolved 100 to a search), users_under (a paged subtree search),
find_users (100 UPNs a search plus one in-chain search per policy group) against find_user per student (a
user search plus an in-chain search each), the latter on a sample and per student.

Usage: .venv/bin/python bench/bench_scan_directory.py [--students 2000] [--sample 200]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.directory import LdapDirectory  # noqa: E402
from app.seed import load_seed  # noqa: E402
from bench.bench_directory import BENCH_OU, populate_bench_members, samba_version, timed  # noqa: E402
from scripts import samba_dc as samba  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="The scan's directory reads on a throw-away Samba AD DC")
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    seed = load_seed()
    workdir = Path(tempfile.mkdtemp(prefix="proofup-bench-scan-dc-"))
    _, (dc, population) = timed(lambda: samba.up(workdir, seed, samba.free_loopback_ip()))
    try:
        cohort = seed.nested_required_group_dn  # the cohort group inside MFA_Required, as a real intake would be
        t_populate, dns = timed(lambda: populate_bench_members(dc, seed.base_dn, cohort, args.students))
        directory = LdapDirectory([dc.url], population.service_dn, population.service_password, seed.base_dn,
                                  ca_file=str(dc.ca_file))
        directory.find_user("ada.lovelace@uni.test")  # connection and bind ready: measure only the reads
        groups = [seed.required_group_dn, seed.bypass_group_dn, seed.privileged_group_dn]
        t_group, in_group = timed(lambda: directory.users_in_group(cohort, args.students + 100))
        t_ou, under = timed(lambda: directory.users_under(f"{BENCH_OU},{seed.base_dn}", args.students + 100))
        upns = [u.upn for u in in_group]
        t_bulk, found = timed(lambda: directory.find_users(upns, groups))
        sample = upns[:: max(1, len(upns) // args.sample)][:args.sample]
        t_each, each = timed(lambda: [directory.find_user(u) for u in sample])
        assert len(in_group) >= args.students and len(under) == args.students == len(dns)
        assert len(found) == len(upns) and all(u.in_group(seed.required_group_dn) for u in found.values())
        assert all(u is not None and u.in_group(seed.required_group_dn) for u in each)
        directory.close()
    finally:
        samba.stop(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    per_user = t_each / len(sample)
    searches = -(-len(upns) // 100) * (1 + len(groups))
    print(f"""## The scan's directory reads

Script: `bench/bench_scan_directory.py` (one run, 2 cores, Debian 12, Samba {samba_version()} with `-M single` on
loopback, LDAPS with a verified certificate, other test runs sharing the cores). {args.students:,} students in a
cohort group nested in MFA_Required (created in {t_populate:.0f} s, not part of the measure).

| Read | Time | Searches |
|---|---|---|
| `users_in_group` of the cohort ({len(in_group):,} users, ranged `member`, DNs resolved 100 a search) | {t_group:.2f} s | {-(-len(in_group) // 1500)} ranged reads + {-(-len(in_group) // 100)} |
| `users_under` the OU (paged subtree search) | {t_ou:.2f} s | {-(-len(under) // 1000)} pages |
| **`find_users`** ({len(upns):,} UPNs, membership of {len(groups)} policy groups, in-chain) | **{t_bulk:.2f} s** | {searches} |
| `find_user` per student (sample of {len(sample)}) | {per_user * 1000:.1f} ms each, {per_user * len(upns):.0f} s for {len(upns):,} | {2 * len(upns):,} for all |
| per student / bulk | {per_user * len(upns) / t_bulk:.1f}x | |
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
