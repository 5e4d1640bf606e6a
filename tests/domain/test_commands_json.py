"""JSON parsing of public commands, command fingerprints, and the stored form
of every event."""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.commands import CommandParseError, command_fingerprint, decode_command
from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
)
from fernd.domain.events import EVENT_TYPES, decode_event, encode_event

LABOUR_ID = "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d"
CONTRACTION_ID = "0190f5b8-11c2-7d0e-8a5f-2b6c9e4d1a07"
SUBSCRIPTION_ID = "0190f5c0-0000-7000-8000-000000000001"


def body(group: str, name: str, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": group, "payload": {"type": name, "payload": payload}}
    ).encode()


def end_contraction(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "labour_id": LABOUR_ID,
        "contraction_id": CONTRACTION_ID,
        "end_time": "2024-05-01T10:01:05.250Z",
        "intensity": 6,
    }
    payload.update(overrides)
    return body("Contraction", "EndContraction", payload)


def plan_labour(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "labour_id": LABOUR_ID,
        "first_labour": True,
        "due_date": "2024-05-20T00:00:00Z",
    }
    payload.update(overrides)
    return body("Labour", "PlanLabour", payload)


def without(payload_body: bytes, field: str) -> bytes:
    document = json.loads(payload_body)
    del document["payload"]["payload"][field]
    return json.dumps(document).encode()


# Decoding


def test_decode_command_reads_contract_example() -> None:
    decoded = decode_command(end_contraction())

    assert decoded == cmd.EndContraction(
        labour_id=UUID(LABOUR_ID),
        contraction_id=UUID(CONTRACTION_ID),
        end_time=datetime(2024, 5, 1, 10, 1, 5, 250000, tzinfo=UTC),
        intensity=6,
    )


def test_decode_command_reads_every_public_command() -> None:
    payloads: dict[str, dict[str, Any]] = {
        "PlanLabour": {"first_labour": False, "due_date": "2024-05-20T00:00:00Z"},
        "UpdateLabourPlan": {"first_labour": False, "due_date": "2024-05-20T00:00:00Z"},
        "BeginLabour": {},
        "CompleteLabour": {},
        "SendLabourInvite": {"invite_email": "friend@example.com"},
        "DeleteLabour": {},
        "StartContraction": {"contraction_id": CONTRACTION_ID},
        "EndContraction": {"contraction_id": CONTRACTION_ID, "intensity": 3},
        "UpdateContraction": {"contraction_id": CONTRACTION_ID},
        "DeleteContraction": {"contraction_id": CONTRACTION_ID},
        "PostLabourUpdate": {"labour_update_type": "STATUS_UPDATE", "message": "Hi"},
        "UpdateLabourUpdateMessage": {
            "labour_update_id": SUBSCRIPTION_ID,
            "message": "Hi",
        },
        "UpdateLabourUpdateType": {
            "labour_update_id": SUBSCRIPTION_ID,
            "labour_update_type": "ANNOUNCEMENT",
        },
        "DeleteLabourUpdate": {"labour_update_id": SUBSCRIPTION_ID},
        "RequestAccess": {"token": "ABCDEF23"},
        "Unsubscribe": {"subscription_id": SUBSCRIPTION_ID},
        "UpdateNotificationMethods": {
            "subscription_id": SUBSCRIPTION_ID,
            "notification_methods": ["EMAIL", "WHATSAPP"],
        },
        "UpdateAccessLevel": {
            "subscription_id": SUBSCRIPTION_ID,
            "access_level": "SUPPORTER",
        },
        "ApproveSubscriber": {"subscription_id": SUBSCRIPTION_ID},
        "RemoveSubscriber": {"subscription_id": SUBSCRIPTION_ID},
        "BlockSubscriber": {"subscription_id": SUBSCRIPTION_ID},
        "UnblockSubscriber": {"subscription_id": SUBSCRIPTION_ID},
        "UpdateSubscriberRole": {
            "subscription_id": SUBSCRIPTION_ID,
            "role": "BIRTH_PARTNER",
        },
        "InvalidateSubscriptionToken": {},
    }
    assert len(cmd.PUBLIC_COMMANDS) == 24

    for (group, name), cls in cmd.PUBLIC_COMMANDS.items():
        payload = {"labour_id": LABOUR_ID, **payloads[name]}
        decoded = decode_command(body(group, name, payload))
        assert type(decoded) is cls, name


