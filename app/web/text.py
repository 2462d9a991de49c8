"""The words the pages use for states, steps and methods, in one place so they are reviewed and translated once.

Plain words for a first-year student: say what happens to their account, never the machinery behind it
(no AD FS, Entra, MFA or groups; "set-up time" rather than "unlock"). The service desk's words stay in the
folded details block of the diagnosis page.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from flask_babel import format_time, get_locale, get_timezone, ngettext
from flask_babel import lazy_gettext as _l

METHOD_LABELS = {
    "password": _l("Password"),
    "microsoftAuthenticator": _l("Microsoft Authenticator app"),
    "phone": _l("Phone (text message or call)"),
    "fido2": _l("Security key (FIDO2)"),
    "softwareOath": _l("Authenticator app code (OATH)"),
    "windowsHelloForBusiness": _l("Windows Hello for Business"),
    "temporaryAccessPass": _l("Temporary Access Pass"),
    "email": _l("Email (password reset only)"),
    "platformCredential": _l("Platform credential (macOS)"),
    "hardwareOath": _l("Hardware token code (OATH)"),
    "qrCodePin": _l("QR code and PIN (sign-in only)"),
    "externalAuthentication": _l("External verification method"),
    "resourceAccountKey": _l("Resource account key"),
    "unknown": _l("Unknown method"),
}

# (headline, explanation, what to do next) per reason; the reason decides, the state groups them.
# %(minutes)s is the length of the set-up time (PROOFUP_GRANT_MINUTES).
SET_UP_NEXT = _l("We can switch off the extra sign-in check for your account for up to %(minutes)s minutes, so "
                 "that you can set up the app.")
EXPLANATIONS = {
    "half_registered": (
        _l("You are stuck in the sign-in loop"),
        _l("You signed in to the Microsoft Authenticator app before your account needed it, but the app was "
           "never set up for your account. That is why the sign-in page keeps sending you round in circles."),
        SET_UP_NEXT,
    ),
    "unregistered": (
        _l("You have not set up the Authenticator app yet"),
        _l("Your account needs an extra sign-in check, but no app or phone is set up for it yet, so the sign-in "
           "page cannot let you in."),
        SET_UP_NEXT,
    ),
    "has_strong_method": (
        _l("You are all set"),
        _l("Your account already has a way to confirm that it is you, so you do not need this page. If you "
           "still cannot sign in, or you lost your phone, the service desk can help."),
        "",
    ),
    "grant_released": (
        _l("All done: the app is set up"),
        _l("Your account is fully protected again: from now on you confirm each sign-in in the app."),
        "",
    ),
    "grant_open": (
        _l("You have time to set up the app now"),
        _l("The extra sign-in check is switched off for your account for a short time."),
        _l("Carry on with the steps."),
    ),
    "grant_expired": (
        _l("Your time to set up the app ran out"),
        _l("The extra sign-in check is on again, but the app is still not set up."),
        _l("Start again: you get another %(minutes)s minutes."),
    ),
    "not_in_required_group": (
        _l("Your account does not need the app yet"),
        _l("Your account does not ask for an extra sign-in check yet, so the sign-in loop cannot come from "
           "here. There is nothing to do on this page."),
        _l("If signing in still fails, the service desk can help."),
    ),
    "privileged": (
        _l("We cannot help administrator accounts here"),
        _l("Your account has administrator rights. To keep everyone safe, it can only be helped in person."),
        _l("Please contact the service desk."),
    ),
    "disabled": (
        _l("Your account is switched off"),
        _l("A switched-off account cannot sign in at all."),
        _l("Please contact the service desk to have it switched on again."),
    ),
    "out_of_scope": (
        _l("This page cannot help with your account"),
        _l("Your account belongs to a part of the university that this page does not look after."),
        _l("Please contact the service desk."),
    ),
    "missing_in_ad": (
        _l("We could not find your account"),
        _l("Your sign-in worked, but we cannot find a matching account in the university's records."),
        _l("Please contact the service desk and give them your reference code."),
    ),
    "missing_in_entra": (
        _l("Your account is not ready at Microsoft yet"),
        _l("New accounts take up to a day to reach Microsoft 365. Until then there is nothing to set up."),
        _l("Try again tomorrow. If it still does not work, please contact the service desk."),
    ),
}

# Dead ends: nothing the student can do here, so the desk's contact stands on the page itself.
DEAD_ENDS = frozenset({"privileged", "disabled", "out_of_scope", "missing_in_ad", "missing_in_entra",
                       "not_in_required_group", "has_strong_method"})

STATE_LABELS = {
    "not_required": _l("No app needed yet"),
    "registered": _l("All set"),
    "stuck": _l("Stuck"),
    "ineligible": _l("Needs the service desk"),
    "unlocked": _l("Time to set up the app"),
    "completed": _l("Done"),
    "expired": _l("Time ran out"),
}

# What the guide page's live status says in each phase of the grant.
PHASE_TEXTS = {
    "propagating": _l("Getting your account ready on all university servers. This can take a minute; you can "
                      "start with step 1 meanwhile."),
    "waiting": _l("Ready: set up the app now. This page notices by itself when you are done."),
    "checking": _l("Still checking with Microsoft. This can take a moment."),
    "done": _l("Done! The app is set up and your account is fully protected again."),
    "expired": _l("Your time ran out before the app was set up. Go to your status page to start again."),
    "cancelled": _l("Stopped. The extra sign-in check is on again."),
    "failed": _l("That did not work. Nothing was changed; go to your status page and try again."),
    "none": _l("The extra sign-in check is on for your account."),
}

# What "check now" says while it asks and when the app is not there yet.
CHECK_TEXTS = {
    "busy": _l("Checking…"),
    "not_yet": _l("Checked just now: not there yet. If you have finished in the app, wait a moment: Microsoft "
                  "can take a minute to show it. This page keeps checking by itself."),
    "offline": _l("We could not check just now. This page keeps trying by itself."),
}

WARN_BEFORE_END_SECONDS = 5 * 60  # the status warns this long before the set-up time runs out


def time_left_text(expires_at: datetime, minutes: int) -> str:
    """Say when the set-up time ends, in the university's time zone, and how many minutes are left."""
    at = format_time(expires_at, "short")
    if minutes < 1:
        return str(_l("Your set-up time ends at %(time)s (in less than a minute).", time=at))
    return ngettext("Your set-up time ends at %(time)s (in %(num)s minute).",
                    "Your set-up time ends at %(time)s (in %(num)s minutes).", minutes, time=at)


