"""Principal resolution, capabilities and the authorization decision."""

import enum
from uuid import UUID

import msgspec

from fernd.domain.constants import INTERNAL_ISSUER, INTERNAL_USER_PREFIX
from fernd.domain.enums import Capability, SubscriberRole, SubscriberStatus
from fernd.domain.errors import AuthorizationDenied
from fernd.domain.labour import Labour, Subscription


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated user behind a request."""

    user_id: str
    issuer: str
    is_admin: bool = False

    @property
    def is_internal(self) -> bool:
        # Only fernd itself mints internal users; a provider token never does.
        return self.issuer == INTERNAL_ISSUER and self.user_id.startswith(
            INTERNAL_USER_PREFIX
        )


class PrincipalKind(enum.Enum):
    MOTHER = "Mother"
    SUBSCRIBER = "Subscriber"
    INTERNAL = "Internal"
    UNASSOCIATED = "Unassociated"


class Principal(msgspec.Struct, frozen=True):
    kind: PrincipalKind
    subscription: Subscription | None = None

    @property
    def is_mother(self) -> bool:
        return self.kind is PrincipalKind.MOTHER

    @property
    def is_subscribed(self) -> bool:
        return (
            self.subscription is not None
            and self.subscription.status is SubscriberStatus.SUBSCRIBED
        )

    @property
    def is_birth_partner(self) -> bool:
        return (
            self.is_subscribed
            and self.subscription is not None
            and self.subscription.role is SubscriberRole.BIRTH_PARTNER
        )

    @property
    def sees_private_notes(self) -> bool:
        """Private notes are visible to the mother and birth partners only."""
        return self.is_mother or self.is_birth_partner


UNASSOCIATED = Principal(PrincipalKind.UNASSOCIATED)

_MOTHER_CAPABILITIES = frozenset(
    {
        Capability.AdvanceLabourPhase,
        Capability.ManageLabour,
        Capability.ExecuteLabourCommand,
        Capability.ReadLabour,
        Capability.ManageLabourSubscriptions,
        Capability.ReadSubscriptions,
    }
)
_BIRTH_PARTNER_CAPABILITIES = frozenset(
    {
        Capability.ExecuteLabourCommand,
        Capability.ReadLabour,
        Capability.ManageOwnSubscription,
        Capability.ReadOwnSubscription,
    }
)
_FOLLOWER_CAPABILITIES = frozenset(
    {
        Capability.ReadLabour,
        Capability.ManageOwnSubscription,
        Capability.ReadOwnSubscription,
    }
)
_INTERNAL_CAPABILITIES = frozenset(
    {
        Capability.AdvanceLabourPhase,
        Capability.PostApplicationLabourUpdates,
        Capability.ManageSubscriptionToken,
        Capability.UpdateSubscriptionAccessLevel,
    }
)
_ADMIN_CAPABILITIES = frozenset(
    {Capability.Administer, Capability.UpdateSubscriptionAccessLevel}
)

# Actions an administrator may run on any labour whatever their principal.
_ADMIN_ACTIONS = frozenset({"UpdateAccessLevel", "RebuildReadModels"})
# Actions whose subscription_id must name the caller's own subscription.
_OWN_SUBSCRIPTION_ACTIONS = frozenset({"Unsubscribe", "UpdateNotificationMethods"})


def resolve_principal(labour: Labour | None, caller: Caller) -> Principal:
    """Return the caller's relation to `labour`; the first matching rule wins."""
    if labour is None:
        return UNASSOCIATED
    if caller.user_id == labour.mother_id:
        return Principal(PrincipalKind.MOTHER)
    if caller.is_internal:
        return Principal(PrincipalKind.INTERNAL)
    subscription = labour.subscription_of(caller.user_id)
    if subscription is not None:
        return Principal(PrincipalKind.SUBSCRIBER, subscription)
    return UNASSOCIATED


def capabilities(principal: Principal, caller: Caller) -> frozenset[Capability]:
    """Return every capability `principal` holds, administrator rights included."""
    match principal.kind:
        case PrincipalKind.MOTHER:
            held = _MOTHER_CAPABILITIES
        case PrincipalKind.INTERNAL:
            held = _INTERNAL_CAPABILITIES
        case PrincipalKind.SUBSCRIBER if principal.is_birth_partner:
            held = _BIRTH_PARTNER_CAPABILITIES
        case PrincipalKind.SUBSCRIBER if principal.is_subscribed:
            held = _FOLLOWER_CAPABILITIES
        case _:
            held = frozenset()
    if caller.is_admin:
        held = held | _ADMIN_CAPABILITIES
    return held


def authorize(
    labour: Labour | None,
    caller: Caller,
    action: str,
    capability: Capability,
    subscription_id: UUID | None = None,
) -> Principal:
    """Decide whether `caller` may run `action`, which needs `capability`.

    `subscription_id` is the subscription an own-subscription action names.
    Returns the caller's principal; raises AuthorizationDenied otherwise.
    """
    principal = resolve_principal(labour, caller)
    if action == "RequestAccess":
        return principal
    if caller.is_admin and action in _ADMIN_ACTIONS:
        return principal

    match principal.kind:
        case PrincipalKind.MOTHER | PrincipalKind.INTERNAL:
            if capability not in capabilities(principal, caller):
                raise AuthorizationDenied.missing_capability(capability)
        case PrincipalKind.SUBSCRIBER:
            assert principal.subscription is not None
            if principal.subscription.status is not SubscriberStatus.SUBSCRIBED:
                raise AuthorizationDenied.unassociated()
            if capability not in capabilities(principal, caller):
                raise AuthorizationDenied.missing_capability(capability)
            if (
                action in _OWN_SUBSCRIPTION_ACTIONS
                and subscription_id != principal.subscription.id
            ):
                raise AuthorizationDenied.cannot_target_others()
        case PrincipalKind.UNASSOCIATED:
            if action != "PlanLabour":
                raise AuthorizationDenied.unassociated()
    return principal
