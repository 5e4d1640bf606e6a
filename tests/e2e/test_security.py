"""Security headers, the limit on wrong share tokens in RequestAccess, and
client addresses read from X-Forwarded-For behind trusted proxies, against
real servers."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    error,
    expect_status,
    join,
    plan_labour,
    send,
    share_token,
    subscriptions,
    unique_user,
)
from tests.e2e.ws_helpers import async_client, async_send, command_message, open_session

ALLOWED_ORIGIN = "https://app.example.com"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
MAX_BODY_BYTES = 65536
UNKNOWN_LABOUR_ID = "01890000-0000-7000-8000-000000000000"
# The default of request_access_failures_limit.
FAILURES_LIMIT = 10
# The default of request_access_window, in seconds.
DEFAULT_WINDOW_SECONDS = 3600
# A share token of the right form that no labour in these tests has, because
# it contains "I", which the token alphabet leaves out.
WRONG_TOKEN = "IIIIIIII"
WRONG_TOKEN_REPLY = error(
    "Domain error: Invalid command: Incorrect subscription token", "conflict"
)
LIMITED_REPLY = error(
    "Rate limit exceeded: Too many incorrect subscription tokens, try again later",
    "rate_limited",
)
# The limit and window of the server whose limit is checked to lift.
SHORT_LIMIT = 2
SHORT_WINDOW_SECONDS = 2
# Contact-us messages accepted from one client address per hour.
CONTACT_LIMIT = 5


def _start(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> FerndServer:
    server = FerndServer(tmp_path_factory.mktemp("fernd") / "data", env)
    server.start()
    return server


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    server = _start(tmp_path_factory, {"FERND_ALLOWED_ORIGINS": ALLOWED_ORIGIN})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def short_window_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FerndServer]:
    server = _start(
        tmp_path_factory,
        {
            "FERND_REQUEST_ACCESS_FAILURES_LIMIT": str(SHORT_LIMIT),
            "FERND_REQUEST_ACCESS_WINDOW": str(SHORT_WINDOW_SECONDS),
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server that trusts the test client's own address as a proxy."""
    server = _start(tmp_path_factory, {"FERND_TRUSTED_PROXIES": "127.0.0.1"})
    yield server
    server.stop()


@pytest.fixture
def elsewhere_proxy_server(tmp_path: Path) -> Iterator[FerndServer]:
    """A server of its own that trusts only proxies in 10.0.0.0/8, so the
    test client on 127.0.0.1 is an untrusted peer."""
    server = FerndServer(tmp_path / "data", {"FERND_TRUSTED_PROXIES": "10.0.0.0/8"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def direct_server(tmp_path: Path) -> Iterator[FerndServer]:
    """A server of its own without trusted proxies, so its contact-us limit
    starts unused."""
    server = FerndServer(tmp_path / "data")
    server.start()
    yield server
    server.stop()


def _assert_security_headers(reply: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, name
    assert reply.headers.get("cache-control") == "no-store"


# Security headers


def test_headers_on_success(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("headers"))) as client:
        reply = client.get(f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}")
    assert reply.status_code == 200
    _assert_security_headers(reply)


def test_headers_on_command_error(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("headers"))) as client:
        reply = send(client, "Labour", "CompleteLabour", labour_id=UNKNOWN_LABOUR_ID)
    assert reply.status_code == 404
    _assert_security_headers(reply)


def test_headers_on_unauthenticated(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/api/v1/labour/history")
    assert reply.status_code == 401
    _assert_security_headers(reply)


def test_headers_on_unknown_path(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/api/v1/nowhere")
    assert reply.status_code == 404
    _assert_security_headers(reply)


def test_headers_on_wrong_method(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("headers"))) as client:
        reply = client.get("/api/v1/command")
    assert reply.status_code == 405
    _assert_security_headers(reply)


def test_headers_on_too_large(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("headers"))) as client:
        reply = client.post("/api/v1/command", content=b" " * (MAX_BODY_BYTES + 1))
    assert reply.status_code == 413
    _assert_security_headers(reply)


def test_headers_on_upgrade_required(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("headers"))) as client:
        reply = client.get(f"/api/v1/connect/{UNKNOWN_LABOUR_ID}")
    assert reply.status_code == 426
    _assert_security_headers(reply)