def test_decode_command_reads_rebuild_read_models() -> None:
    decoded = decode_command(
        body("Admin", "RebuildReadModels", {"aggregate_id": LABOUR_ID})
    )

    assert decoded == cmd.RebuildReadModels(aggregate_id=UUID(LABOUR_ID))
    assert decoded.target_labour_id == UUID(LABOUR_ID)


def test_decode_command_reads_enum_spellings() -> None:
    decoded = decode_command(
        body(
            "Subscriber",
            "UpdateNotificationMethods",
            {
                "labour_id": LABOUR_ID,
                "subscription_id": SUBSCRIPTION_ID,
                "notification_methods": ["SMS", "EMAIL"],
            },
        )
    )

    assert isinstance(decoded, cmd.UpdateNotificationMethods)
    assert decoded.notification_methods == [
        SubscriberContactMethod.SMS,
        SubscriberContactMethod.EMAIL,
    ]


# Strictness


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(end_contraction(intensity=5.0), id="float-for-int"),
        pytest.param(end_contraction(intensity="5"), id="string-for-int"),
        pytest.param(end_contraction(intensity=True), id="bool-for-int"),
        pytest.param(end_contraction(intensity=None), id="null-for-required-int"),
        pytest.param(plan_labour(first_labour=1), id="number-for-bool"),
        pytest.param(plan_labour(first_labour="true"), id="string-for-bool"),
        pytest.param(without(end_contraction(), "intensity"), id="missing-intensity"),
        pytest.param(without(end_contraction(), "labour_id"), id="missing-labour-id"),
        pytest.param(without(plan_labour(), "due_date"), id="missing-due-date"),
        pytest.param(plan_labour(due_date="2024-05-20T00:00:00"), id="naive-datetime"),
        pytest.param(plan_labour(due_date="2024-05-20"), id="date-only"),
        pytest.param(plan_labour(due_date="tomorrow"), id="unparsable-datetime"),
        pytest.param(plan_labour(due_date=1716163200), id="number-for-datetime"),
        pytest.param(end_contraction(end_time="10:01:05Z"), id="time-only"),
        pytest.param(end_contraction(contraction_id="not-a-uuid"), id="bad-uuid"),
        pytest.param(
            end_contraction(contraction_id="{" + CONTRACTION_ID + "}"),
            id="braced-uuid",
        ),
        pytest.param(
            end_contraction(contraction_id="urn:uuid:" + CONTRACTION_ID),
            id="urn-uuid",
        ),
        pytest.param(
            end_contraction(contraction_id=CONTRACTION_ID[:-1]), id="short-uuid"
        ),
        pytest.param(
            body(
                "LabourUpdate",
                "PostLabourUpdate",
                {
                    "labour_id": LABOUR_ID,
                    "labour_update_type": "announcement",
                    "message": "Hi",
                },
            ),
            id="lower-case-enum",
        ),
        pytest.param(
            body(
                "Subscription",
                "UpdateSubscriberRole",
                {
                    "labour_id": LABOUR_ID,
                    "subscription_id": SUBSCRIPTION_ID,
                    "role": "PARTNER",
                },
            ),
            id="unknown-enum",
        ),
        pytest.param(
            body(
                "Subscriber",
                "UpdateNotificationMethods",
                {
                    "labour_id": LABOUR_ID,
                    "subscription_id": SUBSCRIPTION_ID,
                    "notification_methods": ["EMAIL", "PIGEON"],
                },
            ),
            id="unknown-enum-in-list",
        ),
        pytest.param(
            body("Contraction", "StopContraction", {"labour_id": LABOUR_ID}),
            id="unknown-command",
        ),
        pytest.param(
            body("Birth", "BeginLabour", {"labour_id": LABOUR_ID}),
            id="unknown-group",
        ),
        pytest.param(
            body("Contraction", "BeginLabour", {"labour_id": LABOUR_ID}),
            id="command-in-wrong-group",
        ),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"type": "Labour"}', id="missing-payload"),
        pytest.param(
            b'{"type": "Labour", "payload": {"type": "BeginLabour"}}',
            id="missing-inner-payload",
        ),
        pytest.param(
            b'{"type": "Labour", "payload": {"type": "BeginLabour", "payload": []}}',
            id="inner-payload-not-object",
        ),
    ],
)
def test_decode_command_rejects(request_body: bytes) -> None:
    with pytest.raises(CommandParseError):
        decode_command(request_body)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "msgspec accepts a UTC offset without a colon (+0100), which is not "
        "RFC 3339; a request datetime must use Z or +HH:MM"
    ),
)
def test_decode_command_rejects_offset_without_colon() -> None:
    with pytest.raises(CommandParseError):
        decode_command(end_contraction(end_time="2024-05-01T11:01:05+0100"))


