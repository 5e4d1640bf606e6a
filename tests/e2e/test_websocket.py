"""The WebSocket route `/api/v1/connect/{labour_id}` against a real server.

Covers the connect checks and their order, the client messages and their
replies, and idempotency keys shared with HTTP. Pushes are checked for order,
for filtering by the reader's access and for resume with `since`. The rest
covers a client that stopped reading, the close codes, and shutdown with an
open socket.
"""

import json
import signal
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected

from fernd.runtime.sockets import CLOSE_REASON_MAX_BYTES, truncate_reason
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    Member,
    join,
    new_id,
    parse_wire_time,
    plan_labour,
    share_token,
    unique_user,
)
from tests.e2e.ws_helpers import (
    Session,
    async_ask,
    async_client,
    async_send,
    command_message,
    every_labour_update,
    fetch_metrics,
    open_session,
    open_stalled_socket,
    query_message,
    token_subprotocol,
)

ALLOWED_ORIGIN = "https://app.example.com"
ADMIN_USER_ID = "ws-admin"
# Events a stalled reader is sent: more than the outgoing queue's 1,000
# messages plus what the kernel buffers on a 4 KiB receive window.
STALL_EVENT_COUNT = 1200
# Commands sent over HTTP while sockets read part of them and resume.
RESUME_BURST_SIZE = 1000
# Concurrent HTTP senders of a burst, enough to keep the actor batching.
BURST_SENDERS = 8
# After the last command of a burst is acknowledged, every reader that keeps
# reading must have its pushes within this many seconds.
PUSH_DEADLINE_SECONDS = 5.0
# For checks that are not about speed, on a machine other work may load.
SLOW_MACHINE_DEADLINE_SECONDS = 30.0
# A stopping server finishes in-flight work within its 10 s graceful timeout.
SHUTDOWN_TIMEOUT_SECONDS = 15.0
# With nothing in flight, a stopping server should exit within this time.
PROMPT_EXIT_SECONDS = 5.0
# A command waits at most this long for its reply while a client is stalled;
# without a stalled client the reply takes milliseconds.
COMMAND_LATENCY_LIMIT_SECONDS = 2.0
# Largest WebSocket frame fernd accepts, in bytes.
MAX_FRAME_BYTES = 65536
REPLY_KEYS = {"correlation_id", "success", "data", "error", "code"}
PUSH_KEYS = {"type", "data", "sequence"}
NOT_ASSOCIATED = "Authorization failed: Not associated with this labour"


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server with an origin allow-list and an administrator, shared by the
    tests of this module; each test makes its own users and labours."""
    server = FerndServer(
        tmp_path_factory.mktemp("fernd-ws") / "data",
        env={
            "FERND_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
            "FERND_ADMIN_USER_IDS": ADMIN_USER_ID,
        },
    )
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Labour:
    """A planned labour whose share token is set: its id and mother."""

    server: FerndServer
    labour_id: str
    mother_id: str
    mother_token: str

    def member(self, prefix: str, role: str | None = "LOVED_ONE") -> Member:
        """Make a new user a subscriber with `role` (REQUESTED when None)."""
        with self.server.client(self.mother_token) as mother:
            return join(
                self.server, mother, self.labour_id, unique_user(prefix), role=role
            )


def new_labour(server: FerndServer, prefix: str = "mum") -> Labour:
    """Plan a labour for a new mother and wait for its share token, so the
    labour's catch-up work is finished when this returns."""
    mother_id = unique_user(prefix)
    token = server.token(mother_id, name="Alex Morgan")
    with server.client(token) as client:
        labour_id = plan_labour(client)
        share_token(client, labour_id)
    return Labour(server, labour_id, mother_id, token)


async def rejection(
    server: FerndServer, labour_id: str, token: str | None, **options: Any
) -> tuple[int, dict[str, Any]]:
    """Connect, expecting the upgrade to be refused; return status and body."""
    with pytest.raises(ConnectionRejected) as caught:
        async with open_session(server, labour_id, token, **options):
            pass
    body = caught.value.body or b""
    return caught.value.status_code, json.loads(body)


def error_body(message: str, code: str) -> dict[str, str]:
    return {"message": message, "code": code}


async def last_sequence(labour: Labour) -> int:
    """Return the labour's last sequence, read as the mother's backlog."""
    async with open_session(
        labour.server, labour.labour_id, labour.mother_token, since=0
    ) as session:
        # The backlog is queued before the socket reads any message, so it
        # is all in before this reply.
        await session.request({"kind": "ServerTimestamp"})
        return int(session.pushes[-1]["sequence"])


def post_update(
    labour_id: str, message: str, kind: str = "STATUS_UPDATE"
) -> dict[str, Any]:
    """Build the payload of a PostLabourUpdate command."""
    return {"labour_id": labour_id, "labour_update_type": kind, "message": message}


def is_post_of(message: str) -> Any:
    """Return a push predicate: the LabourUpdatePosted carrying `message`."""

    def matches(push: dict[str, Any]) -> bool:
        return (
            push["type"] == "LabourUpdatePosted" and push["data"]["message"] == message
        )

    return matches


def sequences(pushes: list[dict[str, Any]]) -> list[int]:
    return [push["sequence"] for push in pushes]


# Connect


@pytest.fixture(scope="module")
def guarded_labour(ws_server: FerndServer) -> tuple[Labour, Member]:
    """A labour with one subscriber still REQUESTED, for the connect checks."""
    labour = new_labour(ws_server)
    return labour, labour.member("requested", role=None)


