"""Who may enter the console: a staff session (signed in with MFA) whose holder has a staff role right now."""
from __future__ import annotations

from functools import wraps

from flask import g, redirect, request, url_for
from flask_babel import lazy_gettext as _l

from app.domain.actors import Actor
from app.domain.identity import SignedInUser
from app.domain.sessions import SessionKind
from app.domain.staff import shows_mfa
from app.services.sessions import owner_of
from app.web import client_address, current_session, services
from app.web.errors import error_page

STAFF_ONLY = (_l("Staff only"),
              _l("These pages are for the IT service desk. Sign in to the service desk console with your staff "
                 "account and its second factor; the student sign-in (password only) does not open them."))
NO_MFA = (_l("Sign-in without a second factor"),
          _l("The service desk console needs a sign-in with multi-factor authentication, and this sign-in did not "
             "use one. Nothing was changed. Sign in again and confirm with your second factor."))
NO_ROLE = (_l("No service desk role"),
           _l("Your account is not in the service desk's or the auditors' group (any more). Nothing was changed. "
              "Ask the console's owner if you need access."))
READ_ONLY = (_l("Read only"),
             _l("Your role (auditor) can read the console but not change anything. Nothing was changed."))


def _refuse(upn: str | None, code: str, page: tuple, status: int = 403, *, kind: SessionKind = SessionKind.STAFF,
            **detail):
    """Audit a refused way into the console (as the session's owner) and show its page (never raises)."""
    actor = owner_of(kind, upn) if upn else Actor.visitor(client_address())
    try:
        services().store.audit(actor, "helpdesk.refused", None, outcome="refused", refusal=code,
                               client=client_address(), method=request.method, path=request.path[:200],
                               severity="warning", **detail)
    except Exception:  # the refusal page must still be shown
        pass
    return error_page(status, *page)


def admission_refused(user: SignedInUser):
    """Return the 403 page when a staff sign-in shows no MFA or its holder has no role; else None."""
    if not shows_mfa(user.claims):
        return _refuse(user.upn, "no_mfa", NO_MFA)
    if services().helpdesk.staff_member(user.upn) is None:
        return _refuse(user.upn, "no_role", NO_ROLE)
    return None


def staff_required(view):
    """Let in a staff session with MFA whose holder has a role now (re-read from the directory each request).

    Visitors are sent to the staff sign-in; a student session or a staff session without MFA gets a 403.
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        record = current_session()
        if record is None:
            return redirect(url_for("auth.staff_sign_in"))
        if record.kind is not SessionKind.STAFF or not record.mfa:
            return _refuse(record.upn, "not_staff", STAFF_ONLY, kind=record.kind, session_kind=record.kind.value,
                           mfa=record.mfa)
        member = services().helpdesk.staff_member(record.upn)
        if member is None:  # the role was taken away while signed in
            return _refuse(record.upn, "role_removed", NO_ROLE)
        g.staff = member
        return view(*args, **kwargs)

    return wrapper
