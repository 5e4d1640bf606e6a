"""The WebSocket route `/api/v1/connect/{labour_id}`: connect checks, client
messages (Command, Query, ServerTimestamp) with one reply each, and pushes from
the SocketHub.

Commands from one socket enter the labour's inbox in the order they arrive and
get their replies as their batches commit, so a client may pipeline them.
"""

import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import trio
from quart import Response, Websocket, websocket

from fernd.api.app import Api, parse_idempotency_key, parse_labour_id
from fernd.api.errors import (
    NOT_AUTHENTICATED,
    VERIFICATION_FAILED,
    ApiError,
    error_body,
)
from fernd.api.queries import parse_tagged_query
from fernd.auth.tokens import AuthenticationError, VerifiedToken, bearer_token
from fernd.domain import commands as cmd
from fernd.domain.authorization import PrincipalKind, resolve_principal
from fernd.domain.enums import SubscriberStatus
from fernd.runtime.actor import LabourActor
from fernd.runtime.messages import CommandRequest, Outcome
from fernd.runtime.sockets import (
    CLOSE_TOKEN_EXPIRED,
    CloseRequest,
    Socket,
    SocketHub,
    push_frame,
)

logger = logging.getLogger(__name__)

# Browsers cannot set headers on a WebSocket, so the token travels as a
# subprotocol entry with this prefix; fernd selects that entry in its reply.
TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com."
# The close code for a failure inside fernd, as RFC 6455 defines it.
CLOSE_INTERNAL_ERROR = 1011
# How long closing may wait for last replies and for the close handshake.
CLOSE_TIMEOUT_SECONDS = 1.0
# Commands one socket may have waiting for their replies at once.
MAX_IN_FLIGHT_COMMANDS = 512

_encoder = msgspec.json.Encoder()


class ClientMessage(msgspec.Struct, kw_only=True):
    kind: str
    correlation_id: str | None = None
    idempotency_key: str | None = None
    type: str | None = None
    payload: cmd.TaggedPayload | None = None


class _CorrelationOnly(msgspec.Struct):
    correlation_id: Any = None


class Reply(msgspec.Struct, kw_only=True):
    correlation_id: str | None
    success: bool
    data: msgspec.Raw | None = None
    error: str | None = None
    code: str | None = None


class _ErrorFields(msgspec.Struct):
    message: str
    code: str


_message_decoder = msgspec.json.Decoder(ClientMessage)
_correlation_decoder = msgspec.json.Decoder(_CorrelationOnly)
_error_decoder = msgspec.json.Decoder(_ErrorFields)


def _reject(status: int, code: str, message: str) -> Response:
    return Response(
        error_body(code, message), status=status, content_type="application/json"
    )


def _frame(reply: Reply) -> str:
    """Encode `reply` as the text of a WebSocket frame."""
    return _encoder.encode(reply).decode()


def _failure(correlation_id: str | None, code: str, message: str) -> str:
    return _frame(
        Reply(correlation_id=correlation_id, success=False, error=message, code=code)
    )


def _reply_of(correlation_id: str | None, outcome: Outcome) -> str:
    if outcome.ok:
        return _frame(Reply(correlation_id=correlation_id, success=True))
    assert outcome.body is not None
    fields = _error_decoder.decode(outcome.body)
    return _failure(correlation_id, fields.code, fields.message)


def _token_from_request() -> tuple[str | None, str | None]:
    """Return the token and the subprotocol entry that carried it, if any."""
    for entry in websocket.requested_subprotocols:
        entry = entry.strip()
        if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return entry[len(TOKEN_SUBPROTOCOL_PREFIX) :], entry
    header = websocket.headers.get("Authorization")
    if header is None:
        return None, None
    return bearer_token(header) or "", None


def _parse_since(text: str | None, head: int) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > head:
        raise ApiError(400, "invalid_request", "Invalid since")
    return int(text)


