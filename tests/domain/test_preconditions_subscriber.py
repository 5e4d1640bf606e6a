"""Preconditions, their order and the events of the Subscriber group, with
share token matching."""

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
from fernd.domain.errors import AuthorizationDenied, InvalidCommand, ValidationError
from fernd.domain.handlers import subscription as subscription_handlers

from .builders import (
    ADMIN,
    INTERNAL,
    LABOUR_ID,
    LOVED_ONE,
    MOTHER,
    PARTNER,
    STRANGER,
    TOKEN,
    UNKNOWN_ID,
    Scenario,
    assert_error,
    command,
)

EMAIL = SubscriberContactMethod.EMAIL
SMS = SubscriberContactMethod.SMS
WHATSAPP = SubscriberContactMethod.WHATSAPP
SUBSCRIPTION_NOT_FOUND = "Domain error: Invalid command: Subscription not found"


def request_access(token: str = TOKEN) -> cmd.RequestAccess:
    return command(cmd.RequestAccess, token=token)


def unsubscribe(subscription_id: UUID) -> cmd.Unsubscribe:
    return command(cmd.Unsubscribe, subscription_id=subscription_id)


def set_methods(
    subscription_id: UUID, methods: list[SubscriberContactMethod]
) -> cmd.UpdateNotificationMethods:
    return command(
        cmd.UpdateNotificationMethods,
        subscription_id=subscription_id,
        notification_methods=methods,
    )


def set_access_level(
    subscription_id: UUID, level: SubscriberAccessLevel
) -> cmd.UpdateAccessLevel:
    return command(
        cmd.UpdateAccessLevel, subscription_id=subscription_id, access_level=level
    )


# RequestAccess


def test_request_access_emits_requested_with_new_id(scenario: Scenario) -> None:
    events = scenario.run(request_access(), STRANGER)

    assert events == [
        ev.SubscriberRequested(
            labour_id=LABOUR_ID,
            subscriber_id=STRANGER.user_id,
            subscription_id=scenario.ids.last,
        )
    ]


def test_request_access_creates_default_subscription(scenario: Scenario) -> None:
    scenario.run(request_access(), STRANGER)

    subscription = scenario.state.subscriptions[scenario.ids.last]
    assert subscription.subscriber_id == STRANGER.user_id
    assert subscription.labour_id == LABOUR_ID
    assert subscription.role is SubscriberRole.LOVED_ONE
    assert subscription.status is SubscriberStatus.REQUESTED
    assert subscription.access_level is SubscriberAccessLevel.BASIC
    assert subscription.contact_methods == []


def test_request_access_ignores_client_subscriber_id(scenario: Scenario) -> None:
    events = scenario.run(
        command(cmd.RequestAccess, token=TOKEN, subscriber_id="someone-else"), STRANGER
    )

    requested = events[0]
    assert isinstance(requested, ev.SubscriberRequested)
    assert requested.subscriber_id == STRANGER.user_id


def test_request_access_by_mother_rejected(scenario: Scenario) -> None:
    error = scenario.reject(request_access(), MOTHER)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot subscribe to own labour",
        "conflict",
        409,
    )


def test_request_access_completed_rejected(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(request_access(), STRANGER)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot subscribe to completed labour",
        "conflict",
        409,
    )


def test_request_access_before_token_set_rejected(empty: Scenario) -> None:
    empty.plan()

    error = empty.reject(request_access(), STRANGER)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Labour has no subscription token set",
        "conflict",
        409,
    )


def test_request_access_after_token_invalidated_rejected(scenario: Scenario) -> None:
    scenario.run(command(cmd.InvalidateSubscriptionToken))

    error = scenario.reject(request_access(), STRANGER)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Labour has no subscription token set"


@pytest.mark.parametrize(
    "token",
    [
        "ABCDEF24",  # one symbol differs
        "",
        "ABCDEF2",  # shorter
        "ABCDEF234",  # longer
        " ABCDEF23",
        "ABCDEF23 ",
        "ＡＢＣＤＥＦ２３",  # full-width forms are not ASCII
    ],
    ids=repr,
)
def test_request_access_wrong_token_rejected(scenario: Scenario, token: str) -> None:
    error = scenario.reject(request_access(token), STRANGER)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Incorrect subscription token",
        "conflict",
        409,
    )


@pytest.mark.parametrize("token", ["abcdef23", "AbCdEf23"])
def test_request_access_token_case_ignored(scenario: Scenario, token: str) -> None:
    events = scenario.run(request_access(token), STRANGER)

    assert len(events) == 1


