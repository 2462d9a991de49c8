"""The words the pages use for states and methods, in one place so they are translated once."""
from __future__ import annotations

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
EXPLANATIONS = {
    "half_registered": (
        _l("You are stuck in the sign-in loop"),
        _l("You signed in to the Microsoft Authenticator app before MFA was switched on for you, but no "
           "verification method is registered. That is why the AD FS page keeps sending you round in a loop."),
        _l("Unlock your account for a short time, then register the Authenticator app on the My Sign-Ins page."),
    ),
    "unregistered": (
        _l("You still need to register a verification method"),
        _l("MFA is switched on for you, but you have not registered any verification method yet."),
        _l("Unlock your account for a short time, then register the Authenticator app on the My Sign-Ins page."),
    ),
    "has_strong_method": (
        _l("You are registered"),
        _l("You already have a verification method, so you do not need this portal. If you cannot sign in, "
           "use the method listed below, or contact the IT service desk if you lost it."),
        "",
    ),
    "grant_released": (
        _l("All done: you are registered and fully protected"),
        _l("Your verification method is registered and your temporary unlock has been removed."),
        "",
    ),
    "grant_open": (
        _l("Your account is unlocked for a short time"),
        _l("You can register your verification method now."),
        _l("Continue with the steps."),
    ),
    "grant_expired": (
        _l("Your last unlock ran out before a method was registered"),
        _l("Your account is protected again, but you still have no verification method."),
        _l("Unlock it again and register the Authenticator app."),
    ),
    "not_in_required_group": (
        _l("MFA is not required for you yet"),
        _l("Your account is not in a group that requires multi-factor authentication, so the sign-in loop "
           "cannot be the problem. Nothing needs to be done here."),
        "",
    ),
    "privileged": (
        _l("This portal cannot unlock administrator accounts"),
        _l("Your account has administrative rights. For your and the university's security it can only be "
           "helped in person."),
        _l("Contact the IT service desk."),
    ),
    "disabled": (
        _l("Your account is disabled"),
        _l("A disabled account cannot sign in, with or without MFA."),
        _l("Contact the IT service desk to have it enabled."),
    ),
    "out_of_scope": (
        _l("This portal does not serve your account"),
        _l("Your account lies outside the part of the directory this portal looks after."),
        _l("Contact the IT service desk."),
    ),
    "missing_in_ad": (
        _l("We could not find your account in the university directory"),
        _l("Your sign-in worked, but no matching account exists in Active Directory."),
        _l("Contact the IT service desk and tell them the account name shown above."),
    ),
    "missing_in_entra": (
        _l("Your account has not reached Microsoft Entra ID yet"),
        _l("New accounts take a while to be copied to Microsoft's cloud. Until then there is nothing to "
           "register."),
        _l("Try again tomorrow; if it still fails, contact the IT service desk."),
    ),
}

STATE_LABELS = {
    "not_required": _l("MFA not required"),
    "registered": _l("Registered"),
    "stuck": _l("Stuck"),
    "ineligible": _l("Cannot be unlocked here"),
    "unlocked": _l("Unlocked for registration"),
    "completed": _l("Done"),
    "expired": _l("Unlock ran out"),
}

# What the guide page's live status says in each phase of the grant.
PHASE_TEXTS = {
    "propagating": _l("Unlocking your account on every university server. This can take a minute; you can start "
                      "with step 1 meanwhile."),
    "waiting": _l("Your account is unlocked. Waiting for your new verification method…"),
    "checking": _l("Still checking with Microsoft. This can take a moment."),
    "done": _l("Done! Your verification method is registered and your account is fully protected again."),
    "expired": _l("Your unlock ran out before a method was registered. Go back to your status to unlock again."),
    "cancelled": _l("Cancelled. Your account is locked again."),
    "failed": _l("The unlock did not work. Nothing is left changed; go back to your status and try again."),
    "none": _l("Your account is not unlocked."),
}