class _InFlight:
    """A command queued on the labour whose reply is not yet sent, with the
    lease it holds on the labour's actor."""

    __slots__ = ("actor", "correlation_id", "request", "reservation")

    def __init__(
        self,
        request: CommandRequest,
        actor: LabourActor,
        reservation: float | None,
        correlation_id: str | None,
    ) -> None:
        self.request = request
        self.actor = actor
        # The wrong-token reservation of a RequestAccess, settled with the reply.
        self.reservation = reservation
        self.correlation_id = correlation_id


class SocketSession:
    """One accepted WebSocket: its receive loop, reply loop, sender and expiry
    timer."""

    def __init__(
        self, api: Api, hub: SocketHub, socket: Socket, verified: VerifiedToken
    ) -> None:
        self.api = api
        self.hub = hub
        self.socket = socket
        self.verified = verified
        self.caller = api.caller_of(verified)
        self._limiter = trio.CapacityLimiter(MAX_IN_FLIGHT_COMMANDS)
        # Queued commands in the order they entered the labour's inbox.
        self._in_flight: deque[_InFlight] = deque()
        self._in_flight_added = trio.Event()
        # The connection behind Quart's context-local proxy, looked up once
        # instead of on every frame. Quart types the proxy as the object.
        self._websocket: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, nursery.cancel_scope)
                nursery.start_soon(self._reply_loop)
                nursery.start_soon(self._watch_close, nursery.cancel_scope)
                nursery.start_soon(self._expire)
                await self._receive_loop()
                nursery.cancel_scope.cancel()
            # The close frame goes out only once no task sends any more.
            closing = self.socket.closing
            if closing is not None:
                with trio.move_on_after(CLOSE_TIMEOUT_SECONDS):
                    await websocket.close(closing.code, closing.reason)
        except Exception:
            logger.exception(
                "WebSocket of labour %s failed; closing it with 1011",
                self.socket.labour_id,
            )
            with trio.move_on_after(1):
                await websocket.close(CLOSE_INTERNAL_ERROR, "Internal server error")
        finally:
            self.hub.unregister(self.socket)

    async def _send_loop(self, scope: trio.CancelScope) -> None:
        outgoing = self.socket.outgoing
        while True:
            item = await outgoing.receive()
            # Frames already queued are taken without a scheduler round each,
            # because sending a frame yields anyway.
            while not isinstance(item, CloseRequest):
                await self._send(item)
                try:
                    item = outgoing.receive_nowait()
                except trio.WouldBlock:
                    break
            if isinstance(item, CloseRequest):
                await self._send_last_replies()
                scope.cancel()
                return

    async def _send(self, item: str) -> None:
        self.socket.sent()
        # Text frames: browser clients parse `event.data` as a JSON string.
        await self._websocket.send(item)

    async def _send_last_replies(self) -> None:
        """Send the replies of commands still in flight when a close was
        requested, such as the Unsubscribe that ended this reader's access."""
        with trio.move_on_after(CLOSE_TIMEOUT_SECONDS):
            while self.socket.replies_pending > 0 or self.socket.queued > 0:
                item = await self.socket.outgoing.receive()
                if not isinstance(item, CloseRequest):
                    await self._send(item)

    async def _watch_close(self, scope: trio.CancelScope) -> None:
        await self.socket.close_now.wait()
        scope.cancel()

    async def _expire(self) -> None:
        remaining = (self.verified.expires_at - datetime.now(UTC)).total_seconds()
        await trio.sleep(max(0.0, remaining))
        self.socket.close_immediately(CLOSE_TOKEN_EXPIRED, "Token expired")

    async def _receive_loop(self) -> None:
        while True:
            await self.socket.wait_for_space()
            data = await self._websocket.receive()
            raw = data.encode() if isinstance(data, str) else data
            await self._handle(raw)

    async def _handle(self, raw: bytes) -> None:
        now = datetime.now(UTC)
        try:
            message = _message_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            self.socket.offer(
                _failure(
                    _read_correlation(raw),
                    "invalid_request",
                    "Failed to parse request body",
                )
            )
            return
        correlation_id = message.correlation_id
        try:
            if message.kind == "ServerTimestamp":
                data = _encoder.encode({"server_timestamp": now})
                self.socket.offer(
                    _frame(
                        Reply(
                            correlation_id=correlation_id,
                            success=True,
                            data=msgspec.Raw(data),
                        )
                    )
                )
            elif message.kind == "Query":
                await self._query(message, now)
            elif message.kind == "Command":
                await self._command(message, now)
            else:
                raise ApiError(400, "invalid_request", "Failed to parse request body")
        except ApiError as error:
            self.socket.offer(_failure(correlation_id, error.code, error.message))

    def _tagged(self, message: ClientMessage) -> cmd.TaggedRequest:
        if message.type is None or message.payload is None:
            raise ApiError(400, "invalid_request", "Failed to parse request body")
        return cmd.TaggedRequest(type=message.type, payload=message.payload)

    def _check_labour(self, labour_id: UUID) -> None:
        if labour_id != self.socket.labour_id:
            raise ApiError(
                400, "invalid_request", "Labour id does not match this connection"
            )

    async def _query(self, message: ClientMessage, now: datetime) -> None:
        parsed = parse_tagged_query(self._tagged(message))
        self._check_labour(parsed.query.labour_id)
        result = await self.api.run_query(parsed, self.verified, now)
        self.socket.offer(
            _frame(
                Reply(
                    correlation_id=message.correlation_id,
                    success=True,
                    data=msgspec.Raw(result),
                )
            )
        )

    async def _command(self, message: ClientMessage, now: datetime) -> None:
        try:
            command = cmd.decode_tagged_command(self._tagged(message))
        except cmd.CommandParseError:
            raise ApiError(
                400, "invalid_request", "Failed to parse request body"
            ) from None
        self._check_labour(command.target_labour_id)
        key = parse_idempotency_key(message.idempotency_key)
        if isinstance(command, cmd.PlanLabour):
            outcome = await self.api.run_command(command, self.verified, now, key)
            self.socket.offer(_reply_of(message.correlation_id, outcome))
            return

        fingerprint = cmd.command_fingerprint(command) if key is not None else None
        user_id = self.verified.user.user_id
        reservation = None
        if isinstance(command, cmd.RequestAccess):
            command.subscriber_id = user_id
            # Raises ApiError(429) before the command reaches the labour.
            reservation = self.api.reserve_request_access(user_id)
        request = CommandRequest(
            command, self.verified.user, self.caller, now, key, fingerprint
        )
        try:
            await self._enqueue(request, reservation, message.correlation_id)
        except BaseException:
            # The labour was not found or the socket closed before the command
            # was queued, so no token was checked.
            if reservation is not None:
                self.api.release_request_access(user_id, reservation)
            raise

    async def _enqueue(
        self,
        request: CommandRequest,
        reservation: float | None,
        correlation_id: str | None,
    ) -> None:
        """Queue `request` on this socket's labour and hand it to the reply
        loop. Raises ApiError(404) when the labour does not exist.

        `reservation` is the wrong-token reservation of a RequestAccess, which
        the reply loop settles. With room in the inbox and below
        MAX_IN_FLIGHT_COMMANDS this does not yield, so the receive loop can
        queue pipelined commands before the labour takes its next batch."""
        try:
            self._limiter.acquire_on_behalf_of_nowait(request)
        except trio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(request)
        actor = await self.api.registry.acquire(self.socket.labour_id)
        if actor is None:
            self._limiter.release_on_behalf_of(request)
            raise ApiError(404, "not_found", "Labour not found")
        self.socket.replies_pending += 1
        try:
            await actor.enqueue(request)
        except BaseException:
            # The socket closed while the inbox was full: give back the lease.
            self.socket.replies_pending -= 1
            self.api.registry.release(actor)
            self._limiter.release_on_behalf_of(request)
            raise
        self._in_flight.append(_InFlight(request, actor, reservation, correlation_id))
        self._in_flight_added.set()

    async def _reply_loop(self) -> None:
        """Queue the reply of each command once it is decided, in the order
        the commands entered the inbox.

        The labour decides the commands of one socket in that order, so
        waiting for the oldest one wakes this task about once per batch.
        When the socket closes, commands still waiting release what they hold.
        """
        in_flight = self._in_flight
        try:
            while True:
                if not in_flight:
                    self._in_flight_added = trio.Event()
                    await self._in_flight_added.wait()
                    continue
                oldest = in_flight[0].request
                if oldest.outcome is None:
                    await oldest.done.wait()
                while in_flight and in_flight[0].request.outcome is not None:
                    self._reply(in_flight.popleft())
        finally:
            while in_flight:
                self._reply(in_flight.popleft())

    def _reply(self, item: _InFlight) -> None:
        """Release what `item` holds and queue its reply, if it has one."""
        request = item.request
        self.api.registry.release(item.actor)
        self._limiter.release_on_behalf_of(request)
        self.socket.replies_pending -= 1
        if item.reservation is not None:
            # An outcome still None, when the socket closed first, counts as
            # a wrong token: the labour may yet check it.
            self.api.settle_request_access(
                request.user.user_id, item.reservation, request.outcome
            )
        if request.outcome is not None:
            self.socket.offer(
                _reply_of(item.correlation_id, request.outcome), reply=True
            )