def test_request_access_old_token_rejected_after_new_one(scenario: Scenario) -> None:
    scenario.run(command(cmd.InvalidateSubscriptionToken))
    scenario.set_token("ZYXWVU98")

    error = scenario.reject(request_access(TOKEN), STRANGER)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Incorrect subscription token"


@pytest.mark.parametrize(
    "status",
    [SubscriberStatus.REQUESTED, SubscriberStatus.SUBSCRIBED, SubscriberStatus.BLOCKED],
    ids=lambda status: status.value,
)
def test_request_access_with_live_subscription_rejected(
    scenario: Scenario, status: SubscriberStatus
) -> None:
    scenario.add_subscriber(LOVED_ONE, status)

    error = scenario.reject(request_access(), LOVED_ONE)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot subscribe to labour",
        "conflict",
        409,
    )


@pytest.mark.parametrize(
    "status",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.REMOVED],
    ids=lambda status: status.value,
)
def test_request_access_reuses_subscription_id(
    scenario: Scenario, status: SubscriberStatus
) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, status)

    events = scenario.run(request_access(), LOVED_ONE)

    assert events == [
        ev.SubscriberRequested(
            labour_id=LABOUR_ID,
            subscriber_id=LOVED_ONE.user_id,
            subscription_id=subscription_id,
        )
    ]
    assert len(scenario.state.subscriptions) == 1


