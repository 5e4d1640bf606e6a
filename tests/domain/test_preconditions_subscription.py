"""Preconditions and events of the Subscription group, and every cell of the
subscription lifecycle table."""

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Caller
from fernd.domain.enums import (
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
    SubscriberStatus,
)
from fernd.domain.errors import AuthorizationDenied, InvalidCommand

from .builders import (
    ADMIN,
    INTERNAL,
    LABOUR_ID,
    LOVED_ONE,
    MOTHER,
    TOKEN,
    UNKNOWN_ID,
    Scenario,
    assert_error,
    command,
)

REQUESTED = SubscriberStatus.REQUESTED
SUBSCRIBED = SubscriberStatus.SUBSCRIBED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
REMOVED = SubscriberStatus.REMOVED
BLOCKED = SubscriberStatus.BLOCKED

MOTHER_SUBSCRIPTION_COMMANDS: list[type[cmd.Command]] = [
    cmd.ApproveSubscriber,
    cmd.RemoveSubscriber,
    cmd.BlockSubscriber,
    cmd.UnblockSubscriber,
]


def for_subscription(
    cls: type[cmd.Command], subscription_id: UUID, **fields: object
) -> cmd.Command:
    return command(cls, subscription_id=subscription_id, **fields)


# Not found and the events of each command


@pytest.mark.parametrize(
    "cls", MOTHER_SUBSCRIPTION_COMMANDS, ids=lambda cls: cls.__name__
)
def test_subscription_command_unknown_rejected(
    scenario: Scenario, cls: type[cmd.Command]
) -> None:
    scenario.add_subscriber(LOVED_ONE, BLOCKED)

    error = scenario.reject(for_subscription(cls, UNKNOWN_ID))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Subscription not found",
        "not_found",
        404,
    )


def test_update_subscriber_role_unknown_rejected(scenario: Scenario) -> None:
    error = scenario.reject(
        for_subscription(
            cmd.UpdateSubscriberRole, UNKNOWN_ID, role=SubscriberRole.BIRTH_PARTNER
        )
    )

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Subscription not found",
        "not_found",
        404,
    )


def test_approve_subscriber_emits_approved(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, REQUESTED)

    events = scenario.run(for_subscription(cmd.ApproveSubscriber, subscription_id))

    assert events == [
        ev.SubscriberApproved(labour_id=LABOUR_ID, subscription_id=subscription_id)
    ]


def test_remove_subscriber_emits_removed(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, SUBSCRIBED)

    events = scenario.run(for_subscription(cmd.RemoveSubscriber, subscription_id))

    assert events == [
        ev.SubscriberRemoved(labour_id=LABOUR_ID, subscription_id=subscription_id)
    ]


def test_block_subscriber_emits_blocked(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, SUBSCRIBED)

    events = scenario.run(for_subscription(cmd.BlockSubscriber, subscription_id))

    assert events == [
        ev.SubscriberBlocked(labour_id=LABOUR_ID, subscription_id=subscription_id)
    ]


def test_unblock_subscriber_emits_unblocked(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, BLOCKED)

    events = scenario.run(for_subscription(cmd.UnblockSubscriber, subscription_id))

    assert events == [
        ev.SubscriberUnblocked(labour_id=LABOUR_ID, subscription_id=subscription_id)
    ]
    assert scenario.state.subscriptions[subscription_id].status is REMOVED


def test_update_subscriber_role_emits_role_updated(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, SUBSCRIBED)

    events = scenario.run(
        for_subscription(
            cmd.UpdateSubscriberRole,
            subscription_id,
            role=SubscriberRole.SUPPORT_PERSON,
        )
    )

    assert events == [
        ev.SubscriberRoleUpdated(
            labour_id=LABOUR_ID,
            subscription_id=subscription_id,
            role=SubscriberRole.SUPPORT_PERSON,
        )
    ]
    assert (
        scenario.state.subscriptions[subscription_id].role
        is SubscriberRole.SUPPORT_PERSON
    )


def test_update_subscriber_role_same_role_rejected(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, SUBSCRIBED)

    error = scenario.reject(
        for_subscription(
            cmd.UpdateSubscriberRole, subscription_id, role=SubscriberRole.LOVED_ONE
        )
    )

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Subscriber already has role",
        "conflict",
        409,
    )


def test_update_subscriber_role_existence_checked_first(scenario: Scenario) -> None:
    # A new subscription's role is LOVED_ONE, so an unknown id must win.
    error = scenario.reject(
        for_subscription(
            cmd.UpdateSubscriberRole, UNKNOWN_ID, role=SubscriberRole.LOVED_ONE
        )
    )

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Subscription not found"


