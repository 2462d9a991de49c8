"""The Temporary Access Pass remedy, pure: the tenant's policy, which remedies the portal offers, Graph's refusals.

Facts from learn.microsoft.com ("Configure Temporary Access Pass"; Graph's
temporaryAccessPassAuthenticationMethodConfiguration) and DOMAIN.md section 7.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from app.domain.evidence import GraphError

ALL_USERS = "all_users"  # the includeTarget id Entra uses for "every user in the tenant"
GRAPH_TAP_MINUTES = (10, 43200)  # what Graph accepts at all; the tenant's policy narrows it
# Enforced by the federated IdP: Entra may still send a TAP user to AD FS for MFA, which AD FS cannot do with
# a TAP (the Azure MFA adapter does not know it).
ENFORCE_MFA_BY_FEDERATED_IDP = "enforceMfaByFederatedIdp"
# Graph's answer when the policy does not cover the user (azure-docs issue #111778).
POLICY_REFUSAL_TEXT = "Converged UserCredentialPolicy does not allow"
LIFETIME_REFUSAL_TEXT = "LifetimeInMinutes"


class Remedy(str, Enum):
    """A way through the loop: the bypass group for a while, or a Temporary Access Pass."""

    BYPASS = "bypass"
    TAP = "tap"


# PROOFUP_REMEDY -> the remedies it allows, the preferred first (a TAP is the narrower opening).
REMEDY_SETTINGS: dict[str, tuple[Remedy, ...]] = {
    "bypass": (Remedy.BYPASS,),
    "tap": (Remedy.TAP,),
    "both": (Remedy.TAP, Remedy.BYPASS),
}


@dataclass(frozen=True)
class TapPolicy:
    """The tenant's Temporary Access Pass policy as Graph reports it."""

    enabled: bool
    include_group_ids: tuple[str, ...] = (ALL_USERS,)
    exclude_group_ids: tuple[str, ...] = ()
    minimum_minutes: int = 60
    maximum_minutes: int = 480
    default_minutes: int = 60
    usable_once: bool = False
    default_length: int = 8

    @property
    def names_groups(self) -> tuple[str, ...]:
        """Return the group ids whose membership decides whether a user is covered (none: everyone is)."""
        included = () if ALL_USERS in self.include_group_ids else self.include_group_ids
        return tuple(dict.fromkeys((*included, *self.exclude_group_ids)))

    def covers(self, member_of: frozenset[str]) -> bool:
        """Tell whether the policy lets a member of these groups (of names_groups) have a pass; exclusions win."""
        if not self.enabled or member_of & set(self.exclude_group_ids):
            return False
        return ALL_USERS in self.include_group_ids or bool(member_of & set(self.include_group_ids))

    def lifetime_for(self, task_minutes: int) -> int:
        """Return the shortest lifetime the policy allows that fits the task (the longest allowed if none does)."""
        low = max(self.minimum_minutes, GRAPH_TAP_MINUTES[0])
        high = min(self.maximum_minutes, GRAPH_TAP_MINUTES[1])
        return max(low, min(task_minutes, high))

    def summary(self) -> str:
        """Describe the policy in one line (for doctor and the desk)."""
        if not self.enabled:
            return "disabled"
        who = "all users" if not self.names_groups else (
            f"{len(self.include_group_ids)} included group(s), {len(self.exclude_group_ids)} excluded")
        return (f"enabled for {who}; lifetime {self.minimum_minutes} to {self.maximum_minutes} min "
                f"(default {self.default_minutes}); {'one-time only' if self.usable_once else 'one-time or reusable'}"
                f"; {self.default_length} characters")


class TapRefusal(str, Enum):
    """Why no pass was created (the code the pages, the audit trail and the fallback go by)."""

    NOT_CONFIGURED = "tap_not_configured"  # PROOFUP_REMEDY does not allow a TAP
    DISABLED = "tap_disabled"  # the tenant's policy is off
    OUT_OF_SCOPE = "tap_out_of_scope"  # the policy does not cover this student
    LIFETIME = "tap_lifetime"  # Graph refused the lifetime (the policy changed since it was read)
    THROTTLED = "tap_throttled"  # Graph asked to wait
    UNAVAILABLE = "tap_unavailable"  # Graph did not answer, or the policy could not be read


def refusal_for(error: GraphError) -> TapRefusal:
    """Classify Graph's answer to a failed pass creation."""
    said = f"{error} {getattr(error, 'graph_message', '')}"
    if error.status == 429:
        return TapRefusal.THROTTLED
    if POLICY_REFUSAL_TEXT in said:
        return TapRefusal.OUT_OF_SCOPE
    if error.status == 400 and LIFETIME_REFUSAL_TEXT in said:
        return TapRefusal.LIFETIME
    return TapRefusal.UNAVAILABLE


def tap_refusal(policy: TapPolicy | None, member_of: frozenset[str] | None) -> TapRefusal | None:
    """Return why the tenant would refuse a pass for this student (None: it allows one).

    `policy` None means it could not be read; `member_of` None means the groups it names were not checked.
    """
    if policy is None:
        return TapRefusal.UNAVAILABLE
    if not policy.enabled:
        return TapRefusal.DISABLED
    if policy.names_groups and member_of is None:
        return TapRefusal.UNAVAILABLE
    if not policy.covers(member_of or frozenset()):
        return TapRefusal.OUT_OF_SCOPE
    return None
