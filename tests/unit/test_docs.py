"""The documentation stays true to the code: settings, links and the tables docs/privacy.md accounts for."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.adapters.store.base import Database
from app.config import ENV_FILE_VARIABLE, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
README = ROOT / "README.md"
# Read before the settings exist (the env file that feeds them, and the log set-up that reports their errors).
PROCESS_VARIABLES = {ENV_FILE_VARIABLE, "PROOFUP_LOG_FORMAT", "PROOFUP_LOG_LEVEL"}
SETTING_NAME = re.compile(r"PROOFUP_[A-Z0-9_]*")
LINK = re.compile(r"\]\(([^)\s]+)\)|<a href=\"([^\"]+)\"|<img src=\"([^\"]+)\"")


def _settings() -> set[str]:
    return {env_name(item.name) for item in fields(Settings)} | PROCESS_VARIABLES


def _pages() -> list[Path]:
    return [README, *DOCS]


def test_every_setting_is_in_the_readme_table():
    """Find every PROOFUP_ setting of app/config.py as a row of the README's settings table."""
    rows = set(re.findall(r"^\| `(PROOFUP_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))
    assert _settings() - rows == set()


def test_every_setting_named_in_the_docs_exists():
    """Refuse a PROOFUP_ name in README or docs/ that app/config.py does not read (PROOFUP_DESK_* is a family)."""
    known = _settings()
    unknown = set()
    for page in _pages():
        for name in SETTING_NAME.findall(page.read_text()):
            if name.endswith("_"):
                assert any(setting.startswith(name) for setting in known), f"{page.name}: {name}*"
            elif name not in known:
                unknown.add(f"{page.name}: {name}")
    assert unknown == set()


def _anchors(page: Path) -> set[str]:
    """Return the anchors GitHub makes of a page's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        anchors.add(slug.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.name)
def test_every_local_link_leads_somewhere(page: Path):
    """Open every relative link of a page: the file exists, and so does the heading it points at."""
    broken = []
    for match in LINK.finditer(page.read_text()):
        target = next(group for group in match.groups() if group)
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == []


def test_the_readme_links_every_doc():
    """List every docs/*.md in the README, so a newcomer finds each one."""
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", README.read_text()))
    assert {f"docs/{page.name}" for page in DOCS} - linked == set()


def test_privacy_names_every_table_the_migrations_create(tmp_path):
    """Name in docs/privacy.md's database table every table the migrations create, and no table they do not."""
    database = Database(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    database.upgrade()
    tables = set(inspect(database.engine).get_table_names()) - {"alembic_version"}
    database.dispose()
    privacy = (ROOT / "docs" / "privacy.md").read_text()
    section = privacy.split("## In the database", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert tables - named == set(), "tables docs/privacy.md does not account for"
    assert named - tables == set(), "tables docs/privacy.md names that no migration creates"
