"""Dispatch of due effects from a labour's ledger.

Each effect is marked DISPATCHED, with its attempt counted, before it runs, so
an effect interrupted by a crash is retried when due: execution is
at-least-once, and idempotency keys make the outcome once.
"""

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import msgspec
import trio

from fernd import observability
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.constants import (
    INTERNAL_ISSUER,
    MAX_RETRY_ATTEMPTS,
    PROCESS_MANAGER_USER_ID,
)
from fernd.domain.effects import (
    EffectPayloadError,
    GenerateSubscriptionToken,
    IssueCommand,
    SendNotification,
    decode_effect_payload,
)
from fernd.domain.subscription_token import new_subscription_token
from fernd.domain.users import User
from fernd.runtime.messages import CommandRequest
from fernd.storage.labour_db import EffectRow

if TYPE_CHECKING:
    from fernd.runtime.actor import LabourActor

logger = logging.getLogger(__name__)

# An effect that has not finished by then has failed. A provider call has 30 s
# of its own inside this, so its timeout is reported, and logged, first.
EFFECT_TIMEOUT_SECONDS = 35.0

PROCESS_MANAGER_USER = User(user_id=PROCESS_MANAGER_USER_ID, issuer=INTERNAL_ISSUER)
PROCESS_MANAGER = Caller(user_id=PROCESS_MANAGER_USER_ID, issuer=INTERNAL_ISSUER)


class NotificationSender(Protocol):
    """Delivers one notification effect.

    Raises EffectFailed when it did not succeed and EffectSkipped when it will
    never be delivered.
    """

    async def send(
        self, actor: "LabourActor", effect: SendNotification, effect_id: str
    ) -> None: ...


class EffectFailed(Exception):
    """An effect ran and did not succeed; with `retryable` false it is marked
    FAILED at once, because a retry cannot succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class EffectSkipped(Exception):
    """An effect that will never run, such as a notification on a channel that
    is not configured; it is marked SKIPPED, never as delivered."""


def retry_delay(attempts: int) -> timedelta:
    """Return the wait after the `attempts`-th failure: 2, 4, 8, 16, 32 s."""
    return timedelta(seconds=2**attempts)


class EffectExecutor:
    def __init__(self, actor: "LabourActor") -> None:
        self._actor = actor
        self._sender: NotificationSender | None = actor.registry.notification_sender
        # Without a sender, notification effects stay PENDING in the ledger
        # and are not scheduled.
        self.effect_types: tuple[str, ...] = (
            ("COMMAND", "NOTIFICATION") if self._sender is not None else ("COMMAND",)
        )

    async def run_due(self, now: datetime) -> bool:
        """Execute every effect due at `now`; return True if any ran."""
        database = self._actor.database
        due = database.due_effects(now, MAX_RETRY_ATTEMPTS, self.effect_types)
        for row in due:
            database.mark_effect_dispatched(row.effect_id, now)
            attempts = row.attempts + 1
            try:
                with trio.fail_after(EFFECT_TIMEOUT_SECONDS):
                    await self._execute(row)
            except EffectSkipped as skipped:
                database.mark_effect_skipped(row.effect_id, str(skipped))
                observability.count_effect(row.effect_type, "SKIPPED")
                continue
            except EffectFailed as error:
                self._record_failure(row, attempts, _describe(error), error.retryable)
                continue
            except (EffectPayloadError, trio.TooSlowError) as error:
                self._record_failure(row, attempts, _describe(error))
                continue
            except Exception as error:
                logger.exception(
                    "Effect %s of labour %s raised unexpectedly",
                    row.effect_id,
                    self._actor.labour_id,
                )
                self._record_failure(row, attempts, _describe(error))
                continue
            database.mark_effect_completed(row.effect_id)
            observability.count_effect(row.effect_type, "COMPLETED")
        return bool(due)

    def _record_failure(
        self, row: EffectRow, attempts: int, error: str, retryable: bool = True
    ) -> None:
        labour_id = self._actor.labour_id
        if attempts >= MAX_RETRY_ATTEMPTS or not retryable:
            self._actor.database.mark_effect_failed(row.effect_id, error, None)
            observability.count_effect(row.effect_type, "FAILED")
            logger.error(
                "Effect %s (%s) of labour %s failed on attempt %d and is marked"
                " FAILED: %s",
                row.effect_id,
                row.effect_type,
                labour_id,
                attempts,
                error,
            )
            return
        retry_at = self._actor.registry.clock() + retry_delay(attempts)
        self._actor.database.mark_effect_failed(row.effect_id, error, retry_at)
        observability.count_effect_retry(row.effect_type)
        logger.warning(
            "Effect %s (%s) of labour %s failed on attempt %d, retrying in %d s: %s",
            row.effect_id,
            row.effect_type,
            labour_id,
            attempts,
            retry_delay(attempts).total_seconds(),
            error,
        )

    async def _execute(self, row: EffectRow) -> None:
        payload = decode_effect_payload(row.effect_payload)
        match payload:
            case GenerateSubscriptionToken():
                command: cmd.Command = cmd.SetSubscriptionToken(
                    labour_id=payload.labour_id, token=new_subscription_token()
                )
                await self._issue(command, payload.idempotency_key)
            case IssueCommand():
                await self._issue(payload.command, payload.idempotency_key)
            case SendNotification():
                assert self._sender is not None
                await self._sender.send(self._actor, payload, row.effect_id)

    async def _issue(self, command: cmd.Command, key: str) -> None:
        """Run an internal command through the pipeline as the process manager,
        with the effect's idempotency key as its command key."""
        request = CommandRequest(
            command,
            PROCESS_MANAGER_USER,
            PROCESS_MANAGER,
            self._actor.registry.clock(),
            key=key,
            fingerprint=None,
        )
        outcome = await self._actor.submit(request)
        if not outcome.ok:
            raise EffectFailed(_error_message(outcome.body))


class _ErrorText(msgspec.Struct):
    message: str


def _error_message(body: bytes | None) -> str:
    if body is None:
        return "command failed"
    try:
        return msgspec.json.decode(body, type=_ErrorText).message
    except msgspec.DecodeError:
        return "command failed"


def _describe(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return f"timed out after {EFFECT_TIMEOUT_SECONDS:.0f} s"
    return str(error) or type(error).__name__
