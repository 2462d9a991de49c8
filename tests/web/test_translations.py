"""Every string a student reads is extracted for translation, and the German catalogue covers all of them."""
from __future__ import annotations

from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "app" / "translations"


def test_german_catalogue_translates_every_extracted_string(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    pot = tmp_path / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", "babel.cfg", "-k", "_l", "-o", str(pot), "."])
    wanted = {m.id for m in read_po(pot.open("rb")) if m.id}
    assert len(wanted) > 100  # the extraction found the templates and the views
    compiled = read_mo((CATALOGUES / "de" / "LC_MESSAGES" / "messages.mo").open("rb"))
    missing = sorted(str(i) for i in wanted if not (compiled.get(i) and compiled.get(i).string))
    assert not missing, f"untranslated or not compiled (pybabel update/compile): {missing[:5]}"