async def test_connect_token_in_subprotocol_selected_back(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    entry = token_subprotocol(labour.mother_token)
    async with open_session(
        ws_server, labour.labour_id, None, subprotocols=["chat", entry]
    ) as session:
        assert session.ws.subprotocol == entry
        reply = await session.request({"kind": "ServerTimestamp"})
        assert reply["success"] is True


async def test_connect_bearer_header_selects_no_subprotocol(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    header = (b"Authorization", f"Bearer {labour.mother_token}".encode())
    async with open_session(
        ws_server, labour.labour_id, None, subprotocols=[], extra_headers=[header]
    ) as session:
        assert session.ws.subprotocol is None
        reply = await session.query("Labour", "GetLabour", labour_id=labour.labour_id)
        assert reply["success"] is True


async def test_connect_allowed_origin_accepted(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    origin = (b"Origin", ALLOWED_ORIGIN.encode())
    async with open_session(
        ws_server, labour.labour_id, labour.mother_token, extra_headers=[origin]
    ) as session:
        reply = await session.request({"kind": "ServerTimestamp"})
        assert reply["success"] is True


async def test_connect_plain_get_upgrade_required(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with async_client(ws_server, labour.mother_token) as client:
        reply = await client.get(f"/api/v1/connect/{labour.labour_id}")
    assert reply.status_code == 426
    assert reply.json() == error_body("Upgrade Required", "invalid_request")


async def test_connect_upgrade_checked_before_origin(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with async_client(ws_server, labour.mother_token) as client:
        reply = await client.get(
            f"/api/v1/connect/{labour.labour_id}",
            headers={"Origin": "https://evil.example.com"},
        )
    assert reply.status_code == 426


# Each case breaks the check it names and every later check, so the reply
# shows which check runs first: (labour, token, since, headers, subprotocols,
# status, message, code).
REJECTION_CASES = {
    "origin_before_token": (
        "invalid",
        None,
        "-1",
        [(b"Origin", b"https://evil.example.com")],
        None,
        403,
        "Forbidden",
        "forbidden",
    ),
    "missing_token_before_labour_id": (
        "invalid",
        None,
        "-1",
        None,
        None,
        401,
        "Unauthorised: Not Authenticated",
        "unauthenticated",
    ),
    "subprotocol_without_prefix_is_no_token": (
        "own",
        None,
        None,
        None,
        ["chat"],
        401,
        "Unauthorised: Not Authenticated",
        "unauthenticated",
    ),
    "invalid_token_before_labour_id": (
        "invalid",
        "garbage",
        "-1",
        None,
        None,
        401,
        "Unauthorised: User verification failed",
        "unauthenticated",
    ),
    "non_bearer_header_is_invalid_token": (
        "own",
        None,
        None,
        [(b"Authorization", b"Basic dXNlcjpwYXNz")],
        None,
        401,
        "Unauthorised: User verification failed",
        "unauthenticated",
    ),
    "labour_id_before_lookup": (
        "invalid",
        "mother",
        "-1",
        None,
        None,
        400,
        "Invalid labour id",
        "invalid_request",
    ),
    "unknown_labour_before_since": (
        "unknown",
        "mother",
        "abc",
        None,
        None,
        404,
        "Labour not found",
        "not_found",
    ),
    "stranger_before_since": (
        "own",
        "stranger",
        "abc",
        None,
        None,
        403,
        NOT_ASSOCIATED,
        "forbidden",
    ),
    "requested_subscriber_before_since": (
        "own",
        "requested",
        "abc",
        None,
        None,
        403,
        NOT_ASSOCIATED,
        "forbidden",
    ),
}


@pytest.mark.parametrize(
    "labour_kind, token_kind, since, headers, subprotocols, status, message, code",
    list(REJECTION_CASES.values()),
    ids=list(REJECTION_CASES),
)
async def test_connect_rejected_in_check_order(
    ws_server: FerndServer,
    guarded_labour: tuple[Labour, Member],
    labour_kind: str,
    token_kind: str | None,
    since: str | None,
    headers: list[tuple[bytes, bytes]] | None,
    subprotocols: list[str] | None,
    status: int,
    message: str,
    code: str,
) -> None:
    labour, requested = guarded_labour
    labour_id = {
        "own": labour.labour_id,
        "unknown": new_id(),
        "invalid": "not-a-uuid",
    }[labour_kind]
    token = {
        None: None,
        "garbage": "not.a.jwt",
        "mother": labour.mother_token,
        "stranger": ws_server.token(unique_user("stranger")),
        "requested": requested.token,
    }[token_kind]
    got = await rejection(
        ws_server,
        labour_id,
        token,
        since=since,
        extra_headers=headers,
        subprotocols=subprotocols,
    )
    assert got == (status, error_body(message, code))


@pytest.mark.parametrize("since", ["-1", "abc", "", "1e3", "+1", "head+1"])
async def test_connect_invalid_since_rejected(
    ws_server: FerndServer, guarded_labour: tuple[Labour, Member], since: str
) -> None:
    labour, _ = guarded_labour
    if since == "head+1":
        since = str(await last_sequence(labour) + 1)
    got = await rejection(ws_server, labour.labour_id, labour.mother_token, since=since)
    assert got == (400, error_body("Invalid since", "invalid_request"))


async def test_connect_since_equal_to_head_sends_no_backlog(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    head = await last_sequence(labour)
    async with open_session(
        ws_server, labour.labour_id, labour.mother_token, since=head
    ) as session:
        reply = await session.command(
            "LabourUpdate", "PostLabourUpdate", **post_update(labour.labour_id, "hi")
        )
        assert reply["success"] is True
        push = await session.next_push()
    assert push["sequence"] == head + 1
    assert push["type"] == "LabourUpdatePosted"


# Client messages and replies


async def test_server_timestamp_reply_echoes_correlation_id(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        before = datetime.now(UTC)
        reply = await s.request({"correlation_id": "ts-1", "kind": "ServerTimestamp"})
        after = datetime.now(UTC)
    assert set(reply) == REPLY_KEYS
    assert reply["correlation_id"] == "ts-1"
    assert reply["success"] is True
    assert reply["error"] is None
    assert reply["code"] is None
    assert set(reply["data"]) == {"server_timestamp"}
    stamp = parse_wire_time(reply["data"]["server_timestamp"])
    assert before <= stamp <= after


async def test_command_success_reply_shape(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        reply = await s.request(
            command_message(
                "Contraction",
                "StartContraction",
                correlation_id="start-1",
                labour_id=labour.labour_id,
                contraction_id=new_id(),
            )
        )
    assert reply == {
        "correlation_id": "start-1",
        "success": True,
        "data": None,
        "error": None,
        "code": None,
    }


async def test_command_failure_reply_carries_domain_error(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    async with open_session(ws_server, lid, labour.mother_token) as s:
        missing = await s.request(
            command_message(
                "Contraction",
                "EndContraction",
                correlation_id="end-missing",
                labour_id=lid,
                contraction_id=new_id(),
                intensity=5,
            )
        )
        await s.command(
            "Contraction", "StartContraction", labour_id=lid, contraction_id=new_id()
        )
        second = await s.request(
            command_message(
                "Contraction",
                "StartContraction",
                correlation_id="start-twice",
                labour_id=lid,
                contraction_id=new_id(),
            )
        )
    assert missing == {
        "correlation_id": "end-missing",
        "success": False,
        "data": None,
        "error": "Domain error: Invalid command: Contraction not found",
        "code": "not_found",
    }
    assert second == {
        "correlation_id": "start-twice",
        "success": False,
        "data": None,
        "error": (
            "Domain error: Invalid command: Labour already has a contraction "
            "in progress"
        ),
        "code": "conflict",
    }


async def test_command_authorised_per_message(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    loved_one = labour.member("loved")
    async with open_session(ws_server, labour.labour_id, loved_one.token) as s:
        reply = await s.command(
            "Contraction",
            "StartContraction",
            labour_id=labour.labour_id,
            contraction_id=new_id(),
        )
    assert reply["success"] is False
    assert reply["code"] == "forbidden"
    assert reply["error"] == (
        "Authorization failed: Missing required capability: ExecuteLabourCommand"
    )


async def test_query_reply_matches_http(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    async with (
        open_session(ws_server, lid, labour.mother_token) as s,
        async_client(ws_server, labour.mother_token) as http,
    ):
        contraction_id = new_id()
        await s.command(
            "Contraction",
            "StartContraction",
            labour_id=lid,
            contraction_id=contraction_id,
        )
        await s.command(
            "Contraction",
            "EndContraction",
            labour_id=lid,
            contraction_id=contraction_id,
            intensity=6,
        )
        for group, name in [
            ("Labour", "GetLabour"),
            ("Contraction", "GetContractions"),
        ]:
            over_socket = await s.request(
                query_message(group, name, correlation_id=f"q-{name}", labour_id=lid)
            )
            over_http = await async_ask(http, group, name, labour_id=lid)
            assert over_socket["correlation_id"] == f"q-{name}"
            assert over_socket["success"] is True
            assert over_socket["error"] is None
            assert over_socket["data"] == over_http.json(), name


async def test_query_failure_reply_carries_not_found(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        reply = await s.query(
            "Contraction",
            "GetContractionById",
            labour_id=labour.labour_id,
            contraction_id=new_id(),
        )
    assert reply["success"] is False
    assert reply["data"] is None
    assert reply["error"] == "Contraction not found"
    assert reply["code"] == "not_found"


def _update_messages(updates: list[dict[str, Any]]) -> list[str]:
    return sorted(update["message"] for update in updates)


async def test_idempotency_key_from_http_replayed_over_socket(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    payload = post_update(lid, "first")
    async with (
        open_session(ws_server, lid, labour.mother_token) as s,
        async_client(ws_server, labour.mother_token) as http,
    ):
        over_http = await async_send(
            http, "LabourUpdate", "PostLabourUpdate", key="shared-1", **payload
        )
        assert over_http.status_code == 204
        first = await s.push_where(is_post_of("first"))
        replay = await s.command(
            "LabourUpdate", "PostLabourUpdate", key="shared-1", **payload
        )
        await s.command(
            "LabourUpdate", "PostLabourUpdate", **post_update(lid, "marker")
        )
        marker = await s.push_where(is_post_of("marker"))
        updates = await every_labour_update(http, lid)
    assert replay["success"] is True
    assert replay["code"] is None
    # Pushes carry every event in order, so a second "first" would sit between.
    assert marker["sequence"] == first["sequence"] + 1
    assert _update_messages(updates) == ["first", "marker"]


async def test_idempotency_key_from_socket_replayed_over_http(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    payload = post_update(lid, "first")
    async with (
        open_session(ws_server, lid, labour.mother_token) as s,
        async_client(ws_server, labour.mother_token) as http,
    ):
        reply = await s.command(
            "LabourUpdate", "PostLabourUpdate", key="shared-2", **payload
        )
        assert reply["success"] is True
        first = await s.push_where(is_post_of("first"))
        replay = await async_send(
            http, "LabourUpdate", "PostLabourUpdate", key="shared-2", **payload
        )
        await s.command(
            "LabourUpdate", "PostLabourUpdate", **post_update(lid, "marker")
        )
        marker = await s.push_where(is_post_of("marker"))
        updates = await every_labour_update(http, lid)
    assert replay.status_code == 204
    assert replay.headers.get("Idempotency-Replayed") == "true"
    assert marker["sequence"] == first["sequence"] + 1
    assert _update_messages(updates) == ["first", "marker"]


async def test_idempotency_key_failure_and_reuse_over_socket(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    missing = {"labour_id": lid, "contraction_id": new_id(), "intensity": 4}
    async with (
        open_session(ws_server, lid, labour.mother_token) as s,
        async_client(ws_server, labour.mother_token) as http,
    ):
        over_http = await async_send(
            http, "Contraction", "EndContraction", key="failed-1", **missing
        )
        replay = await s.command(
            "Contraction", "EndContraction", key="failed-1", **missing
        )
        reused = await s.command(
            "Contraction",
            "EndContraction",
            key="failed-1",
            **{**missing, "intensity": 5},
        )
        malformed = await s.command(
            "Contraction", "EndContraction", key="has space", **missing
        )
    assert over_http.status_code == 404
    assert (replay["error"], replay["code"]) == (
        over_http.json()["message"],
        over_http.json()["code"],
    )
    assert (reused["error"], reused["code"]) == (
        "Idempotency key reused with a different command",
        "invalid_request",
    )
    assert (malformed["error"], malformed["code"]) == (
        "Invalid idempotency key",
        "invalid_request",
    )


# Raw frames that fernd cannot use, with the correlation id it should echo
# and the error message of the invalid_request reply.
MALFORMED_FRAMES = [
    ("nonsense", None, "Failed to parse request body"),
    ("[]", None, "Failed to parse request body"),
    ('{"correlation_id": "m-1"}', "m-1", "Failed to parse request body"),
    (
        '{"correlation_id": "m-2", "kind": "Shout"}',
        "m-2",
        "Failed to parse request body",
    ),
    (
        '{"correlation_id": "m-3", "kind": "Command", "type": "Contraction",'
        ' "payload": {"type": "Dance", "payload": {}}}',
        "m-3",
        "Failed to parse request body",
    ),
    (
        '{"correlation_id": "m-4", "kind": "Query", "type": "Labour",'
        ' "payload": {"type": "GetLabour", "payload": {"labour_id": "nope"}}}',
        "m-4",
        "Failed to parse request body",
    ),
    (
        '{"correlation_id": "m-5", "kind": "Command", "type": "Labour",'
        ' "payload": {"type": "SetSubscriptionToken", "payload":'
        ' {"labour_id": "LABOUR", "token": "ABCDEFGH"}}}',
        "m-5",
        "Failed to parse request body",
    ),
    (
        '{"correlation_id": "m-6", "kind": "Command"}',
        "m-6",
        "Failed to parse request body",
    ),
]


async def test_malformed_messages_answered_and_socket_stays_open(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        for frame, correlation_id, message in MALFORMED_FRAMES:
            await s.send(frame.replace("LABOUR", labour.labour_id))
            if correlation_id is None:
                while not s.anonymous_replies:
                    await s.receive()
                reply = s.anonymous_replies.pop()
            else:
                reply = await s.reply_to(correlation_id)
            assert reply == {
                "correlation_id": correlation_id,
                "success": False,
                "data": None,
                "error": message,
                "code": "invalid_request",
            }, frame
        after = await s.request({"correlation_id": "after", "kind": "ServerTimestamp"})
    assert after["success"] is True


async def test_binary_frame_accepted(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        await s.send(b'{"correlation_id": "bin", "kind": "ServerTimestamp"}')
        reply = await s.reply_to("bin")
    assert reply["success"] is True


async def test_command_for_other_labour_refused(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    with ws_server.client(labour.mother_token) as client:
        other_id = plan_labour(client, first_labour=False)
    async with (
        open_session(ws_server, labour.labour_id, labour.mother_token) as s,
        async_client(ws_server, labour.mother_token) as http,
    ):
        command = await s.command(
            "Contraction",
            "StartContraction",
            labour_id=other_id,
            contraction_id=new_id(),
        )
        query = await s.query("Labour", "GetLabour", labour_id=other_id)
        contractions = await async_ask(
            http, "Contraction", "GetContractions", labour_id=other_id
        )
    mismatch = ("Labour id does not match this connection", "invalid_request")
    assert (command["error"], command["code"]) == mismatch
    assert (query["error"], query["code"]) == mismatch
    assert contractions.json()["data"] == []


def _padded_timestamp_request(size: int) -> str:
    request = '{"correlation_id": "big", "kind": "ServerTimestamp"}'
    return request + " " * (size - len(request))


async def test_frame_of_64_kib_accepted(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        await s.send(_padded_timestamp_request(MAX_FRAME_BYTES))
        reply = await s.reply_to("big")
    assert reply["success"] is True


async def test_frame_over_64_kib_closes_1009(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        await s.send(_padded_timestamp_request(MAX_FRAME_BYTES + 1))
        reason = await s.wait_closed()
    assert reason.code == 1009


# Pushes


async def test_pushes_every_event_in_order_without_correlation_id(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    async with open_session(ws_server, lid, labour.mother_token, since=0) as s:
        for _ in range(5):
            contraction_id = new_id()
            await s.command(
                "Contraction",
                "StartContraction",
                labour_id=lid,
                contraction_id=contraction_id,
            )
            await s.command(
                "Contraction",
                "EndContraction",
                labour_id=lid,
                contraction_id=contraction_id,
                intensity=4,
            )
        await s.command("LabourUpdate", "PostLabourUpdate", **post_update(lid, "last"))
        await s.push_where(is_post_of("last"))
    pushes = s.pushes
    assert sequences(pushes) == list(range(1, len(pushes) + 1))
    assert [p["type"] for p in pushes[:3]] == [
        "LabourPlanned",
        "LabourPhaseChanged",
        "SubscriptionTokenSet",
    ]
    assert sum(p["type"] == "ContractionEnded" for p in pushes) == 5
    for push in pushes:
        assert set(push) == PUSH_KEYS, push
        assert push["data"]["labour_id"] == lid, push


async def test_socket_without_since_gets_only_new_events(
    ws_server: FerndServer,
) -> None:
    labour = new_labour(ws_server)
    head = await last_sequence(labour)
    async with open_session(ws_server, labour.labour_id, labour.mother_token) as s:
        await s.command(
            "LabourUpdate", "PostLabourUpdate", **post_update(labour.labour_id, "new")
        )
        push = await s.next_push()
    assert push["sequence"] == head + 1
    assert is_post_of("new")(push)


async def test_push_sent_after_read_models_include_it(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    async with open_session(ws_server, lid, labour.mother_token) as s:
        for round_number in range(5):
            contraction_id = new_id()
            # Not awaiting the reply: the push alone must imply the read model.
            await s.send(
                command_message(
                    "Contraction",
                    "StartContraction",
                    labour_id=lid,
                    contraction_id=contraction_id,
                )
            )
            await s.push_where(lambda p: p["type"] == "ContractionStarted")
            found = await s.query(
                "Contraction",
                "GetContractionById",
                labour_id=lid,
                contraction_id=contraction_id,
            )
            assert found["success"] is True, round_number
            await s.send(
                command_message(
                    "Contraction",
                    "EndContraction",
                    labour_id=lid,
                    contraction_id=contraction_id,
                    intensity=round_number,
                )
            )
            await s.push_where(lambda p: p["type"] == "ContractionEnded")
            ended = await s.query(
                "Contraction",
                "GetContractionById",
                labour_id=lid,
                contraction_id=contraction_id,
            )
            assert ended["data"]["intensity"] == round_number
            message = f"update {round_number}"
            await s.send(
                command_message(
                    "LabourUpdate", "PostLabourUpdate", **post_update(lid, message)
                )
            )
            posted = await s.push_where(is_post_of(message))
            update = await s.query(
                "LabourUpdate",
                "GetLabourUpdateById",
                labour_id=lid,
                labour_update_id=posted["data"]["labour_update_id"],
            )
            assert update["success"] is True, round_number


async def _read_until(session: Session, message: str) -> list[dict[str, Any]]:
    """Read pushes until the post of `message`; return every push so far."""
    await session.push_where(is_post_of(message))
    return session.pushes


async def test_pushes_filtered_by_reader_access(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    partner = labour.member("partner", role="BIRTH_PARTNER")
    loved = labour.member("loved")
    other = labour.member("other")
    newcomer_id = unique_user("newcomer")
    newcomer_token = ws_server.token(newcomer_id)
    async with AsyncExitStack() as stack:
        mother = await stack.enter_async_context(
            open_session(ws_server, lid, labour.mother_token)
        )
        readers = {
            name: await stack.enter_async_context(open_session(ws_server, lid, token))
            for name, token in [
                ("partner", partner.token),
                ("loved", loved.token),
                ("other", other.token),
            ]
        }
        http = await stack.enter_async_context(
            async_client(ws_server, labour.mother_token)
        )
        loved_http = await stack.enter_async_context(
            async_client(ws_server, loved.token)
        )
        newcomer_http = await stack.enter_async_context(
            async_client(ws_server, newcomer_token)
        )

        note = await mother.command(
            "LabourUpdate",
            "PostLabourUpdate",
            **post_update(lid, "secret", "PRIVATE_NOTE"),
        )
        assert note["success"] is True
        posted = await mother.next_push()
        note_id = posted["data"]["labour_update_id"]
        steps: list[tuple[str, str, httpx.AsyncClient, dict[str, Any]]] = [
            (
                "LabourUpdate",
                "UpdateLabourUpdateMessage",
                http,
                {"labour_update_id": note_id, "message": "hush"},
            ),
            ("LabourUpdate", "DeleteLabourUpdate", http, {"labour_update_id": note_id}),
            ("Labour", "SendLabourInvite", http, {"invite_email": "gran@example.com"}),
            ("Subscription", "InvalidateSubscriptionToken", http, {}),
        ]
        for group, name, client, fields in steps:
            reply = await async_send(client, group, name, labour_id=lid, **fields)
            assert reply.status_code == 204, (name, reply.text)
        token_set = await mother.push_where(
            lambda p: p["type"] == "SubscriptionTokenSet"
        )
        later_steps: list[tuple[str, str, httpx.AsyncClient, dict[str, Any]]] = [
            (
                "Subscriber",
                "UpdateNotificationMethods",
                loved_http,
                {
                    "subscription_id": loved.subscription_id,
                    "notification_methods": ["SMS"],
                },
            ),
            (
                "Subscription",
                "UpdateSubscriberRole",
                http,
                {"subscription_id": other.subscription_id, "role": "SUPPORT_PERSON"},
            ),
            (
                "Subscriber",
                "RequestAccess",
                newcomer_http,
                {"token": token_set["data"]["token"]},
            ),
        ]
        for group, name, client, fields in later_steps:
            reply = await async_send(client, group, name, labour_id=lid, **fields)
            assert reply.status_code == 204, (name, reply.text)
        requested = await mother.push_where(
            lambda p: p["type"] == "SubscriberRequested"
        )
        reply = await async_send(
            http,
            "Subscription",
            "ApproveSubscriber",
            labour_id=lid,
            subscription_id=requested["data"]["subscription_id"],
        )
        assert reply.status_code == 204
        reply = await async_send(
            http, "LabourUpdate", "PostLabourUpdate", **post_update(lid, "marker")
        )
        assert reply.status_code == 204

        everything = await _read_until(mother, "marker")
        seen = {name: await _read_until(s, "marker") for name, s in readers.items()}

    assert sequences(everything) == list(
        range(everything[0]["sequence"], everything[-1]["sequence"] + 1)
    )
    mother_types = [push["type"] for push in everything]
    assert mother_types == [
        "LabourUpdatePosted",
        "LabourUpdateMessageUpdated",
        "LabourUpdateDeleted",
        "LabourInviteSent",
        "SubscriptionTokenInvalidated",
        "SubscriptionTokenSet",
        "SubscriberNotificationMethodsUpdated",
        "SubscriberRoleUpdated",
        "SubscriberRequested",
        "SubscriberApproved",
        "LabourUpdatePosted",
    ]
    expected_indexes = {
        "partner": [0, 1, 2, 10],
        "loved": [6, 10],
        "other": [7, 10],
    }
    for name, indexes in expected_indexes.items():
        assert seen[name] == [everything[i] for i in indexes], name


async def test_private_note_pushes_follow_role_changes(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    loved = labour.member("loved")
    async with (
        open_session(ws_server, lid, labour.mother_token) as mother,
        open_session(ws_server, lid, loved.token) as reader,
    ):

        async def send(group: str, name: str, **fields: Any) -> None:
            reply = await mother.command(group, name, labour_id=lid, **fields)
            assert reply["success"] is True, (name, reply)

        async def set_role(role: str) -> None:
            await send(
                "Subscription",
                "UpdateSubscriberRole",
                subscription_id=loved.subscription_id,
                role=role,
            )

        async def post(message: str, kind: str) -> str:
            await send(
                "LabourUpdate",
                "PostLabourUpdate",
                labour_update_type=kind,
                message=message,
            )
            push = await mother.push_where(is_post_of(message))
            update_id: str = push["data"]["labour_update_id"]
            return update_id

        hidden = await post("hidden while loved one", "PRIVATE_NOTE")
        await set_role("BIRTH_PARTNER")
        await post("seen as partner", "PRIVATE_NOTE")
        await send(
            "LabourUpdate",
            "UpdateLabourUpdateMessage",
            labour_update_id=hidden,
            message="edited",
        )
        await set_role("LOVED_ONE")
        await post("hidden again", "PRIVATE_NOTE")
        await send(
            "LabourUpdate",
            "UpdateLabourUpdateMessage",
            labour_update_id=hidden,
            message="edited twice",
        )
        await send(
            "LabourUpdate",
            "UpdateLabourUpdateType",
            labour_update_id=hidden,
            labour_update_type="STATUS_UPDATE",
        )
        await send(
            "LabourUpdate",
            "UpdateLabourUpdateMessage",
            labour_update_id=hidden,
            message="now public",
        )
        await post("marker", "STATUS_UPDATE")
        seen = await _read_until(reader, "marker")

    described = [
        (push["type"], push["data"].get("role") or push["data"].get("message"))
        for push in seen
    ]
    assert described == [
        ("SubscriberRoleUpdated", "BIRTH_PARTNER"),
        ("LabourUpdatePosted", "seen as partner"),
        ("LabourUpdateMessageUpdated", "edited"),
        ("SubscriberRoleUpdated", "LOVED_ONE"),
        ("LabourUpdateTypeUpdated", None),
        ("LabourUpdateMessageUpdated", "now public"),
        ("LabourUpdatePosted", "marker"),
    ]


def _visible_to_subscriber(push: dict[str, Any], member: Member) -> bool:
    """Tell whether a subscriber with no birth-partner role may see `push`.

    Covers the events a planned labour, an approval and a burst of
    PostLabourUpdate commands produce.
    """
    kind = push["type"]
    data = push["data"]
    if kind in (
        "LabourInviteSent",
        "SubscriptionTokenSet",
        "SubscriptionTokenInvalidated",
    ):
        return False
    if kind == "SubscriberRequested":
        return bool(data["subscriber_id"] == member.user_id)
    if kind.startswith("Subscriber"):
        return bool(data["subscription_id"] == member.subscription_id)
    if kind == "LabourUpdatePosted":
        return bool(data["labour_update_type"] != "PRIVATE_NOTE")
    return True


async def test_resume_after_disconnect_mid_burst(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    loved = labour.member("loved")
    head = await last_sequence(labour)
    results: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    # Commands acknowledged when each reader disconnected.
    left_at: dict[str, int] = {}
    acknowledged = 0

    async def burst() -> None:
        nonlocal acknowledged
        async with async_client(ws_server, labour.mother_token) as http:

            async def sender(first: int) -> None:
                nonlocal acknowledged
                for i in range(first, RESUME_BURST_SIZE, BURST_SENDERS):
                    kind = "PRIVATE_NOTE" if i % 3 == 0 else "STATUS_UPDATE"
                    reply = await async_send(
                        http,
                        "LabourUpdate",
                        "PostLabourUpdate",
                        **post_update(lid, f"burst {i}", kind),
                    )
                    assert reply.status_code == 204, reply.text
                    acknowledged += 1

            async with trio.open_nursery() as senders:
                for first in range(BURST_SENDERS):
                    senders.start_soon(sender, first)
            reply = await async_send(
                http, "LabourUpdate", "PostLabourUpdate", **post_update(lid, "marker")
            )
            assert reply.status_code == 204

    async def reader(name: str, token: str, leave_after: int) -> None:
        async with open_session(ws_server, lid, token, since=0) as first:
            await first.pushes_through(head + leave_after)
        left_at[name] = acknowledged
        resume_from = first.pushes[-1]["sequence"]
        async with open_session(ws_server, lid, token, since=resume_from) as second:
            await _read_until(second, "marker")
        results[name] = (first.pushes, second.pushes)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(burst)
        nursery.start_soon(reader, "mother", labour.mother_token, 300)
        nursery.start_soon(reader, "loved", loved.token, 150)

    mother_first, mother_second = results["mother"]
    everything = mother_first + mother_second
    total = head + RESUME_BURST_SIZE + 1
    assert sequences(everything) == list(range(1, total + 1))
    loved_first, loved_second = results["loved"]
    expected = [p for p in everything if _visible_to_subscriber(p, loved)]
    assert loved_first + loved_second == expected
    # Otherwise the test did not exercise a resume into live events.
    assert left_at["mother"] < RESUME_BURST_SIZE
    assert left_at["loved"] < RESUME_BURST_SIZE


# SocketHub: slow clients and closing


async def test_stalled_reader_does_not_delay_others(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    admin_token = ws_server.token(ADMIN_USER_ID)
    dropped_before = (await fetch_metrics(ws_server, admin_token))[
        "dropped_slow_sockets"
    ]
    latencies: list[float] = []
    async with AsyncExitStack() as stack:
        stalled = await stack.enter_async_context(
            open_stalled_socket(ws_server, lid, labour.mother_token)
        )
        readers = [
            await stack.enter_async_context(
                open_session(ws_server, lid, labour.mother_token)
            )
            for _ in range(9)
        ]
        http = await stack.enter_async_context(
            async_client(ws_server, labour.mother_token)
        )

        async def sender(first: int) -> None:
            for i in range(first, STALL_EVENT_COUNT, BURST_SENDERS):
                started = time.monotonic()
                reply = await async_send(
                    http,
                    "LabourUpdate",
                    "PostLabourUpdate",
                    **post_update(lid, f"e{i}"),
                )
                latencies.append(time.monotonic() - started)
                assert reply.status_code == 204, reply.text

        async def read_all(session: Session) -> None:
            posted = 0
            while posted < STALL_EVENT_COUNT:
                push = await session.next_push()
                posted += push["type"] == "LabourUpdatePosted"

        async def socket_commands(session: Session) -> None:
            for _ in range(10):
                contraction_id = new_id()
                steps: list[tuple[str, dict[str, Any]]] = [
                    ("StartContraction", {}),
                    ("EndContraction", {"intensity": 3}),
                ]
                for name, extra in steps:
                    reply = await session.command(
                        "Contraction",
                        name,
                        labour_id=lid,
                        contraction_id=contraction_id,
                        **extra,
                    )
                    assert reply["success"] is True, reply

        async with trio.open_nursery() as nursery:
            for first in range(BURST_SENDERS):
                nursery.start_soon(sender, first)
            nursery.start_soon(socket_commands, readers[0])
        with trio.move_on_after(PUSH_DEADLINE_SECONDS) as reading:
            async with trio.open_nursery() as nursery:
                for session in readers:
                    nursery.start_soon(read_all, session)
        messages, close_code = await stalled.drain(PUSH_DEADLINE_SECONDS)
        # The hub counts the drop when the closed socket unregisters.
        with trio.move_on_after(PUSH_DEADLINE_SECONDS):
            while True:
                metrics = await fetch_metrics(ws_server, admin_token)
                if metrics["dropped_slow_sockets"] > dropped_before:
                    break
                await trio.sleep(0.02)

    assert max(latencies) < COMMAND_LATENCY_LIMIT_SECONDS
    assert not reading.cancelled_caught, "readers lacked pushes after the deadline"
    for session in readers:
        pushed = [p for p in session.pushes if p["type"] == "LabourUpdatePosted"]
        assert len(pushed) == STALL_EVENT_COUNT
    assert close_code == 1013
    assert len(messages) < STALL_EVENT_COUNT
    assert metrics["dropped_slow_sockets"] == dropped_before + 1


async def test_stalled_reader_drop_logs_no_error(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    log_offset = len(ws_server.log())
    async with (
        open_stalled_socket(ws_server, lid, labour.mother_token) as stalled,
        open_session(ws_server, lid, labour.mother_token) as mother,
    ):
        for start in range(0, STALL_EVENT_COUNT, 100):
            for i in range(start, start + 100):
                await mother.send(
                    command_message(
                        "LabourUpdate",
                        "PostLabourUpdate",
                        correlation_id=f"c{i}",
                        **post_update(lid, f"e{i}"),
                    )
                )
            for i in range(start, start + 100):
                await mother.reply_to(f"c{i}")
        # This test is about the log, not speed: allow a loaded machine time.
        _, close_code = await stalled.drain(SLOW_MACHINE_DEADLINE_SECONDS)
    assert close_code == 1013
    await trio.sleep(0.2)
    new_log = ws_server.log()[log_offset:]
    assert "Traceback" not in new_log
    assert " ERROR " not in new_log


@pytest.mark.parametrize(
    "ending", ["RemoveSubscriber", "BlockSubscriber", "Unsubscribe"]
)
async def test_access_end_closes_socket_4403(
    ws_server: FerndServer, ending: str
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    member = labour.member("leaving")
    async with (
        open_session(ws_server, lid, labour.mother_token) as mother,
        open_session(ws_server, lid, member.token) as leaving,
        async_client(ws_server, member.token) as member_http,
    ):
        await mother.command(
            "LabourUpdate", "PostLabourUpdate", **post_update(lid, "before")
        )
        await leaving.push_where(is_post_of("before"))
        follow_ups = [
            command_message(
                "LabourUpdate",
                "PostLabourUpdate",
                correlation_id=f"after-{i}",
                **post_update(lid, f"after {i}"),
            )
            for i in range(3)
        ]
        if ending == "Unsubscribe":
            reply = await async_send(
                member_http,
                "Subscriber",
                "Unsubscribe",
                labour_id=lid,
                subscription_id=member.subscription_id,
            )
            assert reply.status_code == 204
            for message in follow_ups:
                await mother.send(message)
        else:
            # Sent back to back, so the follow-ups usually share the batch,
            # and the publish call, of the event that ends the access.
            await mother.send(
                command_message(
                    "Subscription",
                    ending,
                    correlation_id="end",
                    labour_id=lid,
                    subscription_id=member.subscription_id,
                )
            )
            for message in follow_ups:
                await mother.send(message)
            assert (await mother.reply_to("end"))["success"] is True
        for i in range(3):
            assert (await mother.reply_to(f"after-{i}"))["success"] is True
        reason = await leaving.wait_closed()
    expected_event = {
        "RemoveSubscriber": "SubscriberRemoved",
        "BlockSubscriber": "SubscriberBlocked",
        "Unsubscribe": "SubscriberUnsubscribed",
    }[ending]
    assert reason.code == 4403
    assert leaving.pushes[-1]["type"] == expected_event
    assert leaving.pushes[-1]["data"]["subscription_id"] == member.subscription_id
    assert await rejection(ws_server, lid, member.token) == (
        403,
        error_body(NOT_ASSOCIATED, "forbidden"),
    )


@pytest.mark.parametrize("ending", ["Unsubscribe", "DeleteLabour"])
async def test_access_ending_command_over_own_socket_gets_reply(
    ws_server: FerndServer, ending: str
) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    if ending == "Unsubscribe":
        member = labour.member("leaving")
        token = member.token
        message = command_message(
            "Subscriber",
            "Unsubscribe",
            correlation_id="end",
            labour_id=lid,
            subscription_id=member.subscription_id,
        )
    else:
        token = labour.mother_token
        async with async_client(ws_server, token) as http:
            reply = await async_send(http, "Labour", "CompleteLabour", labour_id=lid)
        assert reply.status_code == 204
        message = command_message(
            "Labour", "DeleteLabour", correlation_id="end", labour_id=lid
        )
    async with open_session(ws_server, lid, token) as session:
        await session.send(message)
        await session.wait_closed()
    assert session.replies.get("end", {}).get("success") is True


async def test_token_expiry_closes_socket_4401(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    ttl_seconds = 3
    issued = time.time()
    short_token = ws_server.token(labour.mother_id, ttl_seconds=ttl_seconds)
    async with open_session(ws_server, labour.labour_id, short_token) as s:
        reply = await s.request({"kind": "ServerTimestamp"})
        assert reply["success"] is True
        reason = await s.wait_closed()
    closed_after = time.time() - issued
    assert reason.code == 4401
    # `exp` is whole seconds, so expiry falls within the last second of the ttl;
    # the 30 s verification leeway must not delay the close.
    assert ttl_seconds - 1.5 <= closed_after <= ttl_seconds + 1.5


async def test_labour_deleted_closes_sockets_4404(ws_server: FerndServer) -> None:
    labour = new_labour(ws_server)
    lid = labour.labour_id
    loved = labour.member("loved")
    async with (
        open_session(ws_server, lid, labour.mother_token) as mother,
        open_session(ws_server, lid, loved.token) as reader,
    ):
        completed = await mother.command("Labour", "CompleteLabour", labour_id=lid)
        assert completed["success"] is True
        await mother.send(command_message("Labour", "DeleteLabour", labour_id=lid))
        mother_reason = await mother.wait_closed()
        reader_reason = await reader.wait_closed()
    for name, session, reason in [
        ("mother", mother, mother_reason),
        ("loved one", reader, reader_reason),
    ]:
        assert reason.code == 4404, name
        assert session.pushes[-1]["type"] == "LabourDeleted", name
    assert await rejection(ws_server, lid, labour.mother_token) == (
        404,
        error_body("Labour not found", "not_found"),
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("a" * CLOSE_REASON_MAX_BYTES, "a" * CLOSE_REASON_MAX_BYTES),
        ("a" * (CLOSE_REASON_MAX_BYTES + 1), "a" * CLOSE_REASON_MAX_BYTES),
        # 61 two-byte characters fill 122 bytes; the 62nd would cross 123.
        ("é" * 62, "é" * 61),
        # 41 three-byte characters fill exactly 123 bytes.
        ("€" * 41, "€" * 41),
        ("€" * 42, "€" * 41),
        # A four-byte character starting at byte 120 does not fit.
        ("a" * 120 + "😀", "a" * 120),
        ("a" * 119 + "😀", "a" * 119 + "😀"),
        ("", ""),
    ],
)
def test_truncate_reason_keeps_whole_characters(reason: str, expected: str) -> None:
    truncated = truncate_reason(reason)
    assert truncated == expected
    assert len(truncated.encode()) <= CLOSE_REASON_MAX_BYTES


# Shutdown


async def test_shutdown_closes_socket_1001_and_keeps_data(tmp_path: Path) -> None:
    server = FerndServer(tmp_path / "data")
    server.start()
    try:
        labour = new_labour(server)
        lid = labour.labour_id
        async with open_session(server, lid, labour.mother_token, since=0) as s:
            for i in range(3):
                reply = await s.command(
                    "LabourUpdate", "PostLabourUpdate", **post_update(lid, f"kept {i}")
                )
                assert reply["success"] is True
            before = list(await _read_until(s, "kept 2"))
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            reason = await s.wait_closed()
        exit_code = await _wait_for_exit(server, SHUTDOWN_TIMEOUT_SECONDS)
        server.start()
        async with open_session(server, lid, labour.mother_token, since=0) as s:
            after = await _read_until(s, "kept 2")
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert reason.code == 1001
    assert reason.reason == "Server shutting down"
    assert exit_code == 0
    assert after == before


async def test_shutdown_exits_promptly_after_socket_closed(tmp_path: Path) -> None:
    server = FerndServer(tmp_path / "data")
    server.start()
    try:
        labour = new_labour(server)
        async with open_session(
            server, labour.labour_id, labour.mother_token
        ) as session:
            await session.request({"kind": "ServerTimestamp"})
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        exit_code = await _wait_for_exit(server, PROMPT_EXIT_SECONDS)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert exit_code == 0


async def _wait_for_exit(server: FerndServer, timeout: float) -> int | None:
    """Poll the server process for up to `timeout` seconds; return its exit
    code, or None when it is still running."""
    assert server.process is not None
    with trio.move_on_after(timeout):
        while server.process.poll() is None:
            await trio.sleep(0.05)
    return server.process.poll()
