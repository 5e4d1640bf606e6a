"""Requests that callers hand to a labour actor, and the outcomes they get back."""

from datetime import datetime

import msgspec
import trio

from fernd.domain.authorization import Caller
from fernd.domain.commands import AnyCommand
from fernd.domain.errors import AuthorizationDenied, LabourError
from fernd.domain.users import User


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to a command: an HTTP status and a JSON body (None for 204).

    `replayed` marks a reply built from a recorded idempotency outcome;
    `retry_after` is set for rate-limited commands.
    """

    status: int
    body: bytes | None = None
    replayed: bool = False
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


class ErrorBody(msgspec.Struct, frozen=True):
    message: str
    code: str


_error_encoder = msgspec.json.Encoder()

SUCCESS = Outcome(status=204)


def error_outcome(status: int, code: str, message: str, **extra: int) -> Outcome:
    body = _error_encoder.encode(ErrorBody(message=message, code=code))
    return Outcome(status=status, body=body, retry_after=extra.get("retry_after"))


def outcome_of(error: LabourError | AuthorizationDenied) -> Outcome:
    retry_after = getattr(error, "retry_after_seconds", None)
    body = _error_encoder.encode(ErrorBody(message=error.message, code=error.code))
    return Outcome(status=error.status, body=body, retry_after=retry_after)


INTERNAL_ERROR = error_outcome(500, "internal_error", "Internal server error")
KEY_REUSED = error_outcome(
    400, "invalid_request", "Idempotency key reused with a different command"
)
LABOUR_NOT_FOUND = error_outcome(404, "not_found", "Labour not found")


class CommandRequest:
    """One command waiting in a labour's inbox, with the slot for its reply."""

    __slots__ = (
        "caller",
        "command",
        "done",
        "fingerprint",
        "key",
        "now",
        "outcome",
        "user",
    )

    def __init__(
        self,
        command: AnyCommand,
        user: User,
        caller: Caller,
        now: datetime,
        key: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.command = command
        self.user = user
        self.caller = caller
        self.now = now
        self.key = key
        self.fingerprint = fingerprint
        self.outcome: Outcome | None = None
        self.done = trio.Event()

    def reply(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done.set()
