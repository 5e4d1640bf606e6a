"""Tests of the process-manager policies against states built from events."""

from datetime import UTC, datetime
from uuid import UUID

import pytest

from fernd.domain import events as ev
from fernd.domain.effects import (
    AnnouncementPostedNotification,
    Effect,
    EffectType,
    EmailContext,
    GenerateSubscriptionToken,
    LabourBegunNotification,
    LabourCompletedNotification,
    LabourInviteNotification,
    MotherContext,
    SendNotification,
    SubscriberContext,
    SubscriberRequestedNotification,
    SubscriptionApprovedNotification,
)
from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    NotificationChannel,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
    SubscriberStatus,
)
from fernd.domain.handlers import apply_events
from fernd.domain.labour import Labour
from fernd.domain.policies import channel_of, effects_for_event

LABOUR_ID = UUID("0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d")
MOTHER_ID = "user_2mother"
NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
CONTRACTION_ID = UUID("0190f5b8-11c2-7d0e-8a5f-2b6c9e4d1a07")
UPDATE_ID = UUID("0190f5c0-0000-7000-8000-000000000001")

EMAIL = SubscriberContactMethod.EMAIL
SMS = SubscriberContactMethod.SMS
WHATSAPP = SubscriberContactMethod.WHATSAPP


def subscription_id(number: int) -> UUID:
    return UUID(f"0190f5a9-5b7e-7c13-a2f4-{number:012d}")


GRANDMA = ("user_2grandma", subscription_id(1))
FRIEND = ("user_2friend", subscription_id(2))
AUNT = ("user_2aunt", subscription_id(3))
UNCLE = ("user_2uncle", subscription_id(4))
COUSIN = ("user_2cousin", subscription_id(5))
NEIGHBOUR = ("user_2neighbour", subscription_id(6))
SILENT = ("user_2silent", subscription_id(7))


def planned() -> ev.LabourPlanned:
    return ev.LabourPlanned(
        labour_id=LABOUR_ID,
        mother_id=MOTHER_ID,
        mother_name="Alex Morgan",
        first_labour=True,
        due_date=datetime(2024, 5, 20, tzinfo=UTC),
    )


def requested(subscriber: tuple[str, UUID]) -> ev.SubscriberRequested:
    user_id, subscription_uuid = subscriber
    return ev.SubscriberRequested(
        labour_id=LABOUR_ID, subscriber_id=user_id, subscription_id=subscription_uuid
    )


def approved(subscriber: tuple[str, UUID]) -> ev.SubscriberApproved:
    return ev.SubscriberApproved(labour_id=LABOUR_ID, subscription_id=subscriber[1])


def methods(
    subscriber: tuple[str, UUID], *contact_methods: SubscriberContactMethod
) -> ev.SubscriberNotificationMethodsUpdated:
    return ev.SubscriberNotificationMethodsUpdated(
        labour_id=LABOUR_ID,
        subscription_id=subscriber[1],
        notification_methods=list(contact_methods),
    )


def subscribed(
    subscriber: tuple[str, UUID], *contact_methods: SubscriberContactMethod
) -> list[ev.Event]:
    return [
        requested(subscriber),
        approved(subscriber),
        methods(subscriber, *contact_methods),
    ]


def posted(
    update_type: LabourUpdateType,
    message: str,
    application_generated: bool = False,
) -> ev.LabourUpdatePosted:
    return ev.LabourUpdatePosted(
        labour_id=LABOUR_ID,
        labour_update_id=UPDATE_ID,
        labour_update_type=update_type,
        message=message,
        application_generated=application_generated,
        sent_time=NOW,
    )


def type_updated(update_type: LabourUpdateType) -> ev.LabourUpdateTypeUpdated:
    return ev.LabourUpdateTypeUpdated(
        labour_id=LABOUR_ID,
        labour_update_id=UPDATE_ID,
        labour_update_type=update_type,
    )