def _read_correlation(raw: bytes) -> str | None:
    try:
        value = _correlation_decoder.decode(raw).correlation_id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return value if isinstance(value, str) else None


async def connect(api: Api, hub: SocketHub, labour_id_text: str) -> Response | None:
    """Run the connect checks in order, then serve the socket until it closes.

    Returns the rejection response when a check fails before the upgrade.
    """
    origin = websocket.headers.get("Origin")
    if origin is not None and api.allowed_origins and origin not in api.allowed_origins:
        return _reject(403, "forbidden", "Forbidden")
    token, subprotocol = _token_from_request()
    if token is None:
        return _reject(401, "unauthenticated", NOT_AUTHENTICATED)
    try:
        verified = await api.verifier.verify(token)
    except AuthenticationError:
        return _reject(401, "unauthenticated", VERIFICATION_FAILED)
    try:
        labour_id = parse_labour_id(labour_id_text)
    except ApiError as error:
        return _reject(error.status, error.code, error.message)

    caller = api.caller_of(verified)
    actor = await api.registry.acquire(labour_id)
    if actor is None:
        return _reject(404, "not_found", "Labour not found")
    try:
        state = actor.state
        if state is None or state.deleted:
            return _reject(404, "not_found", "Labour not found")
        principal = resolve_principal(state, caller)
        subscription = principal.subscription
        if not (
            principal.kind is PrincipalKind.MOTHER
            or (
                subscription is not None
                and subscription.status is SubscriberStatus.SUBSCRIBED
            )
        ):
            return _reject(
                403,
                "forbidden",
                "Authorization failed: Not associated with this labour",
            )
        try:
            since = _parse_since(websocket.args.get("since"), actor.head)
        except ApiError as error:
            return _reject(error.status, error.code, error.message)
        actor.remember_user(verified.user, caller)

        # From here to `register` nothing awaits, so no push can slip between
        # the backlog and the live events.
        live_after = actor.head if since is None else max(since, actor.pushed_head)
        socket = Socket(
            labour_id,
            caller.user_id,
            principal.is_mother,
            subscription.id if subscription is not None else None,
            subscription.role if subscription is not None else None,
            live_after,
        )
        if since is not None and since < actor.pushed_head:
            for stored in actor.database.events_after(since, actor.pushed_head - since):
                # The backlog is filtered by the reader's current access, which
                # the connect checks above confirmed.
                if socket.may_see(stored.audience):
                    socket.offer(push_frame(stored))
        hub.register(socket)
    finally:
        api.registry.release(actor)

    await websocket.accept(subprotocol=subprotocol)
    await SocketSession(api, hub, socket, verified).run()
    return None
