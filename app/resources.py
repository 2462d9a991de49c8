"""Where the files that ship with the portal are, in a wheel or in a checkout of the repository."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE.parent  # the top of the repository, when running from a checkout


def site_folder(name: str) -> Path:
    """Return templates/ or static/: inside the installed package (a wheel), else at the top of the source tree."""
    installed = PACKAGE / name  # setup.py maps the top-level folders here when it builds a wheel
    return installed if installed.is_dir() else SOURCE_ROOT / name
