"""Preconditions, their order and the events of the LabourUpdate group, with
the announcement cooldown."""

from datetime import timedelta
from uuid import UUID

import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.enums import LabourUpdateType
from fernd.domain.errors import InvalidCommand, ValidationError

from .builders import LABOUR_ID, UNKNOWN_ID, Scenario, assert_error, command

ANNOUNCEMENT = LabourUpdateType.ANNOUNCEMENT
STATUS_UPDATE = LabourUpdateType.STATUS_UPDATE
PRIVATE_NOTE = LabourUpdateType.PRIVATE_NOTE
EMPTY_MESSAGE = "Domain error: Validation error: Message cannot be empty"
LONG_MESSAGE = "Domain error: Validation error: Message must be at most 1000 characters"
TOO_SOON_MESSAGE = "Domain error: Invalid command: Too soon since last announcement"
NOT_FOUND_MESSAGE = "Domain error: Invalid command: Labour update not found"
ANNOUNCEMENT_LOCKED_MESSAGE = (
    "Domain error: Invalid command: Cannot update an announcement"
)
BLANK_MESSAGES = ["", " ", "\t\n  "]


def post(update_type: LabourUpdateType, message: str) -> cmd.PostLabourUpdate:
    return command(
        cmd.PostLabourUpdate, labour_update_type=update_type, message=message
    )


def edit(update_id: UUID, message: str) -> cmd.UpdateLabourUpdateMessage:
    return command(
        cmd.UpdateLabourUpdateMessage, labour_update_id=update_id, message=message
    )


def retype(
    update_id: UUID, update_type: LabourUpdateType
) -> cmd.UpdateLabourUpdateType:
    return command(
        cmd.UpdateLabourUpdateType,
        labour_update_id=update_id,
        labour_update_type=update_type,
    )


def delete(update_id: UUID) -> cmd.DeleteLabourUpdate:
    return command(cmd.DeleteLabourUpdate, labour_update_id=update_id)


# PostLabourUpdate


@pytest.mark.parametrize("update_type", list(LabourUpdateType), ids=lambda t: t.value)
def test_post_labour_update_emits_posted(
    scenario: Scenario, update_type: LabourUpdateType
) -> None:
    message = "  Waters broke!  "

    events = scenario.run(post(update_type, message))

    assert events == [
        ev.LabourUpdatePosted(
            labour_id=LABOUR_ID,
            labour_update_id=scenario.ids.last,
            labour_update_type=update_type,
            message=message,
            application_generated=False,
            sent_time=scenario.now,
        )
    ]


def test_post_labour_update_stores_message_as_sent(scenario: Scenario) -> None:
    message = "  Waters broke!  \n"

    update_id = scenario.post(STATUS_UPDATE, message)

    update = scenario.state.labour_updates[update_id]
    assert update.message == message
    assert update.sent_time == scenario.now
    assert update.edited is False
    assert update.application_generated is False


@pytest.mark.parametrize("message", BLANK_MESSAGES, ids=repr)
def test_post_labour_update_blank_rejected(scenario: Scenario, message: str) -> None:
    error = scenario.reject(post(STATUS_UPDATE, message))

    assert_error(error, ValidationError, EMPTY_MESSAGE, "validation_error", 400)


def test_post_labour_update_at_length_limit_accepted(scenario: Scenario) -> None:
    events = scenario.run(post(STATUS_UPDATE, "m" * 1000))

    assert len(events) == 1


def test_post_labour_update_counts_code_points(scenario: Scenario) -> None:
    events = scenario.run(post(STATUS_UPDATE, "\U0001f476" * 1000))

    assert len(events) == 1


def test_post_labour_update_too_long_rejected(scenario: Scenario) -> None:
    error = scenario.reject(post(STATUS_UPDATE, "m" * 1001))

    assert_error(error, ValidationError, LONG_MESSAGE, "validation_error", 400)


def test_post_labour_update_after_completion_accepted(scenario: Scenario) -> None:
    scenario.complete()

    events = scenario.run(post(ANNOUNCEMENT, "Baby is here"))

    assert len(events) == 1


def test_post_labour_update_blank_checked_before_cooldown(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)

    error = scenario.reject(post(ANNOUNCEMENT, " "))

    assert isinstance(error, ValidationError)
    assert error.detail == "Message cannot be empty"


def test_post_labour_update_length_checked_before_cooldown(
    scenario: Scenario,
) -> None:
    scenario.post(ANNOUNCEMENT)

    error = scenario.reject(post(ANNOUNCEMENT, "m" * 1001))

    assert isinstance(error, ValidationError)
    assert error.detail == "Message must be at most 1000 characters"


# Announcement cooldown


def test_announcement_within_cooldown_rejected(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)
    scenario.tick(5)

    error = scenario.reject(post(ANNOUNCEMENT, "Second"))

    assert_error(error, InvalidCommand, TOO_SOON_MESSAGE, "conflict", 409)


