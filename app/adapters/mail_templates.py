"""Render mail from templates/mail/<kind>.txt and .html in the recipient's language (the portal's catalogues).

The worker renders without a request, so this uses Jinja and Babel directly (both under Flask-Babel) with
the same catalogue as the pages: app/translations, extracted by babel.cfg. Each `.txt` template names its
subject in a `{% block subject %}`; its body is the plain-text part, the `.html` template the HTML part.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.config import DEFAULT_LANGUAGE, TRANSLATIONS_DIR, language_of
from app.domain.mail import RenderedMail
from app.resources import site_folder

TEMPLATES_DIR = site_folder("templates")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


class MailTemplates:
    """The mail templates, one Jinja environment per language (each with its catalogue installed)."""

    def __init__(self, *, timezone: str = "UTC", folder: Path = TEMPLATES_DIR):
        self.timezone = ZoneInfo(timezone)
        self.folder = folder
        self._environments: dict[str, Environment] = {}
        self._lock = threading.Lock()

    def exists(self, kind: str) -> bool:
        """Tell whether both templates of a kind of mail are there."""
        return bool(_KIND.fullmatch(kind)) and all(
            (self.folder / "mail" / f"{kind}.{ext}").is_file() for ext in ("txt", "html"))

    def render(self, kind: str, language: str, params: dict) -> RenderedMail:
        """Render one kind of mail in a language (falling back to English) with the given values."""
        if not self.exists(kind):
            raise LookupError(f"no mail templates for {kind!r} in {self.folder / 'mail'}")
        language = language_of(language) or DEFAULT_LANGUAGE
        env = self._environment(language)
        values = {**params, "language": language}
        text_template = env.get_template(f"mail/{kind}.txt")
        subject_block = text_template.blocks["subject"](text_template.new_context(values))
        subject = " ".join("".join(subject_block).split())  # one line, whatever a value held
        return RenderedMail(subject=subject, text=text_template.render(values).strip() + "\n",
                            html=env.get_template(f"mail/{kind}.html").render({**values, "subject": subject}))

    def _environment(self, language: str) -> Environment:
        with self._lock:
            env = self._environments.get(language)
            if env is None:
                env = Environment(loader=FileSystemLoader(str(self.folder)), extensions=["jinja2.ext.i18n"],
                                  autoescape=select_autoescape(["html"], default_for_string=False),
                                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                  keep_trailing_newline=True)
                env.install_gettext_translations(Translations.load(str(TRANSLATIONS_DIR), [language]),
                                                 newstyle=True)
                env.filters["when"] = lambda value: self._format_when(value, language)
                self._environments[language] = env
            return env

    def _format_when(self, value: str | datetime, language: str) -> str:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(self.timezone)
        day = format_date(local, "long", locale=language)
        return f"{day}, {format_time(local, 'short', tzinfo=self.timezone, locale=language)} ({self.timezone.key})"
