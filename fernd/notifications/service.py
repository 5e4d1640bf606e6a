"""NotificationService: executes SendNotification effects.

Each effect is rendered from the labour's stored users, then delivered on its
channel. Every step is written to the notification log in the shared
database: REQUESTED, RENDERED, then SENT, FAILED or SKIPPED.
"""

import hashlib
import logging
from typing import TYPE_CHECKING

from fernd.domain.effects import EmailContext, SendNotification
from fernd.domain.enums import NotificationChannel
from fernd.notifications.channels import AppriseChannels, DeliveryError, redact
from fernd.notifications.render import (
    NotificationError,
    RenderedNotification,
    Renderer,
)
from fernd.runtime.effects import EffectFailed, EffectSkipped
from fernd.storage.shared_db import SharedDatabase

if TYPE_CHECKING:
    from fernd.runtime.actor import LabourActor

logger = logging.getLogger(__name__)


def recipient_reference(payload: SendNotification) -> str:
    """Return the recipient's user id, or for an invite an opaque digest of
    the address, so that the log contains no contact details."""
    context = payload.context
    if isinstance(context, EmailContext):
        digest = hashlib.sha256(context.email.lower().encode()).hexdigest()[:16]
        return f"invite:{digest}"
    return context.recipient_user_id


def log_key(payload: SendNotification) -> str:
    """Return the idempotency key with an invite's address replaced by its
    opaque reference; the ledger keeps the full key, the log never does."""
    context = payload.context
    if isinstance(context, EmailContext):
        return payload.idempotency_key.replace(
            context.email, recipient_reference(payload)
        )
    return payload.idempotency_key


class NotificationService:
    """Implements the runtime's NotificationSender."""

    def __init__(
        self,
        renderer: Renderer,
        channels: AppriseChannels | None,
        shared: SharedDatabase,
    ) -> None:
        self._renderer = renderer
        self._channels = channels
        self._shared = shared
        if channels is None or not channels.any_configured:
            logger.warning(
                "Notifications are disabled: no email, SMS or WhatsApp channel is"
                " configured in [notifications]; notification effects are skipped"
            )

    async def send(
        self, actor: "LabourActor", payload: SendNotification, effect_id: str
    ) -> None:
        """Render and deliver one notification.

        Raises EffectSkipped when its channel is not configured, and
        EffectFailed otherwise; `retryable` is False when a retry cannot help.
        """
        key = payload.idempotency_key
        channel = (
            payload.context.channel.value
            if hasattr(payload.context, "channel")
            else "EMAIL"
        )
        log = self._logger(actor, payload, effect_id, channel)
        log("REQUESTED", new_attempt=True)

        channel_enum = NotificationChannel(channel)
        if self._channels is None or not self._channels.configured(channel_enum):
            reason = f"{channel} channel not configured"
            log("SKIPPED", error=reason)
            raise EffectSkipped(reason)

        try:
            rendered = self._renderer.render(payload.context, actor.users)
        except NotificationError as error:
            log("FAILED", error=str(error))
            raise EffectFailed(str(error), retryable=error.retryable) from None
        log("RENDERED", template=rendered.template)

        try:
            await self._channels.deliver(rendered, key)
        except DeliveryError as error:
            message = redact(str(error))
            log("FAILED", error=message)
            raise EffectFailed(message) from None
        log("SENT")
        logger.info(
            "Sent %s notification %s of labour %s to %s",
            rendered.channel.value,
            rendered.template,
            actor.labour_id,
            recipient_reference(payload),
        )

    @property
    def email_configured(self) -> bool:
        return self._channels is not None and self._channels.configured(
            NotificationChannel.EMAIL
        )

    async def send_email(self, rendered: RenderedNotification, key: str) -> None:
        """Deliver an email that belongs to no labour, such as a password
        reset. Raises DeliveryError when the email channel refuses it or is
        not configured."""
        if self._channels is None or not self.email_configured:
            raise DeliveryError("EMAIL channel not configured")
        await self._channels.deliver(rendered, key)

    async def send_to_operator(self, title: str, body: str) -> bool:
        """Forward a message to the operator's Apprise URLs; False when none
        is configured or none accepted it."""
        if self._channels is None:
            return False
        return await self._channels.send_to_operator(title, body)

    def _logger(
        self,
        actor: "LabourActor",
        payload: SendNotification,
        effect_id: str,
        channel: str,
    ):  # type: ignore[no-untyped-def]
        recipient = recipient_reference(payload)

        def log(
            status: str,
            *,
            template: str | None = None,
            error: str | None = None,
            new_attempt: bool = False,
        ) -> None:
            self._shared.log_notification(
                log_key(payload),
                labour_id=actor.labour_id,
                effect_id=effect_id,
                recipient_id=recipient,
                channel=channel,
                status=status,
                now=actor.registry.clock(),
                template=template,
                error=error,
                new_attempt=new_attempt,
            )

        return log