@pytest.mark.parametrize(
    ("group", "name", "payload"),
    [
        ("Internal", "SetSubscriptionToken", {"token": "ABCDEF23"}),
        ("Internal", "AdvanceLabourPhase", {"labour_phase": "ACTIVE"}),
        ("Internal", "PostApplicationLabourUpdate", {"message": "note"}),
        ("Subscription", "SetSubscriptionToken", {"token": "ABCDEF23"}),
        ("Labour", "AdvanceLabourPhase", {"labour_phase": "ACTIVE"}),
        ("LabourUpdate", "PostApplicationLabourUpdate", {"message": "note"}),
    ],
)
def test_decode_command_rejects_internal_commands(
    group: str, name: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(CommandParseError):
        decode_command(body(group, name, {"labour_id": LABOUR_ID, **payload}))


# Identifiers


@pytest.mark.parametrize(
    "spelling",
    [
        CONTRACTION_ID,
        CONTRACTION_ID.upper(),
        CONTRACTION_ID.replace("-", ""),
        CONTRACTION_ID.replace("-", "").upper(),
    ],
    ids=["canonical", "upper-case", "32-digit", "32-digit-upper-case"],
)
def test_decode_command_accepts_uuid_forms(spelling: str) -> None:
    decoded = decode_command(end_contraction(contraction_id=spelling))

    assert isinstance(decoded, cmd.EndContraction)
    assert decoded.contraction_id == UUID(CONTRACTION_ID)
    encoded = json.loads(msgspec.json.encode(decoded))
    assert encoded["contraction_id"] == CONTRACTION_ID


def test_event_writes_uuid_lower_case_hyphenated() -> None:
    decoded = decode_command(end_contraction(contraction_id=CONTRACTION_ID.upper()))
    assert isinstance(decoded, cmd.EndContraction)
    assert decoded.end_time is not None
    event = ev.ContractionEnded(
        labour_id=decoded.labour_id,
        contraction_id=decoded.contraction_id,
        end_time=decoded.end_time,
        intensity=decoded.intensity,
    )

    data = json.loads(encode_event(event))["data"]

    assert data["contraction_id"] == CONTRACTION_ID


# Datetimes


def test_decode_command_converts_offset_to_utc() -> None:
    decoded = decode_command(end_contraction(end_time="2024-05-01T11:01:05+01:00"))

    assert isinstance(decoded, cmd.EndContraction)
    assert decoded.end_time == datetime(2024, 5, 1, 10, 1, 5, tzinfo=UTC)
    assert decoded.end_time is not None
    assert decoded.end_time.utcoffset() is not None
    assert decoded.end_time.tzinfo is UTC


def test_decode_command_converts_negative_offset_to_utc() -> None:
    decoded = decode_command(end_contraction(end_time="2024-04-30T23:30:00-10:30"))

    assert isinstance(decoded, cmd.EndContraction)
    assert decoded.end_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert decoded.end_time is not None
    assert decoded.end_time.tzinfo is UTC


def test_decode_command_plan_due_date_in_utc() -> None:
    decoded = decode_command(plan_labour(due_date="2024-05-20T02:00:00+02:00"))

    assert isinstance(decoded, cmd.PlanLabour)
    assert decoded.due_date == datetime(2024, 5, 20, tzinfo=UTC)
    assert decoded.due_date.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:01:05.1234564Z", datetime(2024, 5, 1, 10, 1, 5, 123456, UTC)),
        ("2024-05-01T10:01:05.1234567Z", datetime(2024, 5, 1, 10, 1, 5, 123457, UTC)),
        ("2024-05-01T10:01:05.123456789Z", datetime(2024, 5, 1, 10, 1, 5, 123457, UTC)),
        ("2024-05-01T10:01:05.9999996Z", datetime(2024, 5, 1, 10, 1, 6, tzinfo=UTC)),
    ],
)
def test_decode_command_rounds_to_microseconds(text: str, expected: datetime) -> None:
    decoded = decode_command(end_contraction(end_time=text))

    assert isinstance(decoded, cmd.EndContraction)
    assert decoded.end_time == expected


