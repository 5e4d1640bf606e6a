"""Tests of the effect payload JSON form and the idempotency keys."""

import json
from uuid import UUID

import pytest

from fernd.domain.commands import (
    AdvanceLabourPhase,
    PostApplicationLabourUpdate,
    SetSubscriptionToken,
)
from fernd.domain.effects import (
    AnnouncementPostedNotification,
    EffectPayload,
    EffectPayloadError,
    EffectType,
    EmailContext,
    GenerateSubscriptionToken,
    IssueCommand,
    LabourBegunNotification,
    LabourCompletedNotification,
    LabourInviteNotification,
    MotherContext,
    SendNotification,
    SubscriberContext,
    SubscriberNotification,
    SubscriberRequestedNotification,
    SubscriptionApprovedNotification,
    command_key,
    decode_effect_payload,
    effect_of,
    encode_effect_payload,
    notification_key,
)
from fernd.domain.enums import LabourPhase, NotificationChannel

LABOUR_ID = UUID("0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d")
SUBSCRIPTION_ID = UUID("0190f5a9-5b7e-7c13-a2f4-8d1e6c9b3a52")
MOTHER_ID = "user_2mother"
GRANDMA_ID = "user_2grandma"

# The SendNotification example of the domain contract, as written there.
CONTRACT_EXAMPLE = """
{"SendNotification": {
  "idempotency_key": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d:88:notify:user_2grandma:announcement:SMS",
  "context": {"recipient_type": "Subscriber", "recipient_user_id": "user_2grandma",
              "subscription_id": "0190f5a9-5b7e-7c13-a2f4-8d1e6c9b3a52", "channel": "SMS",
              "sender_id": "user_2mother",
              "notification": {"type": "AnnouncementPosted",
                               "labour_id": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d",
                               "message": "Waters have broken, off to hospital"}}}}
"""

CONTRACT_EXAMPLE_KEY = (
    "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d:88:notify:user_2grandma:announcement:SMS"
)


def _subscriber_payload(notification: SubscriberNotification) -> SendNotification:
    return SendNotification(
        idempotency_key="key-subscriber",
        context=SubscriberContext(
            recipient_user_id=GRANDMA_ID,
            subscription_id=SUBSCRIPTION_ID,
            channel=NotificationChannel.WHATSAPP,
            sender_id=MOTHER_ID,
            notification=notification,
        ),
    )


ALL_PAYLOADS: list[EffectPayload] = [
    _subscriber_payload(LabourBegunNotification(labour_id=LABOUR_ID)),
    _subscriber_payload(LabourCompletedNotification(labour_id=LABOUR_ID)),
    _subscriber_payload(
        LabourCompletedNotification(labour_id=LABOUR_ID, notes="A girl, 3.4 kg")
    ),
    _subscriber_payload(LabourCompletedNotification(labour_id=LABOUR_ID, notes="")),
    _subscriber_payload(
        AnnouncementPostedNotification(labour_id=LABOUR_ID, message="Off we go")
    ),
    _subscriber_payload(SubscriptionApprovedNotification(labour_id=LABOUR_ID)),
    SendNotification(
        idempotency_key="key-mother",
        context=MotherContext(
            recipient_user_id=MOTHER_ID,
            channel=NotificationChannel.EMAIL,
            notification=SubscriberRequestedNotification(
                labour_id=LABOUR_ID,
                subscription_id=SUBSCRIPTION_ID,
                requester_user_id=GRANDMA_ID,
            ),
        ),
    ),
    SendNotification(
        idempotency_key="key-email",
        context=EmailContext(
            email="grandma@example.org",
            sender_id=MOTHER_ID,
            notification=LabourInviteNotification(labour_id=LABOUR_ID),
        ),
    ),
    GenerateSubscriptionToken(labour_id=LABOUR_ID, idempotency_key="key-token"),
    IssueCommand(
        command=SetSubscriptionToken(labour_id=LABOUR_ID, token="ABCD2345"),
        idempotency_key="key-set-token",
    ),
    IssueCommand(
        command=AdvanceLabourPhase(
            labour_id=LABOUR_ID, labour_phase=LabourPhase.PUSHING
        ),
        idempotency_key="key-advance",
    ),
    IssueCommand(
        command=PostApplicationLabourUpdate(
            labour_id=LABOUR_ID, message="labour_begun"
        ),
        idempotency_key="key-post",
    ),
]


# Idempotency keys


def test_notification_key_matches_contract_example() -> None:
    key = notification_key(
        LABOUR_ID, 88, GRANDMA_ID, "announcement", NotificationChannel.SMS
    )
    assert key == CONTRACT_EXAMPLE_KEY


