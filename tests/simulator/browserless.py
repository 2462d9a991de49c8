"""A tiny scripted browser for protocol tests: follows redirects, fills sign-in forms, auto-submits form_post pages."""
from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(Form(attrs.get("action") or "", (attrs.get("method") or "get").lower()))
        elif tag == "input" and self.forms and attrs.get("name"):
            if (attrs.get("type") or "").lower() in ("checkbox", "radio") and "checked" not in attrs:
                return  # a browser sends only the boxes that are ticked
            self.forms[-1].fields[attrs["name"]] = attrs.get("value") or ""


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


@dataclass
class Landing:
    """Where a scripted navigation stopped: at the client's redirect URI, or on a page that needs a person."""

    url: str
    status: int
    text: str
    params: dict[str, str]  # code/state/error... delivered to the redirect URI (query or form_post)


class Browserless:
    """Drive the sign-in pages as a browser would, stopping when the flow reaches `stop_prefix`."""

    def __init__(self, session: requests.Session, stop_prefix: str):
        self.session = session
        self.stop_prefix = stop_prefix

    def go(self, url: str, method: str = "get", data: dict | None = None, max_hops: int = 20) -> Landing:
        for _ in range(max_hops):
            if url.startswith(self.stop_prefix):
                if method == "post":
                    return Landing(url, 200, "", dict(data or {}))
                return Landing(url, 302, "", {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()})
            response = self.session.request(method, url, data=data, allow_redirects=False, timeout=10)
            if response.is_redirect:
                url, method, data = urljoin(url, response.headers["Location"]), "get", None
                continue
            forms = forms_of(response.text)
            auto = forms and "document.forms[0].submit()" in response.text
            if not auto:
                return Landing(url, response.status_code, response.text, {})
            form = forms[0]
            url, method, data = urljoin(url, form.action), form.method, form.fields
        raise AssertionError("too many hops")

    def submit(self, landing: Landing, values: dict[str, str], form_index: int = 0) -> Landing:
        """Fill and submit a form of the page we stopped on."""
        form = forms_of(landing.text)[form_index]
        return self.go(urljoin(landing.url, form.action or landing.url), form.method, {**form.fields, **values})
