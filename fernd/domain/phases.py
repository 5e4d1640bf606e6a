"""Phase progression from the newest rated contractions."""

from collections.abc import Iterable

from fernd.domain.constants import (
    ACTIVE_DURATION_THRESHOLD_MINS,
    ACTIVE_INTENSITY_THRESHOLD,
    RECENT_CONTRACTION_COUNT,
    TRANSITION_DURATION_THRESHOLD_MINS,
    TRANSITION_INTENSITY_THRESHOLD,
)
from fernd.domain.enums import LabourPhase


def progressed_phase(
    current: LabourPhase, newest_first: Iterable[tuple[int | None, float]]
) -> LabourPhase | None:
    """Return the phase the labour moves up to, or None when it stays.

    `newest_first` yields `(intensity, duration_minutes)` of the current
    contractions in reverse insertion order. The phase never goes down here,
    and PUSHING and COMPLETE are never reached this way.
    """
    if current is LabourPhase.COMPLETE:
        return None

    rated: list[tuple[int, float]] = []
    for intensity, minutes in newest_first:
        if intensity is not None:
            rated.append((intensity, minutes))
            if len(rated) == RECENT_CONTRACTION_COUNT:
                break
    if len(rated) < RECENT_CONTRACTION_COUNT:
        return None

    average_intensity = sum(intensity for intensity, _ in rated) / len(rated)
    average_minutes = sum(minutes for _, minutes in rated) / len(rated)
    if (
        average_intensity >= TRANSITION_INTENSITY_THRESHOLD
        and average_minutes >= TRANSITION_DURATION_THRESHOLD_MINS
    ):
        candidate = LabourPhase.TRANSITION
    elif (
        average_intensity >= ACTIVE_INTENSITY_THRESHOLD
        and average_minutes >= ACTIVE_DURATION_THRESHOLD_MINS
    ):
        candidate = LabourPhase.ACTIVE
    else:
        return None

    if candidate.ordinal > current.ordinal:
        return candidate
    return None
