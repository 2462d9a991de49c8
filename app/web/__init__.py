"""Blueprints by audience, and what every view shares: the services and the signed-in student."""
from __future__ import annotations

from functools import wraps

from flask import current_app, redirect, session, url_for

from app.domain.actors import Actor
from app.domain.upn import Upn


def services():
    """Return the Services the app was built with."""
    return current_app.extensions["proofup"]


def signed_in_upn() -> Upn | None:
    """Return the UPN of the signed-in student, or None."""
    return Upn.parse(session.get("upn"))


def signed_in_actor() -> Actor:
    """Return the signed-in student as the actor of their own requests (login_required views only)."""
    upn = signed_in_upn()
    if upn is None:
        raise RuntimeError("signed_in_actor() outside a login_required view")
    return Actor.student(upn)


def login_required(view):
    """Send visitors who are not signed in to the start page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in_upn():
            return redirect(url_for("student.index"))
        return view(*args, **kwargs)

    return wrapper
