"""The layering rules: the domain is innermost and pure; services name ports; views reach adapters only through services."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
ADAPTER_LIBRARIES = {"msal", "msgraph", "msgraph_core", "kiota_abstractions", "ldap3", "sqlalchemy", "requests",
                     "httpx", "jwt", "alembic"}
# What a domain module may import: the standard library's pure parts and the domain itself.
DOMAIN_ALLOWED = {"__future__", "contextlib", "dataclasses", "datetime", "enum", "typing", "re", "uuid", "hashlib",
                  "hmac", "base64", "secrets", "csv", "io", "app.domain"}


def imported_modules(path: Path) -> set[str]:
    """Return the full dotted name of every module a file imports (at any depth in the file)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            # `from app import adapters` names a module too.
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            modules.add("." * node.level + (node.module or ""))
    return modules


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def allowed_in_domain(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in DOMAIN_ALLOWED)


DOMAIN = sorted((APP / "domain").rglob("*.py"))
WEB = sorted((APP / "web").rglob("*.py"))
SERVICES = sorted((APP / "services").rglob("*.py"))
# What a use case may not import: the adapters, the web layer, the bootstrap (app.wiring builds the services
# and hands them their adapters), and the libraries those use.
OUTSIDE_SERVICES = ("app.adapters", "app.web", "app.wiring", "app.cli", "app.health", "app.metrics", "flask")


def test_the_layers_have_modules():
    assert len(DOMAIN) >= 5 and len(WEB) >= 5 and len(SERVICES) >= 5


def outside_imports(path: Path) -> set[str]:
    """Return what a service module imports from the outer layers or the protocol libraries."""
    modules = imported_modules(path)
    return ({m for m in modules if any(m == o or m.startswith(o + ".") for o in OUTSIDE_SERVICES)}
            | (roots(modules) & ADAPTER_LIBRARIES))


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_use_cases_reach_adapters_only_through_the_ports(path):
    """A service names ports (app.domain.ports); app.wiring gives it the adapters that implement them."""
    assert not outside_imports(path)


@pytest.mark.parametrize("path", WEB, ids=lambda p: p.name)
def test_views_use_services_not_protocol_libraries(path):
    assert not roots(imported_modules(path)) & ADAPTER_LIBRARIES


@pytest.mark.parametrize("path", WEB, ids=lambda p: p.name)
def test_views_import_no_adapter(path):
    assert not {m for m in imported_modules(path) if m == "app.adapters" or m.startswith("app.adapters.")}


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_the_domain_imports_only_itself_and_pure_modules(path):
    """No adapter, service, web, Flask, SQLAlchemy, ldap3, msal or msgraph: the domain is innermost."""
    modules = {m for m in imported_modules(path) if not m.startswith(".")}
    # `from app.domain import x` adds app.domain.x; `from x import Name` adds x.Name: check the module part.
    outside = {m for m in modules if not allowed_in_domain(m) and not allowed_in_domain(m.rpartition(".")[0])}
    assert not outside
    assert not {m for m in modules if m.startswith(".")}, "use absolute imports in the domain"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from app.adapters.store import Store\nimport flask\n", encoding="utf-8")
    modules = imported_modules(bad)
    assert "app.adapters.store" in modules and "flask" in modules
    assert not allowed_in_domain("app.adapters.store") and not allowed_in_domain("flask")
    assert not allowed_in_domain("app.domainx")