def test_notification_key_uses_channel_name() -> None:
    key = notification_key(
        LABOUR_ID, 3, "friend@example.org", "invite", NotificationChannel.WHATSAPP
    )
    assert key == f"{LABOUR_ID}:3:notify:friend@example.org:invite:WHATSAPP"


def test_command_key_format() -> None:
    key = command_key(LABOUR_ID, 1, "generate_subscription_token")
    assert key == (
        "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d:1:cmd:generate_subscription_token"
    )


# Effect


def test_effect_of_notification_payload() -> None:
    payload = ALL_PAYLOADS[0]
    effect = effect_of(payload)
    assert effect.effect_type is EffectType.NOTIFICATION
    assert effect.idempotency_key == "key-subscriber"
    assert effect.payload is payload


@pytest.mark.parametrize(
    "payload",
    [
        GenerateSubscriptionToken(labour_id=LABOUR_ID, idempotency_key="key-token"),
        IssueCommand(
            command=SetSubscriptionToken(labour_id=LABOUR_ID, token="ABCD2345"),
            idempotency_key="key-token",
        ),
    ],
)
def test_effect_of_command_payload(payload: EffectPayload) -> None:
    effect = effect_of(payload)
    assert effect.effect_type is EffectType.COMMAND
    assert effect.idempotency_key == "key-token"


# Contract example


def test_contract_example_decodes() -> None:
    payload = decode_effect_payload(CONTRACT_EXAMPLE.encode())
    assert isinstance(payload, SendNotification)
    assert payload.idempotency_key == CONTRACT_EXAMPLE_KEY
    context = payload.context
    assert isinstance(context, SubscriberContext)
    assert context.recipient_user_id == GRANDMA_ID
    assert context.subscription_id == SUBSCRIPTION_ID
    assert context.channel is NotificationChannel.SMS
    assert context.sender_id == MOTHER_ID
    assert context.notification == AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message="Waters have broken, off to hospital"
    )


def test_contract_example_reencodes_identically() -> None:
    payload = decode_effect_payload(CONTRACT_EXAMPLE.encode())
    encoded = encode_effect_payload(payload)
    assert json.loads(encoded) == json.loads(CONTRACT_EXAMPLE)


def test_contract_example_built_from_structs() -> None:
    payload = SendNotification(
        idempotency_key=CONTRACT_EXAMPLE_KEY,
        context=SubscriberContext(
            recipient_user_id=GRANDMA_ID,
            subscription_id=SUBSCRIPTION_ID,
            channel=NotificationChannel.SMS,
            sender_id=MOTHER_ID,
            notification=AnnouncementPostedNotification(
                labour_id=LABOUR_ID, message="Waters have broken, off to hospital"
            ),
        ),
    )
    assert json.loads(encode_effect_payload(payload)) == json.loads(CONTRACT_EXAMPLE)


# Exact shapes of the other variants


def test_generate_subscription_token_shape() -> None:
    payload = GenerateSubscriptionToken(labour_id=LABOUR_ID, idempotency_key="k")
    assert json.loads(encode_effect_payload(payload)) == {
        "GenerateSubscriptionToken": {
            "labour_id": str(LABOUR_ID),
            "idempotency_key": "k",
        }
    }


def test_issue_command_shape() -> None:
    payload = IssueCommand(
        command=SetSubscriptionToken(labour_id=LABOUR_ID, token="ABCD2345"),
        idempotency_key="k",
    )
    assert json.loads(encode_effect_payload(payload)) == {
        "IssueCommand": {
            "command": {
                "SetSubscriptionToken": {
                    "labour_id": str(LABOUR_ID),
                    "token": "ABCD2345",
                }
            },
            "idempotency_key": "k",
        }
    }


def test_mother_context_shape() -> None:
    payload = ALL_PAYLOADS[6]
    assert json.loads(encode_effect_payload(payload)) == {
        "SendNotification": {
            "idempotency_key": "key-mother",
            "context": {
                "recipient_type": "Mother",
                "recipient_user_id": MOTHER_ID,
                "channel": "EMAIL",
                "notification": {
                    "type": "SubscriberRequested",
                    "labour_id": str(LABOUR_ID),
                    "subscription_id": str(SUBSCRIPTION_ID),
                    "requester_user_id": GRANDMA_ID,
                },
            },
        }
    }