# Unknown, omitted and null fields


def test_decode_command_ignores_unknown_fields() -> None:
    document = json.loads(end_contraction(colour="blue"))
    document["extra"] = 1
    document["payload"]["extra"] = {"nested": True}

    decoded = decode_command(json.dumps(document).encode())

    assert decoded == decode_command(end_contraction())


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        (plan_labour(), "labour_name"),
        (plan_labour(), "mother_id"),
        (end_contraction(), "end_time"),
        (
            body(
                "Contraction",
                "UpdateContraction",
                {"labour_id": LABOUR_ID, "contraction_id": CONTRACTION_ID},
            ),
            "intensity",
        ),
        (body("Labour", "CompleteLabour", {"labour_id": LABOUR_ID}), "notes"),
    ],
)
def test_omitted_optional_equals_null(request_body: bytes, field: str) -> None:
    document = json.loads(request_body)
    document["payload"]["payload"].pop(field, None)
    omitted = json.dumps(document).encode()
    document["payload"]["payload"][field] = None
    null = json.dumps(document).encode()

    assert decode_command(omitted) == decode_command(null)
    assert getattr(decode_command(omitted), field) is None


# Fingerprints


def test_fingerprint_same_for_omitted_and_null() -> None:
    omitted = decode_command(plan_labour())
    null = decode_command(plan_labour(labour_name=None, mother_id=None))

    assert command_fingerprint(omitted) == command_fingerprint(null)


def test_fingerprint_same_for_uuid_spellings() -> None:
    lower = decode_command(end_contraction())
    upper = decode_command(end_contraction(contraction_id=CONTRACTION_ID.upper()))

    assert command_fingerprint(lower) == command_fingerprint(upper)


def test_fingerprint_ignores_unknown_fields() -> None:
    plain = decode_command(end_contraction())
    extra = decode_command(end_contraction(colour="blue"))

    assert command_fingerprint(plain) == command_fingerprint(extra)


def test_fingerprint_differs_for_different_payload() -> None:
    six = decode_command(end_contraction(intensity=6))
    seven = decode_command(end_contraction(intensity=7))

    assert command_fingerprint(six) != command_fingerprint(seven)


def test_fingerprint_differs_for_null_and_value() -> None:
    unnamed = decode_command(plan_labour())
    named = decode_command(plan_labour(labour_name="Baby"))

    assert command_fingerprint(unnamed) != command_fingerprint(named)


def test_fingerprint_differs_for_same_fields_other_command() -> None:
    payload = {"labour_id": LABOUR_ID, "subscription_id": SUBSCRIPTION_ID}
    approve = decode_command(body("Subscription", "ApproveSubscriber", payload))
    block = decode_command(body("Subscription", "BlockSubscriber", payload))

    assert command_fingerprint(approve) != command_fingerprint(block)


def test_fingerprint_ignores_field_order() -> None:
    forward = b'{"type":"Contraction","payload":{"type":"DeleteContraction",' + (
        b'"payload":{"labour_id":"%s","contraction_id":"%s"}}}'
        % (LABOUR_ID.encode(), CONTRACTION_ID.encode())
    )
    backward = (
        b'{"payload":{"payload":{"contraction_id":"%s","labour_id":"%s"},'
        % (
            CONTRACTION_ID.encode(),
            LABOUR_ID.encode(),
        )
        + b'"type":"DeleteContraction"},"type":"Contraction"}'
    )

    assert command_fingerprint(decode_command(forward)) == command_fingerprint(
        decode_command(backward)
    )


# Internal commands in effect payloads


