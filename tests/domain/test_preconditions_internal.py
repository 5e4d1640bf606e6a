"""Preconditions and events of the internal commands: SetSubscriptionToken,
AdvanceLabourPhase and PostApplicationLabourUpdate."""

import contextlib

import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.constants import SUBSCRIPTION_TOKEN_ALPHABET
from fernd.domain.enums import LabourPhase, LabourUpdateType
from fernd.domain.errors import InvalidCommand, LabourError

from .builders import (
    INTERNAL,
    LABOUR_ID,
    MOTHER,
    Scenario,
    assert_error,
    command,
)


def advance(phase: LabourPhase) -> cmd.AdvanceLabourPhase:
    return command(cmd.AdvanceLabourPhase, labour_phase=phase)


# SetSubscriptionToken


def test_set_subscription_token_emits_token_set(empty: Scenario) -> None:
    empty.plan()

    events = empty.run(command(cmd.SetSubscriptionToken, token="HJKMNP45"), INTERNAL)

    assert events == [ev.SubscriptionTokenSet(labour_id=LABOUR_ID, token="HJKMNP45")]
    assert empty.state.subscription_token == "HJKMNP45"


def test_set_subscription_token_replaces_token(scenario: Scenario) -> None:
    scenario.run(command(cmd.SetSubscriptionToken, token="QRSTUV67"), INTERNAL)

    assert scenario.state.subscription_token == "QRSTUV67"


def test_set_subscription_token_after_completion_accepted(scenario: Scenario) -> None:
    scenario.complete()

    events = scenario.run(command(cmd.SetSubscriptionToken, token="QRSTUV67"), INTERNAL)

    assert len(events) == 1


@pytest.mark.xfail(
    strict=True,
    reason=(
        "SetSubscriptionToken has no precondition on the token's form, so a "
        "token of 8 symbols from the token alphabet relies on the caller"
    ),
)
def test_set_subscription_token_keeps_token_form(scenario: Scenario) -> None:
    with contextlib.suppress(LabourError):
        scenario.run(command(cmd.SetSubscriptionToken, token="bad token"), INTERNAL)

    token = scenario.state.subscription_token
    assert token is not None
    assert len(token) == 8
    assert set(token) <= set(SUBSCRIPTION_TOKEN_ALPHABET)


# AdvanceLabourPhase


def test_advance_labour_phase_emits_phase_changed(scenario: Scenario) -> None:
    events = scenario.run(advance(LabourPhase.PUSHING), INTERNAL)

    assert events == [
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.PUSHING)
    ]
    assert scenario.state.phase is LabourPhase.PUSHING


def test_advance_labour_phase_backwards_accepted(scenario: Scenario) -> None:
    scenario.advance_to(LabourPhase.TRANSITION)

    events = scenario.run(advance(LabourPhase.EARLY), MOTHER)

    assert events == [
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.EARLY)
    ]


def test_advance_labour_phase_to_complete_accepted(scenario: Scenario) -> None:
    events = scenario.run(advance(LabourPhase.COMPLETE), INTERNAL)

    assert events == [
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.COMPLETE)
    ]


def test_advance_labour_phase_from_complete_rejected(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(advance(LabourPhase.EARLY), INTERNAL)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot advance from Completed state",
        "conflict",
        409,
    )


@pytest.mark.parametrize(
    "phase",
    [phase for phase in LabourPhase if phase is not LabourPhase.COMPLETE],
    ids=lambda phase: phase.value,
)
def test_advance_labour_phase_to_current_rejected(
    scenario: Scenario, phase: LabourPhase
) -> None:
    if phase is not LabourPhase.PLANNED:
        scenario.advance_to(phase)

    error = scenario.reject(advance(phase), INTERNAL)

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot advance labour phase to "
        f"{phase.value}, phase is already {phase.value}.",
        "conflict",
        409,
    )


def test_advance_labour_phase_complete_checked_before_same(
    scenario: Scenario,
) -> None:
    scenario.complete()

    error = scenario.reject(advance(LabourPhase.COMPLETE), INTERNAL)

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot advance from Completed state"


# PostApplicationLabourUpdate


def test_post_application_labour_update_emits_private_note(
    scenario: Scenario,
) -> None:
    events = scenario.run(
        command(cmd.PostApplicationLabourUpdate, message="reminder"), INTERNAL
    )

    assert events == [
        ev.LabourUpdatePosted(
            labour_id=LABOUR_ID,
            labour_update_id=scenario.ids.last,
            labour_update_type=LabourUpdateType.PRIVATE_NOTE,
            message="reminder",
            application_generated=True,
            sent_time=scenario.now,
        )
    ]


def test_post_application_labour_update_after_completion(scenario: Scenario) -> None:
    scenario.complete()

    events = scenario.run(
        command(cmd.PostApplicationLabourUpdate, message="reminder"), INTERNAL
    )

    assert len(events) == 1