def mixed_subscribers() -> list[ev.Event]:
    """Subscribers of every status; only GRANDMA, FRIEND and SILENT are SUBSCRIBED.

    FRIEND is approved before GRANDMA, but GRANDMA requested first, so GRANDMA
    comes first in list order.
    """
    return [
        requested(GRANDMA),
        requested(FRIEND),
        approved(FRIEND),
        approved(GRANDMA),
        methods(GRANDMA, SMS, EMAIL),
        methods(FRIEND, WHATSAPP),
        requested(AUNT),
        methods(AUNT, EMAIL),
        *subscribed(UNCLE, SMS),
        ev.SubscriberUnsubscribed(labour_id=LABOUR_ID, subscription_id=UNCLE[1]),
        *subscribed(COUSIN, EMAIL),
        ev.SubscriberRemoved(labour_id=LABOUR_ID, subscription_id=COUSIN[1]),
        *subscribed(NEIGHBOUR, WHATSAPP),
        ev.SubscriberBlocked(labour_id=LABOUR_ID, subscription_id=NEIGHBOUR[1]),
        *subscribed(SILENT),
    ]


def evaluate(history: list[ev.Event], event: ev.Event) -> tuple[int, list[Effect]]:
    """Apply `planned()`, `history` and `event`, then return the sequence of
    `event` and the effects its policy produces against the resulting state."""
    events = [planned(), *history, event]
    labour = apply_events(None, events, 1, NOW)
    sequence = len(events)
    return sequence, effects_for_event(labour, event, sequence)


def notify_key(
    sequence: int, recipient: str, notification_type: str, channel: str
) -> str:
    return f"{LABOUR_ID}:{sequence}:notify:{recipient}:{notification_type}:{channel}"


def subscriber_contexts(effects: list[Effect]) -> list[SubscriberContext]:
    contexts: list[SubscriberContext] = []
    for effect in effects:
        assert isinstance(effect.payload, SendNotification)
        assert isinstance(effect.payload.context, SubscriberContext)
        contexts.append(effect.payload.context)
    return contexts


def recipients(effects: list[Effect]) -> list[tuple[str, NotificationChannel]]:
    return [
        (context.recipient_user_id, context.channel)
        for context in subscriber_contexts(effects)
    ]


EXPECTED_MIXED_RECIPIENTS = [
    (GRANDMA[0], NotificationChannel.SMS),
    (GRANDMA[0], NotificationChannel.EMAIL),
    (FRIEND[0], NotificationChannel.WHATSAPP),
]


# Subscription token


def test_labour_planned_generates_subscription_token() -> None:
    event = planned()
    labour = apply_events(None, [event], 1, NOW)
    effects = effects_for_event(labour, event, 1)
    expected_key = f"{LABOUR_ID}:1:cmd:generate_subscription_token"
    assert effects == [
        Effect(
            effect_type=EffectType.COMMAND,
            idempotency_key=expected_key,
            payload=GenerateSubscriptionToken(
                labour_id=LABOUR_ID, idempotency_key=expected_key
            ),
        )
    ]


def test_token_invalidated_generates_subscription_token() -> None:
    token_set = ev.SubscriptionTokenSet(labour_id=LABOUR_ID, token="ABCD2345")
    event = ev.SubscriptionTokenInvalidated(labour_id=LABOUR_ID)
    sequence, effects = evaluate([token_set], event)
    expected_key = f"{LABOUR_ID}:{sequence}:cmd:generate_subscription_token"
    assert effects == [
        Effect(
            effect_type=EffectType.COMMAND,
            idempotency_key=expected_key,
            payload=GenerateSubscriptionToken(
                labour_id=LABOUR_ID, idempotency_key=expected_key
            ),
        )
    ]


# Labour begun


def test_labour_begun_notifies_each_subscriber_method() -> None:
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    sequence, effects = evaluate(mixed_subscribers(), event)
    assert recipients(effects) == EXPECTED_MIXED_RECIPIENTS
    assert [effect.idempotency_key for effect in effects] == [
        notify_key(sequence, GRANDMA[0], "labour_begun", "SMS"),
        notify_key(sequence, GRANDMA[0], "labour_begun", "EMAIL"),
        notify_key(sequence, FRIEND[0], "labour_begun", "WHATSAPP"),
    ]


def test_labour_begun_effect_contents() -> None:
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    sequence, effects = evaluate(subscribed(GRANDMA, SMS), event)
    key = notify_key(sequence, GRANDMA[0], "labour_begun", "SMS")
    assert effects == [
        Effect(
            effect_type=EffectType.NOTIFICATION,
            idempotency_key=key,
            payload=SendNotification(
                idempotency_key=key,
                context=SubscriberContext(
                    recipient_user_id=GRANDMA[0],
                    subscription_id=GRANDMA[1],
                    channel=NotificationChannel.SMS,
                    sender_id=MOTHER_ID,
                    notification=LabourBegunNotification(labour_id=LABOUR_ID),
                ),
            ),
        )
    ]


