"""Authorization: principal resolution, every cell of the action matrix,
ownership of subscriptions, internal and administrator callers, and who sees
private notes.

Deny texts follow the decision procedure. The mother, internal users and
SUBSCRIBED subscribers are told which capability they lack. Subscribers in
any other status and unassociated callers are told they are not associated.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import pytest

from fernd.domain import commands as cmd
from fernd.domain.authorization import (
    Caller,
    PrincipalKind,
    authorize,
    resolve_principal,
)
from fernd.domain.enums import (
    Capability,
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
    SubscriberStatus,
)
from fernd.domain.errors import AuthorizationDenied, LabourError
from fernd.domain.handlers import CommandContext, decide
from fernd.domain.labour import Labour, encode_snapshot

from .builders import (
    ADMIN,
    DUE_DATE,
    INTERNAL,
    LOVED_ONE,
    MOTHER,
    PARTNER,
    PROVIDER_ISSUER,
    STRANGER,
    SUPPORTER,
    T0,
    TOKEN,
    UNKNOWN_ID,
    SequentialIds,
    assert_error,
    command,
    planned_scenario,
)

NOT_ASSOCIATED = "Not associated with this labour"
CANNOT_TARGET_OTHERS = "Can only manage your own subscription"


@dataclass(frozen=True)
class Party:
    """A caller with a known relation to the test labour."""

    key: str
    caller: Caller
    # Denied actions name the missing capability instead of "not associated".
    names_capability: bool


MOTHER_PARTY = Party("mother", MOTHER, names_capability=True)
PARTNER_PARTY = Party("birth_partner", PARTNER, names_capability=True)
SUPPORTER_PARTY = Party("support_person", SUPPORTER, names_capability=True)
LOVED_ONE_PARTY = Party("loved_one", LOVED_ONE, names_capability=True)
NOT_SUBSCRIBED_PARTIES = [
    Party(
        status.value.lower(),
        Caller(user_id=f"user-{status.value.lower()}", issuer=PROVIDER_ISSUER),
        names_capability=False,
    )
    for status in (
        SubscriberStatus.REQUESTED,
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.REMOVED,
        SubscriberStatus.BLOCKED,
    )
]
INTERNAL_PARTY = Party("internal", INTERNAL, names_capability=True)
UNASSOCIATED_PARTY = Party("unassociated", STRANGER, names_capability=False)
# An administrator with no other relation to the labour.
ADMIN_PARTY = Party("admin", ADMIN, names_capability=False)

PARTIES = [
    MOTHER_PARTY,
    PARTNER_PARTY,
    SUPPORTER_PARTY,
    LOVED_ONE_PARTY,
    *NOT_SUBSCRIBED_PARTIES,
    INTERNAL_PARTY,
    UNASSOCIATED_PARTY,
    ADMIN_PARTY,
]
FOLLOWERS = {"birth_partner", "support_person", "loved_one"}
READERS = {"mother", *FOLLOWERS}
EVERYONE = {party.key for party in PARTIES}


def build_labour() -> tuple[Labour, dict[str, UUID]]:
    """Return a labour containing every kind of party, and the subscription id of
    each party that has one."""
    scenario = planned_scenario()
    subscription_ids = {
        "birth_partner": scenario.add_subscriber(
            PARTNER, role=SubscriberRole.BIRTH_PARTNER
        ),
        "support_person": scenario.add_subscriber(
            SUPPORTER, role=SubscriberRole.SUPPORT_PERSON
        ),
        "loved_one": scenario.add_subscriber(LOVED_ONE),
    }
    # Birth partners in every other status: the status decides, not the role.
    for party, status in zip(
        NOT_SUBSCRIBED_PARTIES,
        (
            SubscriberStatus.REQUESTED,
            SubscriberStatus.UNSUBSCRIBED,
            SubscriberStatus.REMOVED,
            SubscriberStatus.BLOCKED,
        ),
        strict=True,
    ):
        subscription_ids[party.key] = scenario.add_subscriber(
            party.caller, status, SubscriberRole.BIRTH_PARTNER
        )
    return scenario.state, subscription_ids


@pytest.fixture(scope="module")
def labour_and_ids() -> tuple[Labour, dict[str, UUID]]:
    return build_labour()


@dataclass(frozen=True)
class Action:
    name: str
    capability: Capability
    allowed: frozenset[str]


def action(name: str, capability: Capability, allowed: set[str]) -> Action:
    return Action(name, capability, frozenset(allowed))


MANAGE = Capability.ManageLabour
EXECUTE = Capability.ExecuteLabourCommand
MANAGE_SUBSCRIPTIONS = Capability.ManageLabourSubscriptions

# The action matrix. The admin column is an administrator who is otherwise
# unassociated, so it also gets what any unassociated caller gets
# (PlanLabour and RequestAccess).
ACTIONS = [
    action("PlanLabour", MANAGE, {"mother", "unassociated", "admin"}),
    action("UpdateLabourPlan", MANAGE, {"mother"}),
    action("BeginLabour", MANAGE, {"mother"}),
    action("CompleteLabour", MANAGE, {"mother"}),
    action("DeleteLabour", MANAGE, {"mother"}),
    action("SendLabourInvite", MANAGE, {"mother"}),
    action("InvalidateSubscriptionToken", MANAGE, {"mother"}),
    action("StartContraction", EXECUTE, {"mother", "birth_partner"}),
    action("EndContraction", EXECUTE, {"mother", "birth_partner"}),
    action("UpdateContraction", EXECUTE, {"mother", "birth_partner"}),
    action("DeleteContraction", EXECUTE, {"mother", "birth_partner"}),
    action("PostLabourUpdate", EXECUTE, {"mother", "birth_partner"}),
    action("UpdateLabourUpdateMessage", EXECUTE, {"mother", "birth_partner"}),
    action("UpdateLabourUpdateType", EXECUTE, {"mother", "birth_partner"}),
    action("DeleteLabourUpdate", EXECUTE, {"mother", "birth_partner"}),
    action("AdvanceLabourPhase", Capability.AdvanceLabourPhase, {"mother", "internal"}),
    action(
        "PostApplicationLabourUpdate",
        Capability.PostApplicationLabourUpdates,
        {"internal"},
    ),
    action("SetSubscriptionToken", Capability.ManageSubscriptionToken, {"internal"}),
    action("RequestAccess", Capability.ManageOwnSubscription, EVERYONE),
    action("Unsubscribe", Capability.ManageOwnSubscription, FOLLOWERS),
    action("UpdateNotificationMethods", Capability.ManageOwnSubscription, FOLLOWERS),
    action(
        "UpdateAccessLevel",
        Capability.UpdateSubscriptionAccessLevel,
        {"internal", "admin"},
    ),
    action("ApproveSubscriber", MANAGE_SUBSCRIPTIONS, {"mother"}),
    action("RemoveSubscriber", MANAGE_SUBSCRIPTIONS, {"mother"}),
    action("BlockSubscriber", MANAGE_SUBSCRIPTIONS, {"mother"}),
    action("UnblockSubscriber", MANAGE_SUBSCRIPTIONS, {"mother"}),
    action("UpdateSubscriberRole", MANAGE_SUBSCRIPTIONS, {"mother"}),
    action("RebuildReadModels", Capability.Administer, {"admin"}),
    action("GetLabour", Capability.ReadLabour, READERS),
    action("GetContractions", Capability.ReadLabour, READERS),
    action("GetContractionById", Capability.ReadLabour, READERS),
    action("GetContractionStatistics", Capability.ReadLabour, READERS),
    action("GetLabourUpdates", Capability.ReadLabour, READERS),
    action("GetLabourUpdateById", Capability.ReadLabour, READERS),
    action("GetUserSubscription", Capability.ReadOwnSubscription, FOLLOWERS),
    action("GetSubscriptionToken", Capability.ReadSubscriptions, {"mother"}),
    action("GetLabourSubscriptions", Capability.ReadSubscriptions, {"mother"}),
    action("GetUser", Capability.ReadSubscriptions, {"mother"}),
    action("GetUsers", Capability.ReadSubscriptions, {"mother"}),
    action("WebSocketConnect", Capability.ReadLabour, READERS),
]
ACTIONS_BY_NAME = {entry.name: entry for entry in ACTIONS}


def expected_denial(entry: Action, party: Party) -> str | None:
    """Return the deny text the matrix gives `party` for `entry`, or None."""
    if party.key in entry.allowed:
        return None
    if party.names_capability:
        return f"Missing required capability: {entry.capability.value}"
    return NOT_ASSOCIATED


MATRIX_CASES = [
    pytest.param(entry, party, id=f"{entry.name}-{party.key}")
    for entry in ACTIONS
    for party in PARTIES
]


def test_matrix_lists_every_command() -> None:
    command_names = {name for _, name in cmd.PUBLIC_COMMANDS} | set(
        cmd.INTERNAL_COMMANDS
    )

    assert command_names | {"RebuildReadModels"} <= set(ACTIONS_BY_NAME)


def test_matrix_capabilities_match_commands() -> None:
    classes: list[type[cmd.Command] | type[cmd.RebuildReadModels]] = [
        *cmd.PUBLIC_COMMANDS.values(),
        *cmd.INTERNAL_COMMANDS.values(),
        cmd.RebuildReadModels,
    ]

    for cls in classes:
        assert cls.capability is ACTIONS_BY_NAME[cls.name].capability, cls.name


@pytest.mark.parametrize(("entry", "party"), MATRIX_CASES)
def test_authorize_matrix(
    labour_and_ids: tuple[Labour, dict[str, UUID]], entry: Action, party: Party
) -> None:
    labour, subscription_ids = labour_and_ids
    expected = expected_denial(entry, party)

    def run() -> None:
        authorize(
            labour,
            party.caller,
            entry.name,
            entry.capability,
            subscription_id=subscription_ids.get(party.key),
        )

    if expected is None:
        run()
        return
    with pytest.raises(AuthorizationDenied) as caught:
        run()
    assert_error(
        caught.value,
        AuthorizationDenied,
        f"Authorization failed: {expected}",
        "forbidden",
        403,
    )


# The same matrix through decide, for every command


def command_for(name: str, subscription_id: UUID) -> cmd.Command:
    """Return a well-formed command called `name` for the test labour."""
    contraction = UUID("0190f5b8-0000-7000-8000-0000000000aa")
    fields: dict[str, dict[str, object]] = {
        "PlanLabour": {
            "mother_id": MOTHER.user_id,
            "mother_name": "Alice",
            "first_labour": True,
            "due_date": DUE_DATE,
        },
        "UpdateLabourPlan": {"first_labour": False, "due_date": DUE_DATE},
        "CompleteLabour": {},
        "SendLabourInvite": {"invite_email": "friend@example.com"},
        "StartContraction": {"contraction_id": contraction},
        "EndContraction": {"contraction_id": contraction, "intensity": 5},
        "UpdateContraction": {"contraction_id": contraction, "intensity": 5},
        "DeleteContraction": {"contraction_id": contraction},
        "PostLabourUpdate": {
            "labour_update_type": LabourUpdateType.STATUS_UPDATE,
            "message": "Hello",
        },
        "UpdateLabourUpdateMessage": {"labour_update_id": UNKNOWN_ID, "message": "Hi"},
        "UpdateLabourUpdateType": {
            "labour_update_id": UNKNOWN_ID,
            "labour_update_type": LabourUpdateType.PRIVATE_NOTE,
        },
        "DeleteLabourUpdate": {"labour_update_id": UNKNOWN_ID},
        "AdvanceLabourPhase": {"labour_phase": LabourPhase.ACTIVE},
        "PostApplicationLabourUpdate": {"message": "note"},
        "SetSubscriptionToken": {"token": TOKEN},
        "RequestAccess": {"token": TOKEN},
        "Unsubscribe": {"subscription_id": subscription_id},
        "UpdateNotificationMethods": {
            "subscription_id": subscription_id,
            "notification_methods": [SubscriberContactMethod.EMAIL],
        },
        "UpdateAccessLevel": {
            "subscription_id": subscription_id,
            "access_level": SubscriberAccessLevel.SUPPORTER,
        },
        "ApproveSubscriber": {"subscription_id": subscription_id},
        "RemoveSubscriber": {"subscription_id": subscription_id},
        "BlockSubscriber": {"subscription_id": subscription_id},
        "UnblockSubscriber": {"subscription_id": subscription_id},
        "UpdateSubscriberRole": {
            "subscription_id": subscription_id,
            "role": SubscriberRole.SUPPORT_PERSON,
        },
    }
    classes = {cls.name: cls for cls in cmd.PUBLIC_COMMANDS.values()}
    classes.update(cmd.INTERNAL_COMMANDS)
    return command(classes[name], **fields.get(name, {}))


COMMAND_NAMES = [name for _, name in cmd.PUBLIC_COMMANDS] + list(cmd.INTERNAL_COMMANDS)


DECIDE_CASES = [
    pytest.param(name, party, id=f"{name}-{party.key}")
    for name in COMMAND_NAMES
    for party in PARTIES
]


@pytest.mark.parametrize(("name", "party"), DECIDE_CASES)
def test_decide_matrix(
    labour_and_ids: tuple[Labour, dict[str, UUID]], name: str, party: Party
) -> None:
    labour, subscription_ids = labour_and_ids
    # A party without a subscription names someone else's, which must not matter.
    subscription_id = subscription_ids.get(party.key, subscription_ids["loved_one"])
    decided = command_for(name, subscription_id)
    context = CommandContext(now=T0, caller=party.caller, new_id=SequentialIds())
    expected = expected_denial(ACTIONS_BY_NAME[name], party)
    before = encode_snapshot(labour)

    denial: str | None = None
    try:
        decide(labour, decided, context)
    except AuthorizationDenied as error:
        denial = error.reason
    except LabourError:
        pass  # authorized, then rejected by a domain rule

    assert denial == expected
    assert encode_snapshot(labour) == before


# Ownership of subscriptions


@pytest.mark.parametrize("name", ["Unsubscribe", "UpdateNotificationMethods"])
@pytest.mark.parametrize(
    "target", ["loved_one", "blocked", "unknown"], ids=lambda key: f"target-{key}"
)
def test_subscriber_cannot_target_others(
    labour_and_ids: tuple[Labour, dict[str, UUID]], name: str, target: str
) -> None:
    labour, subscription_ids = labour_and_ids
    target_id = subscription_ids.get(target, UNKNOWN_ID)
    context = CommandContext(now=T0, caller=PARTNER, new_id=SequentialIds())

    with pytest.raises(AuthorizationDenied) as caught:
        decide(labour, command_for(name, target_id), context)

    assert_error(
        caught.value,
        AuthorizationDenied,
        f"Authorization failed: {CANNOT_TARGET_OTHERS}",
        "forbidden",
        403,
    )


def test_own_subscription_action_without_id_denied(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, _ = labour_and_ids

    with pytest.raises(AuthorizationDenied) as caught:
        authorize(labour, LOVED_ONE, "Unsubscribe", Capability.ManageOwnSubscription)

    assert caught.value.reason == CANNOT_TARGET_OTHERS


def test_missing_capability_checked_before_ownership(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, subscription_ids = labour_and_ids

    # A subscriber's own id never helps with a capability they lack.
    with pytest.raises(AuthorizationDenied) as caught:
        authorize(
            labour,
            LOVED_ONE,
            "UpdateAccessLevel",
            Capability.UpdateSubscriptionAccessLevel,
            subscription_id=subscription_ids["loved_one"],
        )

    assert caught.value.reason == (
        "Missing required capability: UpdateSubscriptionAccessLevel"
    )


# Principal resolution


def test_no_labour_resolves_unassociated() -> None:
    principal = resolve_principal(None, MOTHER)

    assert principal.kind is PrincipalKind.UNASSOCIATED


def test_no_labour_allows_only_plan_labour() -> None:
    authorize(None, MOTHER, "PlanLabour", Capability.ManageLabour)

    with pytest.raises(AuthorizationDenied) as caught:
        authorize(None, MOTHER, "BeginLabour", Capability.ManageLabour)
    assert caught.value.reason == NOT_ASSOCIATED


def test_subscriber_principal_carries_role_and_status(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, subscription_ids = labour_and_ids

    principal = resolve_principal(labour, SUPPORTER)

    assert principal.kind is PrincipalKind.SUBSCRIBER
    assert principal.subscription is not None
    assert principal.subscription.id == subscription_ids["support_person"]
    assert principal.subscription.role is SubscriberRole.SUPPORT_PERSON
    assert principal.subscription.status is SubscriberStatus.SUBSCRIBED


@pytest.mark.parametrize(
    ("party", "kind"),
    [
        (MOTHER_PARTY, PrincipalKind.MOTHER),
        (PARTNER_PARTY, PrincipalKind.SUBSCRIBER),
        (NOT_SUBSCRIBED_PARTIES[3], PrincipalKind.SUBSCRIBER),
        (INTERNAL_PARTY, PrincipalKind.INTERNAL),
        (UNASSOCIATED_PARTY, PrincipalKind.UNASSOCIATED),
        (ADMIN_PARTY, PrincipalKind.UNASSOCIATED),
    ],
    ids=lambda value: getattr(value, "key", ""),
)
def test_resolve_principal_kind(
    labour_and_ids: tuple[Labour, dict[str, UUID]], party: Party, kind: PrincipalKind
) -> None:
    labour, _ = labour_and_ids

    assert resolve_principal(labour, party.caller).kind is kind


def test_provider_token_with_internal_user_id_not_internal(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, _ = labour_and_ids
    impostor = Caller(
        user_id="fern-labour-internal-process-manager", issuer=PROVIDER_ISSUER
    )

    assert impostor.is_internal is False
    assert resolve_principal(labour, impostor).kind is PrincipalKind.UNASSOCIATED


@pytest.mark.parametrize(
    "name",
    ["SetSubscriptionToken", "AdvanceLabourPhase", "PostApplicationLabourUpdate"],
)
def test_provider_token_with_internal_user_id_denied(
    labour_and_ids: tuple[Labour, dict[str, UUID]], name: str
) -> None:
    labour, subscription_ids = labour_and_ids
    impostor = Caller(user_id="fern-labour-internal-anything", issuer=PROVIDER_ISSUER)
    context = CommandContext(now=T0, caller=impostor, new_id=SequentialIds())

    with pytest.raises(AuthorizationDenied) as caught:
        decide(labour, command_for(name, subscription_ids["loved_one"]), context)

    assert caught.value.reason == NOT_ASSOCIATED


def test_internal_issuer_without_internal_prefix_not_internal() -> None:
    caller = Caller(user_id="process-manager", issuer="internal")

    assert caller.is_internal is False


def test_internal_caller_is_internal() -> None:
    assert INTERNAL.is_internal is True


def test_mother_resolved_before_internal() -> None:
    scenario = planned_scenario()
    labour = scenario.state
    internal_mother = Caller(user_id=labour.mother_id, issuer="internal")

    assert resolve_principal(labour, internal_mother).kind is PrincipalKind.MOTHER


def test_internal_with_subscription_stays_internal() -> None:
    scenario = planned_scenario()
    scenario.run(command(cmd.RequestAccess, token=TOKEN), INTERNAL)

    principal = resolve_principal(scenario.state, INTERNAL)

    assert scenario.state.subscription_of(INTERNAL.user_id) is not None
    assert principal.kind is PrincipalKind.INTERNAL


# Administrators


def test_admin_mother_may_rebuild_and_set_access_level(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, _ = labour_and_ids
    admin_mother = Caller(user_id=MOTHER.user_id, issuer=PROVIDER_ISSUER, is_admin=True)

    authorize(labour, admin_mother, "RebuildReadModels", Capability.Administer)
    authorize(
        labour,
        admin_mother,
        "UpdateAccessLevel",
        Capability.UpdateSubscriptionAccessLevel,
    )


def test_admin_blocked_subscriber_may_set_access_level(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, _ = labour_and_ids
    blocked = NOT_SUBSCRIBED_PARTIES[3].caller
    admin_blocked = Caller(
        user_id=blocked.user_id, issuer=blocked.issuer, is_admin=True
    )

    authorize(
        labour,
        admin_blocked,
        "UpdateAccessLevel",
        Capability.UpdateSubscriptionAccessLevel,
    )
    with pytest.raises(AuthorizationDenied) as caught:
        authorize(labour, admin_blocked, "GetLabour", Capability.ReadLabour)
    assert caught.value.reason == NOT_ASSOCIATED


def test_admin_birth_partner_keeps_partner_rights(
    labour_and_ids: tuple[Labour, dict[str, UUID]],
) -> None:
    labour, _ = labour_and_ids
    admin_partner = Caller(
        user_id=PARTNER.user_id, issuer=PROVIDER_ISSUER, is_admin=True
    )

    authorize(labour, admin_partner, "RebuildReadModels", Capability.Administer)
    authorize(
        labour, admin_partner, "StartContraction", Capability.ExecuteLabourCommand
    )
    with pytest.raises(AuthorizationDenied) as caught:
        authorize(labour, admin_partner, "BeginLabour", Capability.ManageLabour)
    assert caught.value.reason == "Missing required capability: ManageLabour"


def test_admin_update_access_level_through_decide() -> None:
    scenario = planned_scenario()
    subscription_id = scenario.add_subscriber(LOVED_ONE)
    scenario.tick(timedelta(minutes=1).total_seconds())

    events = scenario.run(
        command(
            cmd.UpdateAccessLevel,
            subscription_id=subscription_id,
            access_level=SubscriberAccessLevel.SUPPORTER,
        ),
        ADMIN,
    )

    assert len(events) == 1


# Private notes


@pytest.mark.parametrize(
    ("party", "sees"),
    [
        (MOTHER_PARTY, True),
        (PARTNER_PARTY, True),
        (SUPPORTER_PARTY, False),
        (LOVED_ONE_PARTY, False),
        *[(party, False) for party in NOT_SUBSCRIBED_PARTIES],
        (INTERNAL_PARTY, False),
        (UNASSOCIATED_PARTY, False),
        (ADMIN_PARTY, False),
    ],
    ids=lambda value: getattr(value, "key", str(value)),
)
def test_sees_private_notes(
    labour_and_ids: tuple[Labour, dict[str, UUID]], party: Party, sees: bool
) -> None:
    labour, _ = labour_and_ids

    principal = resolve_principal(labour, party.caller)

    assert principal.sees_private_notes is sees