def test_invalidate_subscription_token_emits_event(scenario: Scenario) -> None:
    events = scenario.run(command(cmd.InvalidateSubscriptionToken))

    assert events == [ev.SubscriptionTokenInvalidated(labour_id=LABOUR_ID)]
    assert scenario.state.subscription_token is None


def test_invalidate_subscription_token_without_token_accepted(
    empty: Scenario,
) -> None:
    empty.plan()

    events = empty.run(command(cmd.InvalidateSubscriptionToken))

    assert events == [ev.SubscriptionTokenInvalidated(labour_id=LABOUR_ID)]


@pytest.mark.parametrize(
    ("cls", "start_status", "fields"),
    [
        (cmd.ApproveSubscriber, REQUESTED, {}),
        (cmd.RemoveSubscriber, SUBSCRIBED, {}),
        (cmd.BlockSubscriber, SUBSCRIBED, {}),
        (cmd.UnblockSubscriber, BLOCKED, {}),
        (cmd.UpdateSubscriberRole, SUBSCRIBED, {"role": SubscriberRole.BIRTH_PARTNER}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_subscription_command_ignores_completed_phase(
    scenario: Scenario,
    cls: type[cmd.Command],
    start_status: SubscriberStatus,
    fields: dict[str, object],
) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, start_status)
    scenario.complete()

    events = scenario.run(for_subscription(cls, subscription_id, **fields))

    assert len(events) == 1


def test_invalidate_subscription_token_ignores_completed_phase(
    scenario: Scenario,
) -> None:
    scenario.complete()

    events = scenario.run(command(cmd.InvalidateSubscriptionToken))

    assert len(events) == 1


# The lifecycle table: every action in every status


@dataclass(frozen=True)
class MovesTo:
    """The action succeeds and leaves the subscription in `status`."""

    status: SubscriberStatus


@dataclass(frozen=True)
class Allowed:
    """The action succeeds and leaves the status as it was."""


@dataclass(frozen=True)
class Refused:
    """The domain rejects the action with InvalidCommand(`detail`)."""

    detail: str


@dataclass(frozen=True)
class Forbidden:
    """Authorization denies the action with `reason`."""

    reason: str


Outcome = MovesTo | Allowed | Refused | Forbidden
ActionBuilder = Callable[[UUID], tuple[cmd.Command, Caller]]

NOT_ASSOCIATED = Forbidden("Not associated with this labour")


def _request_access(subscription_id: UUID) -> tuple[cmd.Command, Caller]:
    return command(cmd.RequestAccess, token=TOKEN), LOVED_ONE


def _by_mother(cls: type[cmd.Command], **fields: object) -> ActionBuilder:
    def build(subscription_id: UUID) -> tuple[cmd.Command, Caller]:
        return for_subscription(cls, subscription_id, **fields), MOTHER

    return build


def _by_caller(
    caller: Caller, cls: type[cmd.Command], **fields: object
) -> ActionBuilder:
    def build(subscription_id: UUID) -> tuple[cmd.Command, Caller]:
        return for_subscription(cls, subscription_id, **fields), caller

    return build


ACTIONS: dict[str, ActionBuilder] = {
    "RequestAccess": _request_access,
    "ApproveSubscriber": _by_mother(cmd.ApproveSubscriber),
    "RemoveSubscriber": _by_mother(cmd.RemoveSubscriber),
    "BlockSubscriber": _by_mother(cmd.BlockSubscriber),
    "UnblockSubscriber": _by_mother(cmd.UnblockSubscriber),
    "Unsubscribe": _by_caller(LOVED_ONE, cmd.Unsubscribe),
    "UpdateNotificationMethods": _by_caller(
        LOVED_ONE,
        cmd.UpdateNotificationMethods,
        notification_methods=[SubscriberContactMethod.SMS],
    ),
    "UpdateSubscriberRole": _by_mother(
        cmd.UpdateSubscriberRole, role=SubscriberRole.SUPPORT_PERSON
    ),
    "UpdateAccessLevel(internal)": _by_caller(
        INTERNAL, cmd.UpdateAccessLevel, access_level=SubscriberAccessLevel.SUPPORTER
    ),
    "UpdateAccessLevel(admin)": _by_caller(
        ADMIN, cmd.UpdateAccessLevel, access_level=SubscriberAccessLevel.SUPPORTER
    ),
}

LIFECYCLE: dict[str, dict[SubscriberStatus, Outcome]] = {
    "RequestAccess": {
        REQUESTED: Refused("Cannot subscribe to labour"),
        SUBSCRIBED: Refused("Cannot subscribe to labour"),
        UNSUBSCRIBED: MovesTo(REQUESTED),
        REMOVED: MovesTo(REQUESTED),
        BLOCKED: Refused("Cannot subscribe to labour"),
    },
    "ApproveSubscriber": {
        REQUESTED: MovesTo(SUBSCRIBED),
        SUBSCRIBED: Refused("Subscription is not in REQUESTED state"),
        UNSUBSCRIBED: Refused("Subscription is not in REQUESTED state"),
        REMOVED: Refused("Subscription is not in REQUESTED state"),
        BLOCKED: Refused("Subscription is not in REQUESTED state"),
    },
    "RemoveSubscriber": {
        REQUESTED: MovesTo(REMOVED),
        SUBSCRIBED: MovesTo(REMOVED),
        UNSUBSCRIBED: MovesTo(REMOVED),
        REMOVED: Refused("Cannot remove subscriber"),
        BLOCKED: Refused("Cannot remove subscriber"),
    },
    "BlockSubscriber": {
        REQUESTED: MovesTo(BLOCKED),
        SUBSCRIBED: MovesTo(BLOCKED),
        UNSUBSCRIBED: MovesTo(BLOCKED),
        REMOVED: MovesTo(BLOCKED),
        BLOCKED: Refused("Subscriber is already blocked"),
    },
    "UnblockSubscriber": {
        REQUESTED: Refused("Subscriber is not blocked"),
        SUBSCRIBED: Refused("Subscriber is not blocked"),
        UNSUBSCRIBED: Refused("Subscriber is not blocked"),
        REMOVED: Refused("Subscriber is not blocked"),
        BLOCKED: MovesTo(REMOVED),
    },
    "Unsubscribe": {
        REQUESTED: NOT_ASSOCIATED,
        SUBSCRIBED: MovesTo(UNSUBSCRIBED),
        UNSUBSCRIBED: NOT_ASSOCIATED,
        REMOVED: NOT_ASSOCIATED,
        BLOCKED: NOT_ASSOCIATED,
    },
    "UpdateNotificationMethods": {
        REQUESTED: NOT_ASSOCIATED,
        SUBSCRIBED: Allowed(),
        UNSUBSCRIBED: NOT_ASSOCIATED,
        REMOVED: NOT_ASSOCIATED,
        BLOCKED: NOT_ASSOCIATED,
    },
    "UpdateSubscriberRole": dict.fromkeys(SubscriberStatus, Allowed()),
    "UpdateAccessLevel(internal)": dict.fromkeys(SubscriberStatus, Allowed()),
    "UpdateAccessLevel(admin)": dict.fromkeys(SubscriberStatus, Allowed()),
}

LIFECYCLE_CASES = [
    pytest.param(action, status, outcome, id=f"{action}-{status.value}")
    for action, row in LIFECYCLE.items()
    for status, outcome in row.items()
]


def test_lifecycle_table_covers_every_cell() -> None:
    assert len(LIFECYCLE_CASES) == len(ACTIONS) * len(SubscriberStatus)


@pytest.mark.parametrize(("action", "status", "outcome"), LIFECYCLE_CASES)
def test_subscription_lifecycle(
    scenario: Scenario, action: str, status: SubscriberStatus, outcome: Outcome
) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, status)
    lifecycle_command, caller = ACTIONS[action](subscription_id)

    match outcome:
        case MovesTo(status=new_status):
            events = scenario.run(lifecycle_command, caller)
            assert len(events) == 1
            subscription = scenario.state.subscriptions[subscription_id]
            assert subscription.status is new_status
            assert len(scenario.state.subscriptions) == 1
        case Allowed():
            events = scenario.run(lifecycle_command, caller)
            assert len(events) == 1
            subscription = scenario.state.subscriptions[subscription_id]
            assert subscription.status is status
        case Refused(detail=detail):
            error = scenario.reject(lifecycle_command, caller)
            assert_error(
                error,
                InvalidCommand,
                f"Domain error: Invalid command: {detail}",
                "conflict",
                409,
            )
        case Forbidden(reason=reason):
            error = scenario.reject(lifecycle_command, caller)
            assert_error(
                error,
                AuthorizationDenied,
                f"Authorization failed: {reason}",
                "forbidden",
                403,
            )


def test_blocked_user_subscribes_again_after_unblock(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, BLOCKED)
    scenario.run(for_subscription(cmd.UnblockSubscriber, subscription_id))

    events = scenario.run(command(cmd.RequestAccess, token=TOKEN), LOVED_ONE)

    assert events == [
        ev.SubscriberRequested(
            labour_id=LABOUR_ID,
            subscriber_id=LOVED_ONE.user_id,
            subscription_id=subscription_id,
        )
    ]
    assert scenario.state.subscriptions[subscription_id].status is REQUESTED
