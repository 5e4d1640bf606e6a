"""`POST /api/v1/contact-us`: messages from users to the operator.

No login is needed, so each client address may send at most
CONTACT_LIMIT messages per CONTACT_WINDOW_SECONDS; the counts live in memory
and start again when fernd restarts.
"""

import contextlib
import math
import time
from collections import deque

import msgspec

from fernd.api.errors import ApiError
from fernd.domain.constants import COMPLETION_NOTES_MAX_LENGTH, LABOUR_NAME_MAX_LENGTH
from fernd.domain.validation import is_valid_email

CONTACT_LIMIT = 5
CONTACT_WINDOW_SECONDS = 3600.0
CONTACT_MESSAGE_MAX_LENGTH = COMPLETION_NOTES_MAX_LENGTH
CONTACT_NAME_MAX_LENGTH = LABOUR_NAME_MAX_LENGTH
CONTACT_CATEGORIES = frozenset({"question", "feedback", "bug", "account", "other"})
# Addresses tracked at once; the oldest are forgotten beyond this.
_MAX_TRACKED_ADDRESSES = 10000


class ContactMessage(msgspec.Struct, kw_only=True):
    name: str
    email: str
    category: str
    message: str


def _invalid(detail: str) -> ApiError:
    return ApiError(400, "validation_error", f"Validation error: {detail}")


def validate_contact(message: ContactMessage) -> None:
    """Raise ApiError(400, validation_error) for the first field at fault."""
    if not message.name.strip() or len(message.name) > CONTACT_NAME_MAX_LENGTH:
        raise _invalid(f"Name must be 1 to {CONTACT_NAME_MAX_LENGTH} characters")
    if not is_valid_email(message.email):
        raise _invalid("Invalid email address")
    if message.category not in CONTACT_CATEGORIES:
        raise _invalid(
            "Category must be one of " + ", ".join(sorted(CONTACT_CATEGORIES))
        )
    if not message.message.strip():
        raise _invalid("Message cannot be empty")
    if len(message.message) > CONTACT_MESSAGE_MAX_LENGTH:
        raise _invalid(
            f"Message must be at most {CONTACT_MESSAGE_MAX_LENGTH} characters"
        )


class RateLimiter:
    """At most `limit` events per key in any rolling `window` seconds.

    The counts live in memory, so they start again when fernd restarts. At
    most `max_keys` keys are tracked: beyond that a key is forgotten as
    `_forget_one` describes.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        message: str = "Rate limit exceeded: Too many messages, try again later",
        max_keys: int = _MAX_TRACKED_ADDRESSES,
    ) -> None:
        self._limit = limit
        self._max_keys = max_keys
        self._window = window
        self._message = message
        self._events: dict[str, deque[float]] = {}

    def check(self, key: str, now: float | None = None) -> float:
        """Record one event for `key` and return its time stamp, for `cancel`.

        Raises ApiError(429, rate_limited) with a Retry-After header, and
        records nothing, when `key` already has `limit` events in the window.
        """
        now = time.monotonic() if now is None else now
        events = self._events.get(key)
        if events is not None:
            self._expire(key, events, now)
            if len(events) >= self._limit:
                retry_after = max(1, math.ceil(events[0] + self._window - now))
                raise ApiError(
                    429,
                    "rate_limited",
                    self._message,
                    {"Retry-After": str(retry_after)},
                )
        self._events.setdefault(key, deque()).append(now)
        if len(self._events) > self._max_keys:
            self._forget_one(now)
        return now

    def _forget_one(self, now: float) -> None:
        """Make room for one key. Keys whose events have all left the window go
        first, then the oldest key below the limit. A key at the limit is
        forgotten only when every key is, so a flood of new keys cannot lift
        a limit that was reached."""
        for key, events in list(self._events.items()):
            self._expire(key, events, now)
        if len(self._events) <= self._max_keys:
            return
        for key, events in self._events.items():
            if len(events) < self._limit:
                del self._events[key]
                return
        del self._events[next(iter(self._events))]

    def cancel(self, key: str, stamp: float) -> None:
        """Remove the event that `check` recorded at `stamp`, so it no longer
        counts; do nothing if it has left the window or was forgotten."""
        events = self._events.get(key)
        if events is None:
            return
        # Events with equal stamps are interchangeable, so removing the first
        # one with this stamp is exact.
        with contextlib.suppress(ValueError):
            events.remove(stamp)
        if not events:
            del self._events[key]

    def count(self, key: str, now: float | None = None) -> int:
        """Return the events of `key` within the window ending at `now`."""
        now = time.monotonic() if now is None else now
        events = self._events.get(key)
        if events is None:
            return 0
        self._expire(key, events, now)
        return len(events)

    def _expire(self, key: str, events: deque[float], now: float) -> None:
        while events and events[0] <= now - self._window:
            events.popleft()
        if not events:
            del self._events[key]
