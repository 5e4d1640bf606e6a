"""WebSocket clients and async HTTP helpers for the end-to-end tests.

`open_session` wraps a trio-websocket connection in a `Session`, which sorts
incoming frames into replies (they carry `correlation_id`) and pushes (they
carry `sequence`). `open_stalled_socket` makes a client that completes the
handshake and then never reads, with a small TCP receive buffer so the
server's writes back up quickly. The HTTP helpers use `httpx.AsyncClient`,
which runs under Trio, so a test can send HTTP requests while it reads
sockets.
"""

import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.conftest import FerndServer
from tests.e2e.helpers import MAX_PAGE_SIZE, decode_cursor, tagged

# fernd reads the token from the subprotocol entry with this prefix.
TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com."
# A reply or push normally arrives within milliseconds; this bounds a hang.
RECEIVE_TIMEOUT_SECONDS = 10.0
# The stalled socket's handshake has taken over 10 s in a full test run on a
# 2-core machine busy with other work, so it gets more time.
HANDSHAKE_TIMEOUT_SECONDS = 30.0
# Frames a client buffers before it stops reading its TCP socket. It is large,
# so a test that reads late never looks like a stalled client to the server.
CLIENT_MESSAGE_QUEUE = 100_000
# Receive buffer of the stalled client, in bytes (Linux doubles it), so the
# server's TCP send path fills after a few hundred kilobytes at most.
STALLED_RECEIVE_BUFFER_BYTES = 4096


def connect_url(server: FerndServer, labour_id: str, since: str | int | None) -> str:
    """Return the `ws://` URL of the labour's connect route."""
    url = server.base_url.replace("http://", "ws://") + f"/api/v1/connect/{labour_id}"
    if since is not None:
        url += f"?since={since}"
    return url


def token_subprotocol(token: str) -> str:
    """Return the subprotocol entry that carries `token`."""
    return TOKEN_SUBPROTOCOL_PREFIX + token