def test_announcement_at_exactly_ten_seconds_rejected(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)
    scenario.tick(10)

    error = scenario.reject(post(ANNOUNCEMENT, "Second"))

    assert_error(error, InvalidCommand, TOO_SOON_MESSAGE, "conflict", 409)


def test_announcement_just_after_ten_seconds_accepted(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)
    scenario.tick(10.000001)

    events = scenario.run(post(ANNOUNCEMENT, "Second"))

    assert len(events) == 1


@pytest.mark.parametrize("update_type", [STATUS_UPDATE, PRIVATE_NOTE])
def test_cooldown_ignores_other_types(
    scenario: Scenario, update_type: LabourUpdateType
) -> None:
    scenario.post(ANNOUNCEMENT)

    events = scenario.run(post(update_type, "Right after"))

    assert len(events) == 1


def test_cooldown_ignores_non_announcements_before(scenario: Scenario) -> None:
    scenario.post(STATUS_UPDATE)

    events = scenario.run(post(ANNOUNCEMENT, "First announcement"))

    assert len(events) == 1


def test_cooldown_uses_latest_announcement(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT, "First")
    scenario.tick(20)
    scenario.post(ANNOUNCEMENT, "Second")
    scenario.tick(5)

    error = scenario.reject(post(ANNOUNCEMENT, "Third"))

    assert type(error) is InvalidCommand


def test_deleted_announcement_stops_counting(scenario: Scenario) -> None:
    announcement_id = scenario.post(ANNOUNCEMENT)
    scenario.tick(1)
    scenario.run(delete(announcement_id))
    scenario.tick(1)

    events = scenario.run(post(ANNOUNCEMENT, "Again"))

    assert len(events) == 1


def test_retyped_update_keeps_sent_time(scenario: Scenario) -> None:
    posted_at = scenario.now
    update_id = scenario.post(STATUS_UPDATE)
    scenario.tick(5)

    scenario.run(retype(update_id, ANNOUNCEMENT))

    assert scenario.state.labour_updates[update_id].sent_time == posted_at