@pytest.mark.parametrize(
    ("final_event", "status"),
    [
        (None, SubscriberStatus.REQUESTED),
        (ev.SubscriberUnsubscribed, SubscriberStatus.UNSUBSCRIBED),
        (ev.SubscriberRemoved, SubscriberStatus.REMOVED),
        (ev.SubscriberBlocked, SubscriberStatus.BLOCKED),
    ],
)
def test_labour_begun_skips_subscriber_not_subscribed(
    final_event: type[ev.SubscriberUnsubscribed]
    | type[ev.SubscriberRemoved]
    | type[ev.SubscriberBlocked]
    | None,
    status: SubscriberStatus,
) -> None:
    history: list[ev.Event] = [requested(GRANDMA), methods(GRANDMA, EMAIL, SMS)]
    if final_event is not None:
        history.append(approved(GRANDMA))
        history.append(final_event(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]))
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    labour = apply_events(None, [planned(), *history, event], 1, NOW)
    assert labour.subscriptions[GRANDMA[1]].status is status
    assert effects_for_event(labour, event, len(history) + 2) == []


def test_labour_begun_without_subscribers() -> None:
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    _, effects = evaluate([], event)
    assert effects == []


def test_subscriber_without_contact_methods_gets_nothing() -> None:
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    _, effects = evaluate(subscribed(SILENT), event)
    assert effects == []


