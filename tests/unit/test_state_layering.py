"""The layering rules: the domain is pure, views never touch msal, msgraph or ldap3 themselves."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
ADAPTER_LIBRARIES = {"msal", "msgraph", "msgraph_core", "kiota_abstractions", "ldap3", "sqlalchemy", "requests",
                     "httpx"}


def imported_roots(path: Path) -> set[str]:
    """Return the top-level names of every module a file imports (at any depth in the file)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((APP / "web").glob("*.py")), ids=lambda p: p.name)
def test_views_use_services_not_protocol_libraries(path):
    assert not imported_roots(path) & ADAPTER_LIBRARIES


def test_the_state_domain_does_no_io():
    allowed = {"__future__", "dataclasses", "datetime", "enum", "app"}
    assert imported_roots(APP / "domain" / "state.py") <= allowed