def command_message(
    group: str,
    name: str,
    *,
    correlation_id: str | None = None,
    key: str | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """Build a `Command` client message with the command flattened into it."""
    message: dict[str, Any] = {"kind": "Command", **tagged(group, name, **payload)}
    if correlation_id is not None:
        message["correlation_id"] = correlation_id
    if key is not None:
        message["idempotency_key"] = key
    return message


def query_message(
    group: str, name: str, *, correlation_id: str | None = None, **payload: Any
) -> dict[str, Any]:
    """Build a `Query` client message with the query flattened into it."""
    message: dict[str, Any] = {"kind": "Query", **tagged(group, name, **payload)}
    if correlation_id is not None:
        message["correlation_id"] = correlation_id
    return message


class SocketClosed(AssertionError):
    """The socket closed while the test waited for a reply or a push."""

    def __init__(self, reason: CloseReason | None) -> None:
        described = "without a close frame" if reason is None else reason
        super().__init__(f"socket closed {described}")
        self.reason = reason


@dataclass
class Session:
    """One client socket. Every frame it reads is decoded and kept: pushes in
    `pushes` in arrival order, replies by correlation id in `replies`, and
    replies without a correlation id in `anonymous_replies`."""

    ws: WebSocketConnection
    pushes: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    anonymous_replies: list[dict[str, Any]] = field(default_factory=list)
    close_reason: CloseReason | None = None
    _next_push: int = 0

    async def receive(self) -> dict[str, Any]:
        """Read one frame, record it and return it.

        Raises SocketClosed when the socket closes, and trio.TooSlowError
        when nothing arrives within RECEIVE_TIMEOUT_SECONDS.
        """
        try:
            with trio.fail_after(RECEIVE_TIMEOUT_SECONDS):
                text = await self.ws.get_message()
        except ConnectionClosed as closed:
            self.close_reason = closed.reason
            raise SocketClosed(closed.reason) from None
        frame: dict[str, Any] = json.loads(text)
        if "sequence" in frame:
            self.pushes.append(frame)
        elif frame.get("correlation_id") is None:
            self.anonymous_replies.append(frame)
        else:
            self.replies[frame["correlation_id"]] = frame
        return frame

    async def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        """Send `message`, encoding a mapping as JSON text."""
        if isinstance(message, Mapping):
            message = json.dumps(message, ensure_ascii=False)
        await self.ws.send_message(message)

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send `message` with a fresh correlation id unless it has one, and
        return its reply; pushes read meanwhile are kept in `pushes`."""
        correlation_id = message.get("correlation_id")
        if correlation_id is None:
            correlation_id = uuid.uuid4().hex
            message = {**message, "correlation_id": correlation_id}
        await self.send(message)
        return await self.reply_to(correlation_id)

    async def reply_to(self, correlation_id: str) -> dict[str, Any]:
        """Read frames until the reply with `correlation_id` is in, and return it."""
        while correlation_id not in self.replies:
            await self.receive()
        return self.replies.pop(correlation_id)

    async def command(
        self, group: str, name: str, *, key: str | None = None, **payload: Any
    ) -> dict[str, Any]:
        """Send a command and return its reply."""
        return await self.request(command_message(group, name, key=key, **payload))

    async def query(self, group: str, name: str, **payload: Any) -> dict[str, Any]:
        """Send a query and return its reply."""
        return await self.request(query_message(group, name, **payload))

    async def next_push(self) -> dict[str, Any]:
        """Return the oldest push not yet returned by this method, reading
        frames until one arrives."""
        while self._next_push >= len(self.pushes):
            await self.receive()
        push = self.pushes[self._next_push]
        self._next_push += 1
        return push

    async def push_where(
        self, predicate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Return the next push for which `predicate` holds, skipping others."""
        while True:
            push = await self.next_push()
            if predicate(push):
                return push

    async def pushes_through(self, sequence: int) -> list[dict[str, Any]]:
        """Read until a push with `sequence` or later has arrived; return every
        push received so far."""
        while not self.pushes or self.pushes[-1]["sequence"] < sequence:
            await self.receive()
        return self.pushes

    async def wait_closed(self) -> CloseReason:
        """Read frames until the socket closes and return the close reason."""
        while True:
            try:
                await self.receive()
            except SocketClosed as closed:
                assert closed.reason is not None, "socket closed without a reason"
                return closed.reason


@asynccontextmanager
async def open_session(
    server: FerndServer,
    labour_id: str,
    token: str | None,
    *,
    since: str | int | None = None,
    subprotocols: list[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = CLIENT_MESSAGE_QUEUE,
) -> AsyncIterator[Session]:
    """Connect to the labour's socket with `token` offered as a subprotocol
    entry (unless `subprotocols` is given) and yield a Session.

    Raises trio_websocket.ConnectionRejected when fernd refuses the upgrade.
    """
    if subprotocols is None:
        subprotocols = [token_subprotocol(token)] if token is not None else []
    async with open_websocket_url(
        connect_url(server, labour_id, since),
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        # fernd replies to a close within milliseconds, and a longer wait
        # only slows tests whose socket the server already dropped.
        disconnect_timeout=2,
    ) as ws:
        yield Session(ws)


@dataclass
class StalledSocket:
    """A WebSocket client that completed the handshake and does not read
    until `drain` is called."""

    stream: trio.SocketStream
    connection: WSConnection

    async def drain(self, timeout: float) -> tuple[list[str], int | None]:
        """Read everything the server sent, for at most `timeout` seconds.

        Returns the text messages in order and the close code, or None when
        the server sent no close frame in that time.
        """
        messages: list[str] = []
        with trio.move_on_after(timeout):
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    return messages, None
                self.connection.receive_data(data)
                for event in self.connection.events():
                    if isinstance(event, TextMessage):
                        messages.append(event.data)
                    elif isinstance(event, CloseConnection):
                        return messages, event.code
        return messages, None


@asynccontextmanager
async def open_stalled_socket(
    server: FerndServer, labour_id: str, token: str
) -> AsyncIterator[StalledSocket]:
    """Open a socket to the labour that reads nothing after the handshake."""
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    sock = trio.socket.socket()
    # Set before connecting, so the TCP window is small from the start.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER_BYTES)
    await sock.connect((parts.hostname, parts.port))
    stream = trio.SocketStream(sock)
    try:
        connection = WSConnection(ConnectionType.CLIENT)
        handshake = Request(
            host=parts.netloc,
            target=f"/api/v1/connect/{labour_id}",
            subprotocols=[token_subprotocol(token)],
        )
        await stream.send_all(connection.send(handshake))
        accepted = False
        with trio.fail_after(HANDSHAKE_TIMEOUT_SECONDS):
            while not accepted:
                connection.receive_data(await stream.receive_some(65536))
                for event in connection.events():
                    if isinstance(event, RejectConnection):
                        raise AssertionError(f"handshake rejected: {event}")
                    accepted = isinstance(event, AcceptConnection)
        yield StalledSocket(stream, connection)
    finally:
        await stream.aclose()


# HTTP


def async_client(server: FerndServer, token: str | None) -> httpx.AsyncClient:
    """Return an AsyncClient for the server, authenticated with `token`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30)


async def async_send(
    client: httpx.AsyncClient,
    group: str,
    name: str,
    *,
    key: str | None = None,
    **payload: Any,
) -> httpx.Response:
    """POST a command, with `key` as Idempotency-Key."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(
        "/api/v1/command", json=tagged(group, name, **payload), headers=headers
    )


async def async_ask(
    client: httpx.AsyncClient, group: str, name: str, **payload: Any
) -> httpx.Response:
    """POST a query."""
    return await client.post("/api/v1/query", json=tagged(group, name, **payload))


async def every_labour_update(
    client: httpx.AsyncClient, labour_id: str
) -> list[dict[str, Any]]:
    """Return every labour update the caller may see, following `next_cursor`
    through pages of the largest size."""
    updates: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"labour_id": labour_id, "limit": MAX_PAGE_SIZE}
    while True:
        reply = await async_ask(client, "LabourUpdate", "GetLabourUpdates", **payload)
        if reply.status_code != 200:
            raise AssertionError(f"GetLabourUpdates returned {reply.text!r}")
        page = reply.json()
        updates += page["data"]
        if not page["has_more"]:
            return updates
        updated_at, item_id = decode_cursor(page["next_cursor"])
        payload["cursor"] = {"id": item_id, "updated_at": updated_at}


async def fetch_metrics(server: FerndServer, admin_token: str) -> dict[str, int]:
    """Return the counters of `GET /api/v1/admin/metrics`."""
    async with async_client(server, admin_token) as client:
        reply = await client.get("/api/v1/admin/metrics")
    if reply.status_code != 200:
        raise AssertionError(f"metrics returned {reply.status_code} {reply.text!r}")
    metrics: dict[str, int] = reply.json()
    return metrics
