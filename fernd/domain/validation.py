"""Field rules that commands check before their state preconditions."""

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta

from fernd.domain.constants import (
    COMPLETION_NOTES_MAX_LENGTH,
    CONTRACTION_FUTURE_TOLERANCE_SECONDS,
    CONTRACTION_MAX_INTENSITY,
    CONTRACTION_MIN_INTENSITY,
    EMAIL_MAX_LENGTH,
    LABOUR_NAME_MAX_LENGTH,
    LABOUR_UPDATE_MAX_LENGTH,
)
from fernd.domain.errors import ValidationError

_FUTURE_TOLERANCE = timedelta(seconds=CONTRACTION_FUTURE_TOLERANCE_SECONDS)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def check_intensity(intensity: int) -> None:
    if not CONTRACTION_MIN_INTENSITY <= intensity <= CONTRACTION_MAX_INTENSITY:
        raise ValidationError(
            f"Intensity must be between {CONTRACTION_MIN_INTENSITY} "
            f"and {CONTRACTION_MAX_INTENSITY}"
        )


def check_contraction_time(value: datetime | None, now: datetime) -> None:
    if value is not None and value > now + _FUTURE_TOLERANCE:
        raise ValidationError("Contraction time cannot be in the future")


def check_labour_name(name: str | None) -> None:
    if name is not None and len(name) > LABOUR_NAME_MAX_LENGTH:
        raise ValidationError(
            f"Labour name must be at most {LABOUR_NAME_MAX_LENGTH} characters"
        )


def check_update_message(message: str) -> None:
    if not message.strip():
        raise ValidationError("Message cannot be empty")
    if len(message) > LABOUR_UPDATE_MAX_LENGTH:
        raise ValidationError(
            f"Message must be at most {LABOUR_UPDATE_MAX_LENGTH} characters"
        )


def check_notes(notes: str | None) -> None:
    if notes is not None and len(notes) > COMPLETION_NOTES_MAX_LENGTH:
        raise ValidationError(
            f"Notes must be at most {COMPLETION_NOTES_MAX_LENGTH} characters"
        )


def is_valid_email(address: str) -> bool:
    """Apply the address rule: at most 254 characters, exactly one `@` with a
    non-empty local part, a domain containing a `.`, and no whitespace or
    control, format (such as zero-width) or unassigned characters."""
    if len(address) > EMAIL_MAX_LENGTH or address.count("@") != 1:
        return False
    if any(
        character.isspace() or unicodedata.category(character).startswith("C")
        for character in address
    ):
        return False
    local, domain = address.split("@")
    return bool(local) and "." in domain


def is_e164_phone_number(number: str) -> bool:
    """Apply E.164: a `+` and 7 to 15 ASCII digits, the first from 1 to 9."""
    return _E164.fullmatch(number) is not None


def check_invite_email(address: str) -> None:
    if not is_valid_email(address):
        raise ValidationError("Invalid email address")


def check_no_duplicates(methods: Sequence[object]) -> None:
    if len(set(methods)) != len(methods):
        raise ValidationError("Notification methods must not contain duplicates")
