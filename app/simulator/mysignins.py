"""My Sign-Ins (mysignins.microsoft.com/security-info, aka.ms/mfasetup): the registration ("proof-up") page.

Sign-in goes to the simulated Entra as the first-party My Sign-Ins app; Entra federates the university's
domain to AD FS for the Microsoft 365 relying party, where the loop happens. Once signed in, a student can
add Microsoft Authenticator (a button stands in for scanning the QR code) or a phone; the new method
shows in Graph after `method_delay_seconds`.
"""
from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, render_template, request

from app.simulator.clients import AUTHENTICATOR_APP_ID, MY_SIGNINS_APP_ID
from app.simulator.context import sim

COOKIE = "MySignInsSession"
COOKIE_PATH = "/security-info"
SESSION_LIFETIME = 3600
PHONE_PATTERN = re.compile(r"^\+[1-9][0-9 ]{6,18}[0-9]$")

bp = Blueprint("mysignins", __name__, url_prefix="/security-info")


@dataclass(frozen=True)
class Visit:
    user_id: str
    csrf: str


@dataclass(frozen=True)
class PendingVisit:
    domain_hint: str


MOBILE_AGENT = re.compile(r"Mobi|Android|iPhone|iPad|iPod", re.IGNORECASE)


def current_visit() -> Visit | None:
    found = sim().sessions.get(request.cookies.get(COOKIE))
    return found if isinstance(found, Visit) else None


def callback_url() -> str:
    return sim().base_url + "/security-info/callback"


@bp.get("", strict_slashes=False)
def security_info():
    """Show the signed-in visitor's methods.

    A live visit wins over login_hint, and without one the Entra session signs the browser in again
    silently: the next person at a shared browser lands in the previous person's Security info, with
    "Add sign-in method" (issue 13). Only Entra's sign-out (or closing a private window) ends both.
    """
    visit = current_visit()
    if visit is None:
        return sign_in()
    world = sim().world
    user = world.users[visit.user_id]
    methods = [m for m in world.registered_methods(user.id) if m.kind != "password"]
    return Response(render_template("mysignins.html", user=user, methods=methods, csrf=visit.csrf,
                                    added=request.args.get("added", ""),
                                    logout_url=f"{sim().base_url}/{sim().seed.tenant_id}/oauth2/v2.0/logout"),
                    headers={"Cache-Control": "no-store"})


def sign_in() -> Response:
    """Send the browser to Entra as My Sign-Ins does; whr/domain_hint or login_hint skip the username page."""
    simulator = sim()
    hint = request.args.get("whr") or request.args.get("domain_hint") or ""
    login_hint = request.args.get("login_hint", "")
    state = simulator.pending.put(PendingVisit(hint), 1800)
    query = {"client_id": MY_SIGNINS_APP_ID, "redirect_uri": callback_url(), "response_type": "code",
             "response_mode": "query", "scope": "openid profile", "state": state}
    if hint:
        query["domain_hint"] = hint
    if login_hint:
        query["login_hint"] = login_hint
    tenant = request.args.get("tenant") or simulator.seed.tenant_id
    return redirect(f"{simulator.base_url}/{tenant}/oauth2/v2.0/authorize?{urlencode(query)}")


@bp.get("/callback")
def callback():
    """Redeem the code inside the simulator (My Sign-Ins is first-party) and open the page."""
    simulator = sim()
    if simulator.pending.pop(request.args.get("state")) is None:
        return redirect(COOKIE_PATH)
    with simulator.world.lock:
        grant = simulator.codes.get(request.args.get("code", ""))
        usable = (grant is not None and not grant.redeemed and grant.request.client_id == MY_SIGNINS_APP_ID
                  and grant.expires_at > simulator.world.clock.time())
        if usable:
            grant.redeemed = True
    user = simulator.world.find_user(grant.upn) if usable else None
    if user is None:
        return Response(render_template("entra_error.html", code=9002313, correlation="",
                                        message="Invalid request. Request is malformed or invalid."), status=400)
    handle = simulator.sessions.put(Visit(user.id, secrets.token_urlsafe(24)), SESSION_LIFETIME)
    response = redirect(COOKIE_PATH)
    response.set_cookie(COOKIE, handle, path=COOKIE_PATH, secure=True, httponly=True, samesite="Lax")
    return response


def form_visit() -> Visit | None:
    """Return the visit; for a POST only when the form carries the visit's CSRF token."""
    visit = current_visit()
    if visit is None or request.method == "GET":
        return visit
    return visit if hmac.compare_digest(request.form.get("csrf", ""), visit.csrf) else None


@bp.route("/add/authenticator", methods=["GET", "POST"])
def add_authenticator():
    visit = form_visit()
    if visit is None:
        return redirect(COOKIE_PATH)
    if request.method == "GET":
        pairing = secrets.token_hex(4).upper()
        # On a phone My Sign-Ins offers a link that pairs the app on the same device instead of a QR code.
        phone = bool(MOBILE_AGENT.search(request.headers.get("User-Agent", "")))
        return Response(render_template("mysignins_authenticator.html", csrf=visit.csrf, pairing=pairing,
                                        phone=phone), headers={"Cache-Control": "no-store"})
    world = sim().world
    world.add_method(visit.user_id, "microsoftAuthenticator")
    world.record_sign_in(visit.user_id, AUTHENTICATOR_APP_ID, "Microsoft Authenticator App")
    return redirect(COOKIE_PATH + "?added=microsoftAuthenticator")


@bp.route("/add/phone", methods=["GET", "POST"])
def add_phone():
    visit = form_visit()
    if visit is None:
        return redirect(COOKIE_PATH)
    if request.method == "GET":
        return Response(render_template("mysignins_phone.html", csrf=visit.csrf, error="", number=""),
                        headers={"Cache-Control": "no-store"})
    number = request.form.get("phone", "").strip()
    if not PHONE_PATTERN.match(number):
        return Response(render_template("mysignins_phone.html", csrf=visit.csrf, number=number,
                                        error="Enter the number with its country code, like +44 7700 900123."),
                        status=400)
    world = sim().world
    if any(m.kind == "phone" for m in world.registered_methods(visit.user_id)):
        return Response(render_template("mysignins_phone.html", csrf=visit.csrf, number=number,
                                        error="You already have a phone registered."), status=400)
    world.add_method(visit.user_id, "phone", details={"phoneNumber": number, "phoneType": "mobile",
                                                      "smsSignInState": "notAllowedByPolicy"})
    return redirect(COOKIE_PATH + "?added=phone")