def test_internal_command_round_trip() -> None:
    original = cmd.AdvanceLabourPhase(
        labour_id=UUID(LABOUR_ID), labour_phase=LabourPhase.ACTIVE
    )

    encoded = cmd.encode_internal_command(original)

    assert encoded == {
        "AdvanceLabourPhase": {"labour_id": LABOUR_ID, "labour_phase": "ACTIVE"}
    }
    assert cmd.decode_internal_command(encoded) == original


@pytest.mark.parametrize(
    "value",
    [
        {"BeginLabour": {"labour_id": LABOUR_ID}},
        {"SetSubscriptionToken": {"labour_id": LABOUR_ID}},
        {"SetSubscriptionToken": {"labour_id": LABOUR_ID, "token": "A"}, "x": {}},
        [],
    ],
    ids=["public-command", "missing-field", "two-keys", "not-an-object"],
)
def test_decode_internal_command_rejects(value: object) -> None:
    with pytest.raises(CommandParseError):
        cmd.decode_internal_command(value)


# Events: the stored form and its round trip

LABOUR = UUID(LABOUR_ID)
CONTRACTION = UUID(CONTRACTION_ID)
SUBSCRIPTION = UUID(SUBSCRIPTION_ID)
UPDATE = UUID("0190f5c0-0000-7000-8000-000000000002")
WHEN = datetime(2024, 5, 1, 10, 1, 5, 250000, tzinfo=UTC)
WHOLE_SECOND = datetime(2024, 5, 1, 10, 1, 5, tzinfo=UTC)

EVENT_SAMPLES: list[ev.Event] = [
    ev.LabourPlanned(
        labour_id=LABOUR,
        mother_id="user-mother",
        mother_name="Alice",
        first_labour=True,
        due_date=WHOLE_SECOND,
        labour_name="Baby",
    ),
    ev.LabourPlanUpdated(
        labour_id=LABOUR, first_labour=False, due_date=WHEN, labour_name="Baby 2"
    ),
    ev.LabourBegun(labour_id=LABOUR, start_time=WHEN),
    ev.LabourCompleted(labour_id=LABOUR, notes="Done", end_time=WHEN),
    ev.LabourInviteSent(labour_id=LABOUR, invite_email="friend@example.com"),
    ev.LabourDeleted(labour_id=LABOUR),
    ev.LabourPhaseChanged(labour_id=LABOUR, labour_phase=LabourPhase.TRANSITION),
    ev.ContractionStarted(
        labour_id=LABOUR, contraction_id=CONTRACTION, start_time=WHEN
    ),
    ev.ContractionEnded(
        labour_id=LABOUR, contraction_id=CONTRACTION, end_time=WHEN, intensity=6
    ),
    ev.ContractionUpdated(
        labour_id=LABOUR,
        contraction_id=CONTRACTION,
        start_time=WHOLE_SECOND,
        end_time=WHEN,
        intensity=0,
    ),
    ev.ContractionDeleted(labour_id=LABOUR, contraction_id=CONTRACTION),
    ev.LabourUpdatePosted(
        labour_id=LABOUR,
        labour_update_id=UPDATE,
        labour_update_type=LabourUpdateType.ANNOUNCEMENT,
        message="Baby is here \U0001f476",
        application_generated=False,
        sent_time=WHEN,
    ),
    ev.LabourUpdateMessageUpdated(
        labour_id=LABOUR, labour_update_id=UPDATE, message="Edited"
    ),
    ev.LabourUpdateTypeUpdated(
        labour_id=LABOUR,
        labour_update_id=UPDATE,
        labour_update_type=LabourUpdateType.PRIVATE_NOTE,
    ),
    ev.LabourUpdateDeleted(labour_id=LABOUR, labour_update_id=UPDATE),
    ev.SubscriptionTokenSet(labour_id=LABOUR, token="ABCDEF23"),
    ev.SubscriptionTokenInvalidated(labour_id=LABOUR),
    ev.SubscriberRequested(
        labour_id=LABOUR, subscriber_id="user-friend", subscription_id=SUBSCRIPTION
    ),
    ev.SubscriberUnsubscribed(labour_id=LABOUR, subscription_id=SUBSCRIPTION),
    ev.SubscriberNotificationMethodsUpdated(
        labour_id=LABOUR,
        subscription_id=SUBSCRIPTION,
        notification_methods=[
            SubscriberContactMethod.WHATSAPP,
            SubscriberContactMethod.EMAIL,
        ],
    ),
    ev.SubscriberAccessLevelUpdated(
        labour_id=LABOUR,
        subscription_id=SUBSCRIPTION,
        access_level=SubscriberAccessLevel.SUPPORTER,
    ),
    ev.SubscriberApproved(labour_id=LABOUR, subscription_id=SUBSCRIPTION),
    ev.SubscriberRemoved(labour_id=LABOUR, subscription_id=SUBSCRIPTION),
    ev.SubscriberBlocked(labour_id=LABOUR, subscription_id=SUBSCRIPTION),
    ev.SubscriberUnblocked(labour_id=LABOUR, subscription_id=SUBSCRIPTION),
    ev.SubscriberRoleUpdated(
        labour_id=LABOUR,
        subscription_id=SUBSCRIPTION,
        role=SubscriberRole.BIRTH_PARTNER,
    ),
]
# Variants whose optional fields are absent.
EVENT_NULL_SAMPLES: list[ev.Event] = [
    ev.LabourPlanned(
        labour_id=LABOUR,
        mother_id="user-mother",
        mother_name="unknown",
        first_labour=False,
        due_date=WHEN,
    ),
    ev.LabourPlanUpdated(labour_id=LABOUR, first_labour=True, due_date=WHEN),
    ev.LabourCompleted(labour_id=LABOUR, end_time=WHEN),
    ev.ContractionUpdated(labour_id=LABOUR, contraction_id=CONTRACTION),
    ev.SubscriberNotificationMethodsUpdated(
        labour_id=LABOUR, subscription_id=SUBSCRIPTION, notification_methods=[]
    ),
]