def test_cooldown_compares_with_retyped_sent_time(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.tick(5)
    scenario.run(retype(update_id, ANNOUNCEMENT))

    # 11 s after the posting but only 6 s after the re-typing.
    scenario.tick(6)
    events = scenario.run(post(ANNOUNCEMENT, "Now"))

    assert len(events) == 1


def test_cooldown_retyped_sent_time_within_window_rejected(
    scenario: Scenario,
) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.tick(5)
    scenario.run(retype(update_id, ANNOUNCEMENT))
    scenario.tick(5)

    error = scenario.reject(post(ANNOUNCEMENT, "Now"))

    assert type(error) is InvalidCommand


def test_announcement_retype_within_cooldown_rejected(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)
    update_id = scenario.post(STATUS_UPDATE)
    scenario.tick(10)

    error = scenario.reject(retype(update_id, ANNOUNCEMENT))

    assert_error(error, InvalidCommand, TOO_SOON_MESSAGE, "conflict", 409)


def test_announcement_retype_after_cooldown_accepted(scenario: Scenario) -> None:
    scenario.post(ANNOUNCEMENT)
    update_id = scenario.post(STATUS_UPDATE)
    scenario.tick(11)

    events = scenario.run(retype(update_id, ANNOUNCEMENT))

    assert len(events) == 1


# UpdateLabourUpdateMessage


def test_update_message_emits_message_updated(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE, "Old")

    events = scenario.run(edit(update_id, "New text"))

    assert events == [
        ev.LabourUpdateMessageUpdated(
            labour_id=LABOUR_ID, labour_update_id=update_id, message="New text"
        )
    ]
    update = scenario.state.labour_updates[update_id]
    assert update.message == "New text"
    assert update.edited is True


@pytest.mark.parametrize("message", BLANK_MESSAGES, ids=repr)
def test_update_message_blank_rejected(scenario: Scenario, message: str) -> None:
    update_id = scenario.post(STATUS_UPDATE)

    error = scenario.reject(edit(update_id, message))

    assert_error(error, ValidationError, EMPTY_MESSAGE, "validation_error", 400)


def test_update_message_too_long_rejected(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)

    error = scenario.reject(edit(update_id, "m" * 1001))

    assert_error(error, ValidationError, LONG_MESSAGE, "validation_error", 400)


def test_update_message_unknown_rejected(scenario: Scenario) -> None:
    error = scenario.reject(edit(UNKNOWN_ID, "New"))

    assert_error(error, InvalidCommand, NOT_FOUND_MESSAGE, "not_found", 404)


def test_update_message_of_announcement_rejected(scenario: Scenario) -> None:
    update_id = scenario.post(ANNOUNCEMENT)

    error = scenario.reject(edit(update_id, "New"))

    assert_error(error, InvalidCommand, ANNOUNCEMENT_LOCKED_MESSAGE, "conflict", 409)


def test_update_message_of_retyped_announcement_rejected(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.run(retype(update_id, ANNOUNCEMENT))

    error = scenario.reject(edit(update_id, "New"))

    assert_error(error, InvalidCommand, ANNOUNCEMENT_LOCKED_MESSAGE, "conflict", 409)


def test_update_message_of_private_note_accepted(scenario: Scenario) -> None:
    update_id = scenario.post(PRIVATE_NOTE)

    events = scenario.run(edit(update_id, "New"))

    assert len(events) == 1


def test_update_message_blank_checked_before_existence(scenario: Scenario) -> None:
    error = scenario.reject(edit(UNKNOWN_ID, ""))

    assert type(error) is ValidationError


def test_update_message_length_checked_before_type(scenario: Scenario) -> None:
    update_id = scenario.post(ANNOUNCEMENT)

    error = scenario.reject(edit(update_id, "m" * 1001))

    assert type(error) is ValidationError


# UpdateLabourUpdateType


def test_update_type_emits_type_updated(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)

    events = scenario.run(retype(update_id, PRIVATE_NOTE))

    assert events == [
        ev.LabourUpdateTypeUpdated(
            labour_id=LABOUR_ID,
            labour_update_id=update_id,
            labour_update_type=PRIVATE_NOTE,
        )
    ]
    assert scenario.state.labour_updates[update_id].labour_update_type is PRIVATE_NOTE


def test_update_type_keeps_edited_flag(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.run(edit(update_id, "Edited"))

    scenario.run(retype(update_id, PRIVATE_NOTE))

    assert scenario.state.labour_updates[update_id].edited is True


def test_update_type_to_same_type_accepted(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)

    events = scenario.run(retype(update_id, STATUS_UPDATE))

    assert events == [
        ev.LabourUpdateTypeUpdated(
            labour_id=LABOUR_ID,
            labour_update_id=update_id,
            labour_update_type=STATUS_UPDATE,
        )
    ]


def test_update_type_unknown_rejected(scenario: Scenario) -> None:
    error = scenario.reject(retype(UNKNOWN_ID, STATUS_UPDATE))

    assert_error(error, InvalidCommand, NOT_FOUND_MESSAGE, "not_found", 404)


@pytest.mark.parametrize("update_type", list(LabourUpdateType), ids=lambda t: t.value)
def test_update_type_of_announcement_rejected(
    scenario: Scenario, update_type: LabourUpdateType
) -> None:
    update_id = scenario.post(ANNOUNCEMENT)

    error = scenario.reject(retype(update_id, update_type))

    assert_error(error, InvalidCommand, ANNOUNCEMENT_LOCKED_MESSAGE, "conflict", 409)


def test_update_type_announcement_checked_before_cooldown(
    scenario: Scenario,
) -> None:
    update_id = scenario.post(ANNOUNCEMENT)

    error = scenario.reject(retype(update_id, ANNOUNCEMENT))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot update an announcement"


# DeleteLabourUpdate


def test_delete_labour_update_emits_deleted(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)

    events = scenario.run(delete(update_id))

    assert events == [
        ev.LabourUpdateDeleted(labour_id=LABOUR_ID, labour_update_id=update_id)
    ]
    assert update_id not in scenario.state.labour_updates


def test_delete_labour_update_unknown_rejected(scenario: Scenario) -> None:
    error = scenario.reject(delete(UNKNOWN_ID))

    assert_error(error, InvalidCommand, NOT_FOUND_MESSAGE, "not_found", 404)


def test_delete_labour_update_twice_rejected(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.run(delete(update_id))

    error = scenario.reject(delete(update_id))

    assert_error(error, InvalidCommand, NOT_FOUND_MESSAGE, "not_found", 404)


def test_delete_announcement_accepted(scenario: Scenario) -> None:
    update_id = scenario.post(ANNOUNCEMENT)

    events = scenario.run(delete(update_id))

    assert len(events) == 1


def test_delete_application_note_accepted(scenario: Scenario) -> None:
    scenario.run(command(cmd.BeginLabour))
    note_id = scenario.ids.last
    assert scenario.state.labour_updates[note_id].application_generated is True

    events = scenario.run(delete(note_id))

    assert events == [
        ev.LabourUpdateDeleted(labour_id=LABOUR_ID, labour_update_id=note_id)
    ]


def test_delete_labour_update_after_completion_accepted(scenario: Scenario) -> None:
    update_id = scenario.post(STATUS_UPDATE)
    scenario.complete()
    scenario.tick(timedelta(minutes=5).total_seconds())

    events = scenario.run(delete(update_id))

    assert len(events) == 1
