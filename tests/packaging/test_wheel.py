"""A wheel built from the repository, installed into a fresh virtual environment, serves every page and the demo."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests

from tests.fixtures.demo_process import DemoProcess

ROOT = Path(__file__).resolve().parents[2]
HALF = "ada.lovelace@uni.test"
# What a clean checkout holds, less what local runs leave behind.
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(".git", ".venv", "var", "instance", "test-artifacts", "build", "dist",
                                           "*.egg-info", "__pycache__", "*.pyc", "*.sqlite3*", "*.upgrade-lock")

pytestmark = pytest.mark.slow


def run(*command, **kwargs) -> str:
    """Run a command; on failure show its output in the test report."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build sdist and wheel with `python -m build`, install the wheel alone into a fresh venv; return the venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_IN_A_CHECKOUT)
    # No build isolation: offline, with this environment's setuptools (the test extra brings setuptools>=68).
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", source)
    wheel, = (work / "dist").glob("proofup_portal-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    site_packages = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                         .strip())
    # The portal's dependencies come from this environment's site-packages, added as a plain path: its .pth
    # files (the editable install of the source tree among them) are not run, so `app` can come only from the wheel.
    (site_packages / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --ignore-installed: pip would otherwise take the source tree's editable install, seen through that path,
    # for the same version already installed.
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
        "--ignore-installed", "--quiet", wheel)
    return venv, site_packages


@pytest.fixture(scope="module")
def bare_env():
    """The environment without PYTHONPATH, which points into the source tree when tests run."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}


def test_the_wheel_carries_the_pages_and_the_portal_comes_only_from_it(installed, bare_env, tmp_path):
    venv, site_packages = installed
    probe = ("import app, json; from app.resources import site_folder; "
             "from app.adapters.mail_templates import TEMPLATES_DIR as mail; "
             "print(json.dumps([app.__file__, str(site_folder('templates')), str(site_folder('static')), str(mail)]))")
    found = run(venv / "bin" / "python", "-c", probe, cwd=tmp_path, env=bare_env)
    package = site_packages / "app"
    assert json.loads(found) == [str(package / "__init__.py"), str(package / "templates"), str(package / "static"),
                                 str(package / "templates")]
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}
    in_source = {f"{top}/{p.relative_to(ROOT / top).as_posix()}" for top in ("templates", "static")
                 for p in (ROOT / top).rglob("*") if p.is_file()}
    assert in_source and in_source <= shipped  # every page and asset, in whatever subfolder


def stylesheet_of(page: str) -> str:
    """Return the path of the stylesheet a portal page links (whatever subfolder of static/ it lives in)."""
    found = re.search(r'<link rel="stylesheet" href="(/static/[^"?]+)', page)
    assert found, page[:500]
    return found.group(1)


def heading_of(page: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    assert found, page[:500]
    return found.group(1).strip()


def test_the_installed_demo_serves_every_page(installed, bare_env, tmp_path):
    venv, _ = installed
    empty = tmp_path / "anywhere"
    empty.mkdir()
    with DemoProcess([str(venv / "bin" / "proofup")], empty / "state", cwd=empty, env=bare_env) as demo:
        get = lambda path, **kw: requests.get(demo.portal_url + path, timeout=10, **kw)  # noqa: E731
        start = get("/")
        assert start.status_code == 200 and 'href="/sign-in"' in start.text and heading_of(start.text)
        german = get("/", headers={"Accept-Language": "de"})
        assert 'lang="de"' in german.text and heading_of(german.text) != heading_of(start.text)  # catalogue shipped

        # Every stylesheet, script and image of static/, in whatever subfolder, exactly as in the repository.
        assets = [p for p in (ROOT / "static").rglob("*") if p.is_file()]
        assert assets
        for asset in assets:
            served = get("/static/" + asset.relative_to(ROOT / "static").as_posix())
            assert served.status_code == 200 and served.content == asset.read_bytes(), asset
        css = get(stylesheet_of(start.text))
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")

        missing = get("/no-such-page")  # the portal's own error page (with its layout), not Werkzeug's
        assert missing.status_code == 404 and stylesheet_of(missing.text) == stylesheet_of(start.text)
        assert heading_of(missing.text) and 'href="/"' in missing.text

        # Signing in goes through the simulated AD FS (its templates ship in the wheel) to the diagnosis page.
        _, diagnosis = demo.sign_in(HALF)
        assert 'data-state="stuck"' in diagnosis and 'id="unlock"' in diagnosis
    assert demo.process.returncode == 0 and "Traceback" not in demo.output()