def test_event_samples_cover_all_26_events() -> None:
    assert len(EVENT_TYPES) == 26
    assert [event.name for event in EVENT_SAMPLES] == list(EVENT_TYPES)


@pytest.mark.parametrize(
    "event",
    EVENT_SAMPLES + EVENT_NULL_SAMPLES,
    ids=[event.name for event in EVENT_SAMPLES]
    + [f"{event.name}-nulls" for event in EVENT_NULL_SAMPLES],
)
def test_event_round_trip(event: ev.Event) -> None:
    decoded = decode_event(encode_event(event))

    assert decoded == event
    assert type(decoded) is type(event)


@pytest.mark.parametrize("event", EVENT_SAMPLES, ids=lambda event: event.name)
def test_event_stored_form(event: ev.Event) -> None:
    stored = json.loads(encode_event(event))

    assert set(stored) == {"type", "data"}
    assert stored["type"] == event.name
    assert stored["data"]["labour_id"] == LABOUR_ID
    assert set(stored["data"]) == set(event.__struct_fields__)


def test_event_decodes_from_text() -> None:
    event = EVENT_SAMPLES[0]

    assert decode_event(encode_event(event).decode()) == event


def test_event_writes_optional_fields_as_null() -> None:
    stored = json.loads(
        encode_event(
            ev.ContractionUpdated(labour_id=LABOUR, contraction_id=CONTRACTION)
        )
    )

    assert stored["data"] == {
        "labour_id": LABOUR_ID,
        "contraction_id": CONTRACTION_ID,
        "start_time": None,
        "end_time": None,
        "intensity": None,
    }


def test_event_writes_datetimes_in_utc_forms() -> None:
    stored = json.loads(encode_event(EVENT_SAMPLES[9]))

    assert stored["data"]["start_time"] == "2024-05-01T10:01:05Z"
    assert stored["data"]["end_time"] == "2024-05-01T10:01:05.250000Z"


def test_event_writes_enum_spellings() -> None:
    stored = json.loads(encode_event(EVENT_SAMPLES[6]))

    assert stored["data"]["labour_phase"] == "TRANSITION"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "LabourExploded", "data": {"labour_id": "%s"}}' % LABOUR_ID.encode(),
        b'{"type": "LabourBegun", "data": {"labour_id": "%s"}}' % LABOUR_ID.encode(),
        b'{"type": "LabourBegun"}',
        b"not json",
    ],
    ids=["unknown-type", "missing-field", "missing-data", "not-json"],
)
def test_decode_event_rejects(data: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_event(data)
