"""SocketHub: the open WebSockets of every labour, independent of actors.

A socket belongs to the hub, not to the labour's actor, so it stays open while
the labour hibernates. Publishing never waits for a client: each push is put
on the socket's bounded outgoing queue without blocking, and a socket whose
queue is full is closed with 1013.
"""

import logging
import math
from collections.abc import Sequence
from uuid import UUID

import trio

from fernd.domain import events as ev
from fernd.domain.enums import SubscriberRole
from fernd.domain.visibility import EVERYONE, MOTHER, PRIVATE, SUBSCRIBER_PREFIX
from fernd.storage.labour_db import StoredEvent

logger = logging.getLogger(__name__)

# Messages a socket may have waiting; a client that stopped reading reaches it.
OUTGOING_QUEUE_LIMIT = 1000
# A socket reads no further client message while this many wait to be sent,
# so a client's own pipelined commands slow it down instead of overflowing.
OWN_BACKPRESSURE_LEVEL = OUTGOING_QUEUE_LIMIT // 2

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_ACCESS_ENDED = 4403
CLOSE_LABOUR_DELETED = 4404

# A WebSocket close reason may hold at most 123 bytes of UTF-8.
CLOSE_REASON_MAX_BYTES = 123

_ACCESS_ENDING_EVENTS = (
    ev.SubscriberRemoved,
    ev.SubscriberBlocked,
    ev.SubscriberUnsubscribed,
)


def truncate_reason(reason: str) -> str:
    """Cut `reason` to at most 123 bytes of UTF-8 without splitting a character."""
    encoded = reason.encode()
    if len(encoded) <= CLOSE_REASON_MAX_BYTES:
        return reason
    return encoded[:CLOSE_REASON_MAX_BYTES].decode(errors="ignore")


def push_frame(stored: StoredEvent) -> str:
    """Return the text `{"type", "data", "sequence"}` built from the stored
    JSON without encoding the event again."""
    return f'{stored.data[:-1].decode()},"sequence":{stored.sequence}}}'


class CloseRequest:
    """Queued after the pushes that precede a close, so they are sent first."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = truncate_reason(reason)


class Socket:
    """One open WebSocket of a labour, with its reader's current access."""

    def __init__(
        self,
        labour_id: UUID,
        user_id: str,
        is_mother: bool,
        subscription_id: UUID | None,
        role: SubscriberRole | None,
        live_after: int,
    ) -> None:
        self.labour_id = labour_id
        self.user_id = user_id
        self.is_mother = is_mother
        self.subscription_id = subscription_id
        self.role = role
        # Events up to this sequence were sent as backlog or predate the socket.
        self.live_after = live_after
        # Frames as text, so that one push decoded once serves every socket.
        self.outgoing_send, self.outgoing = trio.open_memory_channel[
            str | CloseRequest
        ](math.inf)
        self.queued = 0
        # Commands from this socket whose replies are not yet queued.
        self.replies_pending = 0
        self.closing: CloseRequest | None = None
        self.close_now = trio.Event()
        self._space = trio.Event()

    def may_see(self, audience: str) -> bool:
        if audience == EVERYONE:
            return True
        if audience == PRIVATE:
            return self.is_mother or self.role is SubscriberRole.BIRTH_PARTNER
        if audience == MOTHER:
            return self.is_mother
        if audience.startswith(SUBSCRIBER_PREFIX):
            return self.is_mother or audience[len(SUBSCRIBER_PREFIX) :] == self.user_id
        return False

    def offer(self, message: str, *, reply: bool = False) -> bool:
        """Queue `message` without blocking; close with 1013 when the queue is
        full. Return False when the socket is closing, except that a `reply`
        is still queued while a close waits behind the queue."""
        if self.closing is not None and (not reply or self.close_now.is_set()):
            return False
        if self.queued >= OUTGOING_QUEUE_LIMIT:
            self.close_immediately(CLOSE_TRY_AGAIN_LATER, "Outgoing queue full")
            return False
        self.queued += 1
        self.outgoing_send.send_nowait(message)
        return True

    def sent(self) -> None:
        self.queued -= 1
        if self.queued < OWN_BACKPRESSURE_LEVEL:
            self._space.set()

    async def wait_for_space(self) -> None:
        """Wait until fewer than OWN_BACKPRESSURE_LEVEL messages are queued."""
        while self.queued >= OWN_BACKPRESSURE_LEVEL and self.closing is None:
            self._space = trio.Event()
            await self._space.wait()

    def close_after_queue(self, code: int, reason: str) -> None:
        """Close once the messages queued so far are sent."""
        if self.closing is not None:
            return
        self.closing = CloseRequest(code, reason)
        self.outgoing_send.send_nowait(self.closing)

    def close_immediately(self, code: int, reason: str) -> None:
        if self.closing is not None and self.close_now.is_set():
            return
        self.closing = CloseRequest(code, reason)
        self.close_now.set()

    def observe(self, event: ev.Event) -> None:
        """Follow changes of the reader's access carried by `event`."""
        if isinstance(event, ev.LabourDeleted):
            self.close_after_queue(CLOSE_LABOUR_DELETED, "Labour deleted")
            return
        subscription_id = getattr(event, "subscription_id", None)
        if subscription_id is None or subscription_id != self.subscription_id:
            return
        if isinstance(event, ev.SubscriberRoleUpdated):
            self.role = event.role
        elif isinstance(event, _ACCESS_ENDING_EVENTS):
            self.close_after_queue(CLOSE_ACCESS_ENDED, "Subscription no longer active")


class SocketHub:
    """Every open socket by labour id. Implements the actors' EventPublisher."""

    def __init__(self) -> None:
        self._sockets: dict[UUID, set[Socket]] = {}
        self.dropped_slow = 0
        self.opened = 0

    @property
    def open_count(self) -> int:
        return sum(len(sockets) for sockets in self._sockets.values())

    def register(self, socket: Socket) -> None:
        self._sockets.setdefault(socket.labour_id, set()).add(socket)
        self.opened += 1

    def unregister(self, socket: Socket) -> None:
        sockets = self._sockets.get(socket.labour_id)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._sockets[socket.labour_id]
        if socket.closing is not None and socket.closing.code == CLOSE_TRY_AGAIN_LATER:
            self.dropped_slow += 1

    def publish(self, labour_id: UUID, events: Sequence[StoredEvent]) -> None:
        """Queue each event for every socket of the labour allowed to see it,
        in sequence order, then apply the access changes it carries."""
        sockets = self._sockets.get(labour_id)
        if not sockets:
            return
        for stored in events:
            frame: str | None = None
            for socket in tuple(sockets):
                if stored.sequence <= socket.live_after or socket.closing is not None:
                    continue
                if socket.may_see(stored.audience):
                    if frame is None:
                        frame = push_frame(stored)
                    socket.offer(frame)
                socket.observe(stored.event)

    def close_all(self, code: int, reason: str) -> None:
        for sockets in self._sockets.values():
            for socket in sockets:
                socket.close_immediately(code, reason)