def test_email_context_shape() -> None:
    payload = ALL_PAYLOADS[7]
    assert json.loads(encode_effect_payload(payload)) == {
        "SendNotification": {
            "idempotency_key": "key-email",
            "context": {
                "recipient_type": "Email",
                "email": "grandma@example.org",
                "sender_id": MOTHER_ID,
                "notification": {"type": "LabourInvite", "labour_id": str(LABOUR_ID)},
            },
        }
    }


@pytest.mark.parametrize(
    ("notification", "expected"),
    [
        (
            LabourBegunNotification(labour_id=LABOUR_ID),
            {"type": "LabourBegun", "labour_id": str(LABOUR_ID)},
        ),
        (
            LabourCompletedNotification(labour_id=LABOUR_ID),
            {"type": "LabourCompleted", "labour_id": str(LABOUR_ID), "notes": None},
        ),
        (
            LabourCompletedNotification(labour_id=LABOUR_ID, notes="Here at last"),
            {
                "type": "LabourCompleted",
                "labour_id": str(LABOUR_ID),
                "notes": "Here at last",
            },
        ),
        (
            AnnouncementPostedNotification(labour_id=LABOUR_ID, message="Hi"),
            {
                "type": "AnnouncementPosted",
                "labour_id": str(LABOUR_ID),
                "message": "Hi",
            },
        ),
        (
            SubscriptionApprovedNotification(labour_id=LABOUR_ID),
            {"type": "SubscriptionApproved", "labour_id": str(LABOUR_ID)},
        ),
    ],
)
def test_subscriber_notification_shape(
    notification: SubscriberNotification, expected: dict[str, object]
) -> None:
    encoded = json.loads(encode_effect_payload(_subscriber_payload(notification)))
    context = encoded["SendNotification"]["context"]
    assert context["recipient_type"] == "Subscriber"
    assert context["notification"] == expected


# Round trips


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_payload_round_trip(payload: EffectPayload) -> None:
    decoded = decode_effect_payload(encode_effect_payload(payload))
    assert decoded == payload


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_payload_has_one_key_named_for_variant(payload: EffectPayload) -> None:
    encoded = json.loads(encode_effect_payload(payload))
    assert list(encoded) == [type(payload).__name__]


# Rejected input


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"{}", id="no-key"),
        pytest.param(
            b'{"GenerateSubscriptionToken": {"labour_id": "%s", '
            b'"idempotency_key": "k"}, "IssueCommand": {}}' % str(LABOUR_ID).encode(),
            id="two-keys",
        ),
        pytest.param(b'{"RunCommand": {}}', id="unknown-variant"),
        pytest.param(
            b'{"GenerateSubscriptionToken": {"labour_id": "nope", '
            b'"idempotency_key": "k"}}',
            id="invalid-uuid",
        ),
        pytest.param(
            b'{"GenerateSubscriptionToken": {"labour_id": "%s"}}'
            % str(LABOUR_ID).encode(),
            id="missing-key",
        ),
        pytest.param(
            b'{"IssueCommand": {"command": {"PlanLabour": {}}, '
            b'"idempotency_key": "k"}}',
            id="public-command",
        ),
        pytest.param(
            b'{"IssueCommand": {"command": {}, "idempotency_key": "k"}}',
            id="empty-command",
        ),
        pytest.param(
            b'{"SendNotification": {"idempotency_key": "k", "context": '
            b'{"recipient_type": "Stranger", "email": "a@b.c", "sender_id": "m", '
            b'"notification": {"type": "LabourInvite", "labour_id": "%s"}}}}'
            % str(LABOUR_ID).encode(),
            id="unknown-recipient-type",
        ),
        pytest.param(
            b'{"SendNotification": {"idempotency_key": "k", "context": '
            b'{"recipient_type": "Mother", "recipient_user_id": "m", '
            b'"channel": "EMAIL", '
            b'"notification": {"type": "LabourBegun", "labour_id": "%s"}}}}'
            % str(LABOUR_ID).encode(),
            id="notification-of-other-context",
        ),
        pytest.param(
            b'{"SendNotification": {"idempotency_key": "k", "context": '
            b'{"recipient_type": "Mother", "recipient_user_id": "m", '
            b'"channel": "email", "notification": {"type": "SubscriberRequested", '
            b'"labour_id": "%s", "subscription_id": "%s", '
            b'"requester_user_id": "u"}}}}'
            % (str(LABOUR_ID).encode(), str(SUBSCRIPTION_ID).encode()),
            id="lower-case-channel",
        ),
    ],
)
def test_decode_effect_payload_rejects(data: bytes) -> None:
    with pytest.raises(EffectPayloadError):
        decode_effect_payload(data)