def test_headers_on_preflight(cors_server: FerndServer) -> None:
    with cors_server.client() as client:
        reply = client.options(
            "/api/v1/command",
            headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
    assert reply.status_code == 200
    _assert_security_headers(reply)
    assert reply.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    assert reply.headers.get("access-control-max-age") == "86400"


def test_headers_on_disallowed_origin(cors_server: FerndServer) -> None:
    with cors_server.client() as client:
        reply = client.post(
            "/api/v1/command", json={}, headers={"Origin": "https://evil.example"}
        )
    assert reply.status_code == 403
    _assert_security_headers(reply)


def test_headers_keep_cors_on_error(cors_server: FerndServer) -> None:
    with cors_server.client() as client:
        reply = client.get("/api/v1/labour/history", headers={"Origin": ALLOWED_ORIGIN})
    assert reply.status_code == 401
    _assert_security_headers(reply)
    assert reply.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    assert reply.headers.get("vary") == "Origin"
    assert (
        reply.headers.get("access-control-expose-headers")
        == "Idempotency-Replayed, Retry-After"
    )


def test_headers_on_operator_route_without_no_store(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/healthz")
    assert reply.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, name
    assert "cache-control" not in reply.headers


async def test_headers_on_socket_rejection(fernd_server: FerndServer) -> None:
    async with async_client(fernd_server, None) as client:
        reply = await client.get(
            f"/api/v1/connect/{UNKNOWN_LABOUR_ID}",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
    assert reply.status_code == 401
    _assert_security_headers(reply)


# Wrong share tokens


def _request_access(
    server: FerndServer,
    token: str,
    labour_id: str,
    share: str,
    key: str | None = None,
) -> httpx.Response:
    with server.client(token) as client:
        return send(
            client,
            "Subscriber",
            "RequestAccess",
            key=key,
            labour_id=labour_id,
            token=share,
        )


def _new_labour(server: FerndServer) -> tuple[str, str, str]:
    """Plan a labour; return its id, its share token and the mother's token."""
    mother_token = server.token(unique_user("security-mother"))
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        return labour_id, share_token(mother, labour_id), mother_token


def _fail_times(server: FerndServer, token: str, labour_id: str, times: int) -> None:
    for attempt in range(times):
        reply = _request_access(server, token, labour_id, WRONG_TOKEN)
        assert reply.status_code == 409, (attempt, reply.text)
        assert reply.json() == WRONG_TOKEN_REPLY


def _subscriber_ids(server: FerndServer, mother_token: str, labour_id: str) -> set[str]:
    with server.client(mother_token) as mother:
        return {row["subscriber_id"] for row in subscriptions(mother, labour_id)}


def test_request_access_eleventh_wrong_token_limited(
    fernd_server: FerndServer,
) -> None:
    labour_id, _, _ = _new_labour(fernd_server)
    guesser = fernd_server.token(unique_user("guesser"))
    _fail_times(fernd_server, guesser, labour_id, FAILURES_LIMIT)
    reply = _request_access(fernd_server, guesser, labour_id, WRONG_TOKEN)
    assert reply.status_code == 429
    assert reply.json() == LIMITED_REPLY
    retry_after = int(reply.headers["retry-after"])
    assert 1 <= retry_after <= DEFAULT_WINDOW_SECONDS


def test_request_access_correct_token_rejected_after_limit(
    fernd_server: FerndServer,
) -> None:
    labour_id, share, mother_token = _new_labour(fernd_server)
    guesser_id = unique_user("guesser")
    guesser = fernd_server.token(guesser_id)
    _fail_times(fernd_server, guesser, labour_id, FAILURES_LIMIT)
    for _ in range(2):
        reply = _request_access(fernd_server, guesser, labour_id, share)
        assert reply.status_code == 429
        assert reply.json() == LIMITED_REPLY
    assert guesser_id not in _subscriber_ids(fernd_server, mother_token, labour_id)
    # The operator learns of the rejections once per window, not per request.
    assert fernd_server.log().count(f"RequestAccess of user {guesser_id}:") == 1


def test_request_access_limit_spans_labours(fernd_server: FerndServer) -> None:
    first, _, _ = _new_labour(fernd_server)
    second, share, _ = _new_labour(fernd_server)
    guesser = fernd_server.token(unique_user("guesser"))
    _fail_times(fernd_server, guesser, first, FAILURES_LIMIT // 2)
    _fail_times(fernd_server, guesser, second, FAILURES_LIMIT - FAILURES_LIMIT // 2)
    reply = _request_access(fernd_server, guesser, second, share)
    assert reply.status_code == 429


def test_request_access_limit_per_user(fernd_server: FerndServer) -> None:
    labour_id, share, _ = _new_labour(fernd_server)
    guesser = fernd_server.token(unique_user("guesser"))
    _fail_times(fernd_server, guesser, labour_id, FAILURES_LIMIT)
    other = fernd_server.token(unique_user("bystander"))
    reply = _request_access(fernd_server, other, labour_id, share)
    assert reply.status_code == 204


def test_request_access_other_outcomes_not_counted(fernd_server: FerndServer) -> None:
    labour_id, share, _ = _new_labour(fernd_server)
    user = fernd_server.token(unique_user("subscriber"))
    _fail_times(fernd_server, user, labour_id, FAILURES_LIMIT - 1)
    expect_status(_request_access(fernd_server, user, labour_id, share), 204)
    for _ in range(FAILURES_LIMIT):
        # The subscription is REQUESTED now, so a second request fails on that.
        reply = _request_access(fernd_server, user, labour_id, share)
        assert reply.status_code == 409
        assert reply.json()["message"] == (
            "Domain error: Invalid command: Cannot subscribe to labour"
        )
    _fail_times(fernd_server, user, labour_id, 1)
    reply = _request_access(fernd_server, user, labour_id, WRONG_TOKEN)
    assert reply.status_code == 429


def test_request_access_replays_not_counted(fernd_server: FerndServer) -> None:
    labour_id, _, _ = _new_labour(fernd_server)
    guesser = fernd_server.token(unique_user("guesser"))
    key = uuid.uuid4().hex
    for _ in range(FAILURES_LIMIT + 5):
        reply = _request_access(fernd_server, guesser, labour_id, WRONG_TOKEN, key)
        assert reply.status_code == 409
    _fail_times(fernd_server, guesser, labour_id, FAILURES_LIMIT - 1)
    reply = _request_access(fernd_server, guesser, labour_id, WRONG_TOKEN)
    assert reply.status_code == 429


def test_request_access_limit_leaves_other_commands(fernd_server: FerndServer) -> None:
    own_labour, _, mother_token = _new_labour(fernd_server)
    other_labour, _, _ = _new_labour(fernd_server)
    _fail_times(fernd_server, mother_token, other_labour, FAILURES_LIMIT)
    with fernd_server.client(mother_token) as mother:
        reply = send(
            mother,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=own_labour,
            labour_update_type="STATUS_UPDATE",
            message="Still early",
        )
    assert reply.status_code == 204


async def test_request_access_concurrent_guesses_limited(
    fernd_server: FerndServer,
) -> None:
    labour_id, _, _ = _new_labour(fernd_server)
    guesser = fernd_server.token(unique_user("guesser"))
    statuses: list[int] = []
    async with async_client(fernd_server, guesser) as client:

        async def guess() -> None:
            reply = await async_send(
                client,
                "Subscriber",
                "RequestAccess",
                labour_id=labour_id,
                token=WRONG_TOKEN,
            )
            statuses.append(reply.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(3 * FAILURES_LIMIT):
                nursery.start_soon(guess)
    assert statuses.count(409) == FAILURES_LIMIT
    assert statuses.count(429) == 2 * FAILURES_LIMIT


def test_request_access_limit_lifts_after_window(
    short_window_server: FerndServer,
) -> None:
    server = short_window_server
    labour_id, share, mother_token = _new_labour(server)
    guesser_id = unique_user("guesser")
    guesser = server.token(guesser_id)
    key = uuid.uuid4().hex
    _fail_times(server, guesser, labour_id, SHORT_LIMIT)
    rejected = _request_access(server, guesser, labour_id, share, key)
    assert rejected.status_code == 429
    assert rejected.json() == LIMITED_REPLY
    retry_after = int(rejected.headers["retry-after"])
    assert 1 <= retry_after <= SHORT_WINDOW_SECONDS
    time.sleep(retry_after)
    # The refusal was not recorded under the key, so the same key runs now.
    accepted = _request_access(server, guesser, labour_id, share, key)
    assert accepted.status_code == 204
    assert "idempotency-replayed" not in accepted.headers
    assert guesser_id in _subscriber_ids(server, mother_token, labour_id)


async def test_request_access_limit_over_websocket(fernd_server: FerndServer) -> None:
    labour_id, _, mother_token = _new_labour(fernd_server)
    with fernd_server.client(mother_token) as mother:
        member = join(fernd_server, mother, labour_id, unique_user("ws-guesser"))
    async with open_session(fernd_server, labour_id, member.token) as session:
        for attempt in range(FAILURES_LIMIT):
            reply = await session.command(
                "Subscriber", "RequestAccess", labour_id=labour_id, token=WRONG_TOKEN
            )
            assert reply["code"] == "conflict", (attempt, reply)
        reply = await session.command(
            "Subscriber", "RequestAccess", labour_id=labour_id, token=WRONG_TOKEN
        )
    assert reply["success"] is False
    assert reply["code"] == "rate_limited"
    assert reply["error"] == LIMITED_REPLY["message"]


async def test_request_access_limit_shared_by_http_and_websocket(
    fernd_server: FerndServer,
) -> None:
    labour_id, share, mother_token = _new_labour(fernd_server)
    with fernd_server.client(mother_token) as mother:
        member = join(fernd_server, mother, labour_id, unique_user("ws-guesser"))
    other_labour, _, _ = _new_labour(fernd_server)
    _fail_times(fernd_server, member.token, other_labour, FAILURES_LIMIT)
    async with open_session(fernd_server, labour_id, member.token) as session:
        reply = await session.command(
            "Subscriber", "RequestAccess", labour_id=labour_id, token=share
        )
    assert reply["code"] == "rate_limited"


async def test_request_access_pipelined_guesses_limited(
    fernd_server: FerndServer,
) -> None:
    labour_id, _, mother_token = _new_labour(fernd_server)
    with fernd_server.client(mother_token) as mother:
        member = join(fernd_server, mother, labour_id, unique_user("ws-guesser"))
    correlation_ids = [f"guess-{index}" for index in range(3 * FAILURES_LIMIT)]
    async with open_session(fernd_server, labour_id, member.token) as session:
        for correlation_id in correlation_ids:
            await session.send(
                command_message(
                    "Subscriber",
                    "RequestAccess",
                    correlation_id=correlation_id,
                    labour_id=labour_id,
                    token=WRONG_TOKEN,
                )
            )
        codes = [
            (await session.reply_to(correlation_id))["code"]
            for correlation_id in correlation_ids
        ]
    assert codes.count("conflict") == FAILURES_LIMIT
    assert codes.count("rate_limited") == 2 * FAILURES_LIMIT


# Client addresses


def _contact(server: FerndServer, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {
        "name": "Robin",
        "email": "robin@example.org",
        "category": "question",
        "message": "How do I share my labour?",
    }
    with server.client() as client:
        return client.post("/api/v1/contact-us", json=body, headers=headers)


def _use_contact_limit(server: FerndServer, forwarded_for: str | None) -> None:
    for attempt in range(CONTACT_LIMIT):
        reply = _contact(server, forwarded_for)
        assert reply.status_code == 200, (attempt, reply.text)


def test_trusted_proxy_clients_limited_separately(
    proxied_server: FerndServer,
) -> None:
    _use_contact_limit(proxied_server, "198.51.100.1")
    limited = _contact(proxied_server, "198.51.100.1")
    assert limited.status_code == 429
    assert "retry-after" in limited.headers
    other = _contact(proxied_server, "198.51.100.2")
    assert other.status_code == 200


def test_trusted_proxy_forged_hops_ignored(proxied_server: FerndServer) -> None:
    _use_contact_limit(proxied_server, "203.0.113.10, 198.51.100.7")
    # The client forged a different leftmost hop; the proxy's entry is the same.
    reply = _contact(proxied_server, "203.0.113.99, 198.51.100.7")
    assert reply.status_code == 429


def test_trusted_proxy_hops_skipped(proxied_server: FerndServer) -> None:
    _use_contact_limit(proxied_server, "198.51.100.8, 127.0.0.1")
    reply = _contact(proxied_server, "198.51.100.8")
    assert reply.status_code == 429


def test_untrusted_clients_share_limit(direct_server: FerndServer) -> None:
    _use_contact_limit(direct_server, "198.51.100.1")
    reply = _contact(direct_server, "198.51.100.2")
    assert reply.status_code == 429


def test_untrusted_peer_forwarded_for_ignored(
    elsewhere_proxy_server: FerndServer,
) -> None:
    server = elsewhere_proxy_server
    for index in range(CONTACT_LIMIT):
        reply = _contact(server, f"198.51.100.{index + 1}")
        assert reply.status_code == 200
    reply = _contact(server, "198.51.100.200")
    assert reply.status_code == 429


def test_invalid_trusted_proxies_stop_start(tmp_path: Path) -> None:
    server = FerndServer(tmp_path / "data", {"FERND_TRUSTED_PROXIES": "10.0.0.1/8"})
    with pytest.raises(RuntimeError) as raised:
        server.start()
    assert "trusted_proxies" in str(raised.value)
    assert "'10.0.0.0/8'" in str(raised.value)