def test_request_access_again_keeps_role_level_methods(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(
        PARTNER, SubscriberStatus.SUBSCRIBED, SubscriberRole.BIRTH_PARTNER
    )
    scenario.run(set_methods(subscription_id, [SMS, EMAIL]), PARTNER)
    scenario.run(
        set_access_level(subscription_id, SubscriberAccessLevel.SUPPORTER), INTERNAL
    )
    scenario.run(unsubscribe(subscription_id), PARTNER)

    scenario.run(request_access(), PARTNER)

    subscription = scenario.state.subscriptions[subscription_id]
    assert subscription.status is SubscriberStatus.REQUESTED
    assert subscription.role is SubscriberRole.BIRTH_PARTNER
    assert subscription.access_level is SubscriberAccessLevel.SUPPORTER
    assert subscription.contact_methods == [SMS, EMAIL]


def test_request_access_own_labour_checked_before_phase(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(request_access(), MOTHER)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot subscribe to own labour"


def test_request_access_phase_checked_before_token_set(scenario: Scenario) -> None:
    scenario.run(command(cmd.InvalidateSubscriptionToken))
    scenario.complete()

    error = scenario.reject(request_access(), STRANGER)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot subscribe to completed labour"


def test_request_access_token_set_checked_before_match(scenario: Scenario) -> None:
    scenario.run(command(cmd.InvalidateSubscriptionToken))

    error = scenario.reject(request_access("WRONG234"), STRANGER)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Labour has no subscription token set"


def test_request_access_token_checked_before_status(scenario: Scenario) -> None:
    scenario.add_subscriber(LOVED_ONE, SubscriberStatus.BLOCKED)

    error = scenario.reject(request_access("WRONG234"), LOVED_ONE)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Incorrect subscription token"


# Unsubscribe


def test_unsubscribe_emits_unsubscribed(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)

    events = scenario.run(unsubscribe(subscription_id), LOVED_ONE)

    assert events == [
        ev.SubscriberUnsubscribed(labour_id=LABOUR_ID, subscription_id=subscription_id)
    ]
    assert (
        scenario.state.subscriptions[subscription_id].status
        is SubscriberStatus.UNSUBSCRIBED
    )


def test_unsubscribe_unknown_id_denied_first(
    scenario: Scenario,
) -> None:
    scenario.add_subscriber(LOVED_ONE)

    error = scenario.reject(unsubscribe(UNKNOWN_ID), LOVED_ONE)

    assert_error(
        error,
        AuthorizationDenied,
        "Authorization failed: Can only manage your own subscription",
        "forbidden",
        403,
    )


def test_unsubscribe_handler_unknown_rejected(scenario: Scenario) -> None:
    # Authorization rejects unknown ids first, so call the handler itself.
    with pytest.raises(InvalidCommand) as caught:
        subscription_handlers.unsubscribe(
            scenario.state, unsubscribe(UNKNOWN_ID), scenario.context(LOVED_ONE)
        )

    assert_error(caught.value, InvalidCommand, SUBSCRIPTION_NOT_FOUND, "not_found", 404)


@pytest.mark.parametrize(
    "status",
    [
        SubscriberStatus.REQUESTED,
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.REMOVED,
        SubscriberStatus.BLOCKED,
    ],
    ids=lambda status: status.value,
)
def test_unsubscribe_handler_not_subscribed_rejected(
    scenario: Scenario, status: SubscriberStatus
) -> None:
    # Authorization rejects callers that are not SUBSCRIBED first.
    subscription_id = scenario.add_subscriber(LOVED_ONE, status)

    with pytest.raises(InvalidCommand) as caught:
        subscription_handlers.unsubscribe(
            scenario.state, unsubscribe(subscription_id), scenario.context(LOVED_ONE)
        )

    assert_error(
        caught.value,
        InvalidCommand,
        "Domain error: Invalid command: Cannot unsubscribe from labour",
        "conflict",
        409,
    )


# UpdateNotificationMethods


def test_update_notification_methods_emits_event(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)

    events = scenario.run(set_methods(subscription_id, [WHATSAPP, EMAIL]), LOVED_ONE)

    assert events == [
        ev.SubscriberNotificationMethodsUpdated(
            labour_id=LABOUR_ID,
            subscription_id=subscription_id,
            notification_methods=[WHATSAPP, EMAIL],
        )
    ]
    assert scenario.state.subscriptions[subscription_id].contact_methods == [
        WHATSAPP,
        EMAIL,
    ]


def test_update_notification_methods_empty_accepted(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)
    scenario.run(set_methods(subscription_id, [SMS]), LOVED_ONE)

    scenario.run(set_methods(subscription_id, []), LOVED_ONE)

    assert scenario.state.subscriptions[subscription_id].contact_methods == []


def test_update_notification_methods_duplicates_rejected(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)

    error = scenario.reject(set_methods(subscription_id, [SMS, EMAIL, SMS]), LOVED_ONE)

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: "
        "Notification methods must not contain duplicates",
        "validation_error",
        400,
    )


def test_update_notification_methods_handler_unknown_rejected(
    scenario: Scenario,
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        subscription_handlers.update_notification_methods(
            scenario.state, set_methods(UNKNOWN_ID, [SMS]), scenario.context(LOVED_ONE)
        )

    assert_error(caught.value, InvalidCommand, SUBSCRIPTION_NOT_FOUND, "not_found", 404)


def test_update_notification_methods_duplicates_checked_first(
    scenario: Scenario,
) -> None:
    with pytest.raises(ValidationError):
        subscription_handlers.update_notification_methods(
            scenario.state,
            set_methods(UNKNOWN_ID, [SMS, SMS]),
            scenario.context(LOVED_ONE),
        )


def test_update_notification_methods_other_id_denied(scenario: Scenario) -> None:
    other_id = scenario.add_subscriber(PARTNER)
    scenario.add_subscriber(LOVED_ONE)

    error = scenario.reject(set_methods(other_id, [SMS]), LOVED_ONE)

    assert_error(
        error,
        AuthorizationDenied,
        "Authorization failed: Can only manage your own subscription",
        "forbidden",
        403,
    )


# UpdateAccessLevel


@pytest.mark.parametrize("caller", [INTERNAL, ADMIN], ids=["internal", "admin"])
def test_update_access_level_emits_event(scenario: Scenario, caller: Caller) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)

    events = scenario.run(
        set_access_level(subscription_id, SubscriberAccessLevel.SUPPORTER),
        caller,
    )

    assert events == [
        ev.SubscriberAccessLevelUpdated(
            labour_id=LABOUR_ID,
            subscription_id=subscription_id,
            access_level=SubscriberAccessLevel.SUPPORTER,
        )
    ]
    assert (
        scenario.state.subscriptions[subscription_id].access_level
        is SubscriberAccessLevel.SUPPORTER
    )


def test_update_access_level_unknown_rejected(scenario: Scenario) -> None:
    error = scenario.reject(
        set_access_level(UNKNOWN_ID, SubscriberAccessLevel.SUPPORTER), INTERNAL
    )

    assert_error(error, InvalidCommand, SUBSCRIPTION_NOT_FOUND, "not_found", 404)


def test_update_access_level_same_level_rejected(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)

    error = scenario.reject(
        set_access_level(subscription_id, SubscriberAccessLevel.BASIC), INTERNAL
    )

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Subscription already has access level",
        "conflict",
        409,
    )


@pytest.mark.parametrize("status", list(SubscriberStatus), ids=lambda s: s.value)
def test_update_access_level_ignores_status(
    scenario: Scenario, status: SubscriberStatus
) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE, status)

    events = scenario.run(
        set_access_level(subscription_id, SubscriberAccessLevel.SUPPORTER), INTERNAL
    )

    assert len(events) == 1


def test_update_access_level_ignores_phase(scenario: Scenario) -> None:
    subscription_id = scenario.add_subscriber(LOVED_ONE)
    scenario.complete()

    events = scenario.run(
        set_access_level(subscription_id, SubscriberAccessLevel.SUPPORTER), ADMIN
    )

    assert len(events) == 1