def status_words(key: str, ends_at: datetime | None, minutes: int) -> tuple[str, str, str]:
    """Return the live status's sentence, its time-left line and its warning, in the page's language.

    The guide polls every 2 s and these words change once a minute at most, so they are made once per
    language, time zone, phase, end and minute: formatting through Babel was a third of a poll's cost.
    """
    return _status_words(get_locale(), get_timezone(), key, ends_at, minutes)


@lru_cache(maxsize=4096)  # a few thousand students' open grants, each a minute at a time
def _status_words(_locale: object, _zone: object, key: str, ends_at: datetime | None, minutes: int) -> tuple[str, str, str]:
    # The locale and zone are the request's (they key the cache); Babel reads them from the request again.
    sentence = str(PHASE_TEXTS[key])
    if ends_at is None:
        return sentence, "", ""
    warning = ending_soon_text(minutes) if minutes * 60 <= WARN_BEFORE_END_SECONDS else ""
    return sentence, time_left_text(ends_at, minutes), warning


def still_runs_text(until: datetime, minutes: int) -> str:
    """Tell a student who was signed out that their set-up time still runs, until when and for how long."""
    return ngettext("Your set-up time still runs until %(time)s (in %(num)s minute).",
                    "Your set-up time still runs until %(time)s (in %(num)s minutes).", max(minutes, 1),
                    time=format_time(until, "short"))


def ending_soon_text(minutes: int) -> str:
    """Warn that the set-up time is nearly over (no way to extend it exists: say what happens instead)."""
    return ngettext("Only %(num)s minute left. If the time runs out before the app is set up, start again "
                    "from your status page.",
                    "Only %(num)s minutes left. If the time runs out before the app is set up, start again "
                    "from your status page.", max(minutes, 1))