def test_unblocked_subscriber_gets_nothing() -> None:
    history = [
        *subscribed(GRANDMA, EMAIL),
        ev.SubscriberBlocked(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
        ev.SubscriberUnblocked(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ]
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    _, effects = evaluate(history, event)
    assert effects == []


def test_resubscribed_subscriber_keeps_list_position() -> None:
    history = [
        *subscribed(GRANDMA, EMAIL),
        *subscribed(FRIEND, EMAIL),
        ev.SubscriberUnsubscribed(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
        requested(GRANDMA),
        approved(GRANDMA),
    ]
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    _, effects = evaluate(history, event)
    assert recipients(effects) == [
        (GRANDMA[0], NotificationChannel.EMAIL),
        (FRIEND[0], NotificationChannel.EMAIL),
    ]


# Labour completed


@pytest.mark.parametrize("notes", [None, "", "A girl, 3.4 kg"])
def test_labour_completed_notifies_with_notes(notes: str | None) -> None:
    event = ev.LabourCompleted(labour_id=LABOUR_ID, notes=notes, end_time=NOW)
    sequence, effects = evaluate(mixed_subscribers(), event)
    assert recipients(effects) == EXPECTED_MIXED_RECIPIENTS
    expected = LabourCompletedNotification(labour_id=LABOUR_ID, notes=notes)
    for context in subscriber_contexts(effects):
        assert context.notification == expected
        assert context.sender_id == MOTHER_ID
    assert effects[0].idempotency_key == notify_key(
        sequence, GRANDMA[0], "labour_completed", "SMS"
    )


# Labour update posted


def test_announcement_posted_notifies_subscribers() -> None:
    event = posted(LabourUpdateType.ANNOUNCEMENT, "Waters have broken")
    sequence, effects = evaluate(mixed_subscribers(), event)
    assert recipients(effects) == EXPECTED_MIXED_RECIPIENTS
    expected = AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message="Waters have broken"
    )
    for context in subscriber_contexts(effects):
        assert context.notification == expected
    assert [effect.idempotency_key for effect in effects] == [
        notify_key(sequence, GRANDMA[0], "announcement", "SMS"),
        notify_key(sequence, GRANDMA[0], "announcement", "EMAIL"),
        notify_key(sequence, FRIEND[0], "announcement", "WHATSAPP"),
    ]


@pytest.mark.parametrize(
    "update_type", [LabourUpdateType.STATUS_UPDATE, LabourUpdateType.PRIVATE_NOTE]
)
def test_update_posted_other_type_notifies_nobody(
    update_type: LabourUpdateType,
) -> None:
    _, effects = evaluate(mixed_subscribers(), posted(update_type, "Resting"))
    assert effects == []


def test_application_announcement_posted_notifies_nobody() -> None:
    event = posted(LabourUpdateType.ANNOUNCEMENT, "labour_begun", True)
    _, effects = evaluate(mixed_subscribers(), event)
    assert effects == []


# Labour update type updated


def test_type_updated_to_announcement_uses_current_message() -> None:
    history = [
        *mixed_subscribers(),
        posted(LabourUpdateType.STATUS_UPDATE, "Resting"),
        ev.LabourUpdateMessageUpdated(
            labour_id=LABOUR_ID, labour_update_id=UPDATE_ID, message="On our way"
        ),
    ]
    sequence, effects = evaluate(history, type_updated(LabourUpdateType.ANNOUNCEMENT))
    assert recipients(effects) == EXPECTED_MIXED_RECIPIENTS
    expected = AnnouncementPostedNotification(labour_id=LABOUR_ID, message="On our way")
    for context in subscriber_contexts(effects):
        assert context.notification == expected
    assert effects[2].idempotency_key == notify_key(
        sequence, FRIEND[0], "announcement", "WHATSAPP"
    )


def test_type_updated_labour_begun_note_sends_labour_begun() -> None:
    history = [
        *mixed_subscribers(),
        posted(LabourUpdateType.PRIVATE_NOTE, "labour_begun", True),
    ]
    sequence, effects = evaluate(history, type_updated(LabourUpdateType.ANNOUNCEMENT))
    assert recipients(effects) == EXPECTED_MIXED_RECIPIENTS
    expected = LabourBegunNotification(labour_id=LABOUR_ID)
    for context in subscriber_contexts(effects):
        assert context.notification == expected
    assert [effect.idempotency_key for effect in effects] == [
        notify_key(sequence, GRANDMA[0], "labour_begun", "SMS"),
        notify_key(sequence, GRANDMA[0], "labour_begun", "EMAIL"),
        notify_key(sequence, FRIEND[0], "labour_begun", "WHATSAPP"),
    ]


def test_type_updated_announcement_note_sends_its_message() -> None:
    history = [
        *subscribed(GRANDMA, EMAIL),
        posted(LabourUpdateType.PRIVATE_NOTE, "announcement", True),
    ]
    sequence, effects = evaluate(history, type_updated(LabourUpdateType.ANNOUNCEMENT))
    contexts = subscriber_contexts(effects)
    assert [context.notification for context in contexts] == [
        AnnouncementPostedNotification(labour_id=LABOUR_ID, message="announcement")
    ]
    assert effects[0].idempotency_key == notify_key(
        sequence, GRANDMA[0], "announcement", "EMAIL"
    )


def test_type_updated_other_application_note_notifies_nobody() -> None:
    history = [
        *subscribed(GRANDMA, EMAIL),
        posted(LabourUpdateType.PRIVATE_NOTE, "labour_paused", True),
    ]
    _, effects = evaluate(history, type_updated(LabourUpdateType.ANNOUNCEMENT))
    assert effects == []


@pytest.mark.parametrize(
    "update_type", [LabourUpdateType.STATUS_UPDATE, LabourUpdateType.PRIVATE_NOTE]
)
def test_type_updated_away_from_announcement_notifies_nobody(
    update_type: LabourUpdateType,
) -> None:
    history = [
        *subscribed(GRANDMA, EMAIL),
        posted(LabourUpdateType.ANNOUNCEMENT, "Waters have broken"),
    ]
    _, effects = evaluate(history, type_updated(update_type))
    assert effects == []


def test_type_updated_unknown_update_notifies_nobody() -> None:
    labour = apply_events(None, [planned(), *subscribed(GRANDMA, EMAIL)], 1, NOW)
    event = type_updated(LabourUpdateType.ANNOUNCEMENT)
    assert effects_for_event(labour, event, 5) == []


def test_begun_and_labour_begun_note_both_notify() -> None:
    begun = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    note = posted(LabourUpdateType.PRIVATE_NOTE, "labour_begun", True)
    type_update = type_updated(LabourUpdateType.ANNOUNCEMENT)
    events = [planned(), *subscribed(GRANDMA, EMAIL), begun, note, type_update]
    labour_after_begun = apply_events(None, events[:5], 1, NOW)
    labour_after_type = apply_events(None, events, 1, NOW)
    begun_effects = effects_for_event(labour_after_begun, begun, 5)
    type_effects = effects_for_event(labour_after_type, type_update, 7)
    assert [effect.idempotency_key for effect in begun_effects] == [
        notify_key(5, GRANDMA[0], "labour_begun", "EMAIL")
    ]
    assert [effect.idempotency_key for effect in type_effects] == [
        notify_key(7, GRANDMA[0], "labour_begun", "EMAIL")
    ]


# Subscriber approved


@pytest.mark.parametrize(
    "contact_methods", [[], [SMS, WHATSAPP], [WHATSAPP, EMAIL, SMS]]
)
def test_subscriber_approved_notified_by_email_only(
    contact_methods: list[SubscriberContactMethod],
) -> None:
    history = [requested(GRANDMA), methods(GRANDMA, *contact_methods)]
    sequence, effects = evaluate(history, approved(GRANDMA))
    key = notify_key(sequence, GRANDMA[0], "approved", "EMAIL")
    assert effects == [
        Effect(
            effect_type=EffectType.NOTIFICATION,
            idempotency_key=key,
            payload=SendNotification(
                idempotency_key=key,
                context=SubscriberContext(
                    recipient_user_id=GRANDMA[0],
                    subscription_id=GRANDMA[1],
                    channel=NotificationChannel.EMAIL,
                    sender_id=MOTHER_ID,
                    notification=SubscriptionApprovedNotification(labour_id=LABOUR_ID),
                ),
            ),
        )
    ]


def test_subscriber_approved_notifies_only_that_subscriber() -> None:
    history = [*subscribed(FRIEND, SMS), requested(GRANDMA)]
    _, effects = evaluate(history, approved(GRANDMA))
    assert recipients(effects) == [(GRANDMA[0], NotificationChannel.EMAIL)]


def test_subscriber_approved_unknown_subscription_notifies_nobody() -> None:
    labour = apply_events(None, [planned()], 1, NOW)
    assert effects_for_event(labour, approved(GRANDMA), 2) == []


# Subscriber requested


def test_subscriber_requested_notifies_mother_by_email() -> None:
    sequence, effects = evaluate(subscribed(FRIEND, SMS), requested(GRANDMA))
    key = notify_key(sequence, MOTHER_ID, "subscriber_requested", "EMAIL")
    assert effects == [
        Effect(
            effect_type=EffectType.NOTIFICATION,
            idempotency_key=key,
            payload=SendNotification(
                idempotency_key=key,
                context=MotherContext(
                    recipient_user_id=MOTHER_ID,
                    channel=NotificationChannel.EMAIL,
                    notification=SubscriberRequestedNotification(
                        labour_id=LABOUR_ID,
                        subscription_id=GRANDMA[1],
                        requester_user_id=GRANDMA[0],
                    ),
                ),
            ),
        )
    ]


def test_repeated_request_notifies_mother_again() -> None:
    history = [
        *subscribed(GRANDMA, SMS),
        ev.SubscriberUnsubscribed(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ]
    sequence, effects = evaluate(history, requested(GRANDMA))
    assert [effect.idempotency_key for effect in effects] == [
        notify_key(sequence, MOTHER_ID, "subscriber_requested", "EMAIL")
    ]


# Labour invite sent


def test_labour_invite_sent_emails_the_address() -> None:
    event = ev.LabourInviteSent(labour_id=LABOUR_ID, invite_email="pat@example.org")
    sequence, effects = evaluate(mixed_subscribers(), event)
    key = notify_key(sequence, "pat@example.org", "invite", "EMAIL")
    assert effects == [
        Effect(
            effect_type=EffectType.NOTIFICATION,
            idempotency_key=key,
            payload=SendNotification(
                idempotency_key=key,
                context=EmailContext(
                    email="pat@example.org",
                    sender_id=MOTHER_ID,
                    notification=LabourInviteNotification(labour_id=LABOUR_ID),
                ),
            ),
        )
    ]


# Events without a policy

POLICY_EVENTS = {
    "LabourPlanned",
    "SubscriptionTokenInvalidated",
    "LabourBegun",
    "LabourCompleted",
    "LabourUpdatePosted",
    "LabourUpdateTypeUpdated",
    "SubscriberApproved",
    "SubscriberRequested",
    "LabourInviteSent",
}

NO_POLICY_EVENTS: list[ev.Event] = [
    ev.LabourPlanUpdated(
        labour_id=LABOUR_ID,
        first_labour=False,
        due_date=datetime(2024, 5, 21, tzinfo=UTC),
    ),
    ev.LabourDeleted(labour_id=LABOUR_ID),
    ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.ACTIVE),
    ev.ContractionStarted(
        labour_id=LABOUR_ID,
        contraction_id=UUID("0190f5b8-11c2-7d0e-8a5f-2b6c9e4d1a08"),
        start_time=NOW,
    ),
    ev.ContractionEnded(
        labour_id=LABOUR_ID, contraction_id=CONTRACTION_ID, end_time=NOW, intensity=6
    ),
    ev.ContractionUpdated(
        labour_id=LABOUR_ID, contraction_id=CONTRACTION_ID, intensity=4
    ),
    ev.ContractionDeleted(labour_id=LABOUR_ID, contraction_id=CONTRACTION_ID),
    ev.LabourUpdateMessageUpdated(
        labour_id=LABOUR_ID, labour_update_id=UPDATE_ID, message="Edited"
    ),
    ev.LabourUpdateDeleted(labour_id=LABOUR_ID, labour_update_id=UPDATE_ID),
    ev.SubscriptionTokenSet(labour_id=LABOUR_ID, token="ABCD2345"),
    ev.SubscriberUnsubscribed(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ev.SubscriberNotificationMethodsUpdated(
        labour_id=LABOUR_ID, subscription_id=GRANDMA[1], notification_methods=[SMS]
    ),
    ev.SubscriberAccessLevelUpdated(
        labour_id=LABOUR_ID,
        subscription_id=GRANDMA[1],
        access_level=SubscriberAccessLevel.SUPPORTER,
    ),
    ev.SubscriberRemoved(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ev.SubscriberBlocked(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ev.SubscriberUnblocked(labour_id=LABOUR_ID, subscription_id=GRANDMA[1]),
    ev.SubscriberRoleUpdated(
        labour_id=LABOUR_ID,
        subscription_id=GRANDMA[1],
        role=SubscriberRole.BIRTH_PARTNER,
    ),
]


def test_event_catalogue_split_into_policy_and_none() -> None:
    names = {event.name for event in NO_POLICY_EVENTS}
    assert names.isdisjoint(POLICY_EVENTS)
    assert names | POLICY_EVENTS == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", NO_POLICY_EVENTS, ids=lambda event: event.name)
def test_event_without_policy_yields_nothing(event: ev.Event) -> None:
    history = [
        *subscribed(GRANDMA, EMAIL, SMS),
        ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW),
        ev.ContractionStarted(
            labour_id=LABOUR_ID, contraction_id=CONTRACTION_ID, start_time=NOW
        ),
        posted(LabourUpdateType.ANNOUNCEMENT, "Waters have broken"),
    ]
    _, effects = evaluate(history, event)
    assert effects == []


# Contact method to channel


@pytest.mark.parametrize("method", list(SubscriberContactMethod))
def test_channel_of_maps_method_by_name(method: SubscriberContactMethod) -> None:
    assert channel_of(method).name == method.name


def test_effect_keys_unique_per_event() -> None:
    event = posted(LabourUpdateType.ANNOUNCEMENT, "Waters have broken")
    history = [*subscribed(GRANDMA, EMAIL, SMS, WHATSAPP), *subscribed(FRIEND, SMS)]
    _, effects = evaluate(history, event)
    keys = [effect.idempotency_key for effect in effects]
    assert len(keys) == 4
    assert len(set(keys)) == len(keys)


def test_subscribers_read_from_given_state() -> None:
    event = ev.LabourBegun(labour_id=LABOUR_ID, start_time=NOW)
    labour: Labour = apply_events(None, [planned(), *subscribed(GRANDMA, SMS)], 1, NOW)
    labour.subscriptions[GRANDMA[1]].contact_methods = [WHATSAPP]
    effects = effects_for_event(labour, event, 5)
    assert recipients(effects) == [(GRANDMA[0], NotificationChannel.WHATSAPP)]
