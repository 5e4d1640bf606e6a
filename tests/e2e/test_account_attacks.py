"""Attacks on fernd's accounts and token checks, against a real `fernd serve`.

The tests send hostile request bodies to every account route and race
requests against each other: one refresh token refreshed many times at once,
one email registered many times at once, parallel wrong passwords, a password
change against refreshes and logins, and a reset link used twice at once. They
present forged and misused tokens over HTTP and at the WebSocket upgrade, kill
the server with SIGKILL right after an acknowledged account change, search the
log and error replies for secrets, and run the operator commands carelessly.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import apsw
import httpx
import pytest

from fernd.auth.tokens import LocalTokenIssuer
from tests.conftest import FerndServer
from tests.e2e import account_helpers as accounts
from tests.e2e.account_helpers import PASSWORD
from tests.e2e.helpers import error, expect_status
from tests.e2e.mail_helpers import (
    ConfiguredServer,
    MailSink,
    free_port,
    write_config,
)

T = TypeVar("T")

NEW_PASSWORD = "staple horse battery"
PHONE = "+447700900123"
# Not the example number that the phone number rule's error message shows.
SECRET_PHONE = "+15555550123"
PUBLIC_URL = "https://fern.example.org"
ADMIN_USER_ID = "admin-attacks"
INTERNAL_USER_ID = "fern-labour-internal-process-manager"
# fernd's default login_failures_per_account.
ACCOUNT_FAILURE_LIMIT = 10
# The login_failures_per_address and registrations_per_address of
# `limited_server`, small so that a test reaches them quickly.
ADDRESS_FAILURE_LIMIT = 4
ADDRESS_REGISTRATION_LIMIT = 3
# fernd's default login_window, the longest Retry-After of a login refusal.
LOGIN_WINDOW_SECONDS = 900
# Request bodies above this many bytes are rejected with 413.
MAX_BODY_BYTES = 64 * 1024
# Threads that send one request each in the races below.
RACERS = 16
# How long a process killed by a request may take to exit, in seconds.
EXIT_WAIT_SECONDS = 3.0
TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com."
WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
UNAUTHORISED = error("Unauthorised: User verification failed", "unauthenticated")
INVALID_REFRESH = error("Invalid refresh token", "unauthenticated")
INVALID_CREDENTIALS = error("Invalid email or password", "unauthenticated")
INVALID_RESET = error("Invalid or expired reset token", "validation_error")
LOGIN_LIMITED = error(
    "Rate limit exceeded: Too many failed logins, try again later", "rate_limited"
)


# Helpers


def _email(prefix: str) -> str:
    """Return an address no other test uses, so module servers stay clean."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.org"


def _in_parallel(call: Callable[[int], T], count: int = RACERS) -> list[T]:
    """Run `call(0)` to `call(count - 1)` at once, each on its own thread, and
    return the results in that order."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def _post_alone(
    server: FerndServer, path: str, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    """POST on a connection of its own, as a separate device would."""
    with server.client(token) as client:
        return client.post(path, json=body)


def _account_total(server: FerndServer) -> int:
    with server.client(server.token(ADMIN_USER_ID)) as client:
        reply = client.get("/api/v1/admin/accounts", params={"limit": 1})
    total: int = expect_status(reply, 200).json()["total"]
    return total


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Split a JWT into its decoded header and claims and its signature text."""
    header, claims, signature = token.split(".")

    def decode(segment: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return decoded

    return decode(header), decode(claims), signature


def _upgrade(server: FerndServer, token: str) -> httpx.Response:
    """Send a WebSocket upgrade carrying `token` as the browser subprotocol.

    Each upgrade gets its own connection because the server closes it after
    refusing the upgrade.
    """
    headers = {
        **WEBSOCKET_HANDSHAKE,
        "Sec-WebSocket-Protocol": TOKEN_SUBPROTOCOL_PREFIX + token,
    }
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        return client.get(f"/api/v1/connect/{uuid.uuid4()}", headers=headers)


def _fernd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fernd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _delete_account(server: FerndServer, user_id: str) -> None:
    """Delete the account row, as an operator with sqlite3 would, since fernd
    has no route or command that deletes an account."""
    connection = apsw.Connection(str(server.data_dir / "fernd.db"))
    connection.set_busy_timeout(5000)
    try:
        with connection:
            connection.execute("DELETE FROM accounts WHERE user_id = ?", (user_id,))
    finally:
        connection.close()


def _nested_payload_token() -> str:
    """A token whose claims segment is 3,000 nested JSON arrays, deeper than
    Python's json module can decode."""
    header = _b64_json({"alg": "EdDSA", "typ": "JWT"})
    payload = _b64(b"[" * 3000 + b"]" * 3000)
    return f"{header}.{payload}.{_b64(b'signature')}"


def _assert_security_headers(reply: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (name, reply.request.url.path)


# Servers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    directory = tmp_path_factory.mktemp("attacks")
    server = FerndServer(
        directory / "data",
        env={
            "FERND_ADMIN_USER_IDS": ADMIN_USER_ID,
            # Every test registers and fails logins from 127.0.0.1; the
            # address limits have servers of their own below.
            "FERND_REGISTRATIONS_PER_ADDRESS": "100000",
            "FERND_LOGIN_FAILURES_PER_ADDRESS": "100000",
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server: FerndServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def victim(server: FerndServer) -> dict[str, Any]:
    """An account that the hostile requests target. Only its refresh token
    changes, because each hostile-body test refreshes it."""
    with server.client() as client:
        return accounts.register(
            client, _email("victim"), name="Vic Tim", phone_number=PHONE
        )


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[FerndServer]:
    server = FerndServer(
        tmp_path / "data",
        env={
            "FERND_LOGIN_FAILURES_PER_ADDRESS": str(ADDRESS_FAILURE_LIMIT),
            "FERND_REGISTRATIONS_PER_ADDRESS": str(ADDRESS_REGISTRATION_LIMIT),
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server the tests kill with SIGKILL and start again."""
    server = FerndServer(tmp_path_factory.mktemp("crash") / "data")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def mailing_server(tmp_path: Path) -> Iterator[tuple[ConfiguredServer, MailSink]]:
    sink = MailSink()
    sink.start()
    config = write_config(
        tmp_path / "fernd.toml",
        public_url=PUBLIC_URL,
        admin_user_ids=[],
        smtp_port=sink.port,
    )
    server = ConfiguredServer(tmp_path / "data", config)
    server.start()
    yield server, sink
    if server.process is not None and server.process.poll() is None:
        server.stop()
    sink.stop()


# Hostile bodies

# Each account route and the string field its body is read for first.
ACCOUNT_ROUTES = {
    "register": ("POST", "/api/v1/auth/register", "email"),
    "login": ("POST", "/api/v1/auth/login", "email"),
    "refresh": ("POST", "/api/v1/auth/refresh", "refresh_token"),
    "logout": ("POST", "/api/v1/auth/logout", "refresh_token"),
    "profile": ("PATCH", "/api/v1/me", "name"),
    "password change": ("POST", "/api/v1/me/password", "current_password"),
    "reset request": ("POST", "/api/v1/auth/password-reset", "email"),
    "reset confirm": ("POST", "/api/v1/auth/password-reset/confirm", "token"),
}


def _hostile_bodies(field: str) -> dict[str, bytes]:
    """Bodies that no account route may accept, built around `field`. They
    are sent without a Content-Type header."""
    name = field.encode()
    return {
        "empty": b"",
        "null": b"null",
        "number": b"42",
        "string": b'"text"',
        "array": b"[]",
        "array holding the object": b'[{"' + name + b'": "x"}]',
        "truncated": b'{"' + name + b'": ',
        "trailing comma": b'{"' + name + b'": "x",}',
        "trailing garbage": b'{"' + name + b'": "x"} {}',
        "byte order mark": b'\xef\xbb\xbf{"' + name + b'": "x"}',
        "form encoding": name + b"=x",
        # 64,000 bytes, just below the 64 KiB limit.
        "nested arrays": b"[" * 32000 + b"]" * 32000,
        "nested arrays in the field": (
            b'{"' + name + b'": ' + b"[" * 30000 + b"]" * 30000 + b"}"
        ),
        "nested objects in the field": (
            b'{"' + name + b'": ' + b'{"a":' * 9000 + b"1" + b"}" * 9000 + b"}"
        ),
        "number for a string": b'{"' + name + b'": 1}',
        "object for a string": b'{"' + name + b'": {"' + name + b'": "x"}}',
        "raw NUL in a string": b'{"' + name + b'": "a\x00b"}',
        "NUL in a key": b'{"' + name + b'\\u0000": "x"}',
        "invalid UTF-8": b'{"' + name + b'": "\xff\xfe"}',
        "lone surrogate": b'{"' + name + b'": "\\ud800"}',
        "unknown field": b'{"' + name + b'": "x", "user_id": "x"}',
        "huge unknown field": b'{"' + b"k" * 60000 + b'": "x"}',
        "oversized": b'{"' + name + b'": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}',
    }


@pytest.mark.parametrize("route", list(ACCOUNT_ROUTES))
def test_hostile_bodies_get_json_4xx(
    server: FerndServer, victim: dict[str, Any], route: str
) -> None:
    method, path, field = ACCOUNT_ROUTES[route]
    accounts_before = _account_total(server)
    log_size = len(server.log())
    unexpected: list[tuple[str, int, str]] = []

    with server.client(victim["access_token"]) as client:
        profile_before = expect_status(client.get("/api/v1/me"), 200).json()
        for name, body in _hostile_bodies(field).items():
            reply = client.request(method, path, content=body)
            expected = 413 if name == "oversized" else 400
            try:
                parsed = reply.json()
            except ValueError:
                parsed = None
            if (
                reply.status_code != expected
                or not isinstance(parsed, dict)
                or set(parsed) != {"message", "code"}
            ):
                unexpected.append((name, reply.status_code, reply.text[:200]))
        profile_after = expect_status(client.get("/api/v1/me"), 200).json()
        # The login still works: nothing above changed the password or
        # revoked the refresh token.
        refreshed = accounts.refresh(client, victim["refresh_token"])

    assert unexpected == []
    assert _account_total(server) == accounts_before
    assert profile_after == profile_before
    assert refreshed.status_code == 200
    # Refresh rotates the victim's token, so keep the new one for later tests.
    victim["refresh_token"] = refreshed.json()["refresh_token"]
    assert "Traceback" not in server.log()[log_size:]


def test_duplicate_json_keys_rejected(client: httpx.Client) -> None:
    first, second = _email("first"), _email("second")
    body = (
        f'{{"email": "{first}", "email": "{second}", "password": "{PASSWORD}"}}'
    ).encode()

    reply = client.post("/api/v1/auth/register", content=body)

    assert reply.status_code == 400
    assert accounts.login(client, second, PASSWORD).status_code == 401


# Email addresses


def test_email_lookalikes_collide(client: httpx.Client) -> None:
    local = f"kate{uuid.uuid4().hex[:8]}"
    accounts.register(client, f"{local}@example.org")
    variants = {
        "upper case": f"{local.upper()}@EXAMPLE.ORG",
        "surrounding spaces": f"  {local}@example.org  ",
        # U+212A KELVIN SIGN case-folds to "k".
        "Kelvin sign": f"\u212a{local[1:]}@example.org",
    }

    replies = {
        name: client.post(
            "/api/v1/auth/register", json={"email": address, "password": PASSWORD}
        )
        for name, address in variants.items()
    }
    logins = {
        name: accounts.login(client, address, PASSWORD).status_code
        for name, address in variants.items()
    }

    for name, reply in replies.items():
        assert reply.status_code == 409, name
        assert reply.json() == error("Email already registered", "conflict"), name
    assert logins == {name: 200 for name in variants}


def test_email_with_fullwidth_at_sign_rejected(client: httpx.Client) -> None:
    # U+FF20 FULLWIDTH COMMERCIAL AT in place of "@".
    address = f"alex{uuid.uuid4().hex[:8]}\uff20example.org"

    reply = client.post(
        "/api/v1/auth/register", json={"email": address, "password": PASSWORD}
    )

    assert reply.status_code == 400
    assert reply.json() == error(
        "Validation error: Invalid email address", "validation_error"
    )


@pytest.mark.parametrize(
    "character", ["\x00", "\x1b", "\x7f"], ids=["NUL", "ESC", "DEL"]
)
def test_email_with_control_character_rejected(
    client: httpx.Client, character: str
) -> None:
    address = f"ctl{uuid.uuid4().hex[:8]}{character}@example.org"

    reply = client.post(
        "/api/v1/auth/register", json={"email": address, "password": PASSWORD}
    )

    assert reply.status_code == 400


# Races


def test_parallel_refreshes_revoke_the_login(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("refresh-race")
    pair = accounts.register(client, email)
    other_device = expect_status(accounts.login(client, email, PASSWORD), 200).json()

    replies = _in_parallel(
        lambda _: _post_alone(
            server, "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}
        )
    )
    winners = [reply for reply in replies if reply.status_code == 200]
    losers = [reply for reply in replies if reply.status_code != 200]

    assert len(winners) == 1
    assert {reply.status_code for reply in losers} == {401}
    assert all(reply.json() == INVALID_REFRESH for reply in losers)
    # A rotated token came back, so every token of that login is revoked,
    # the winner's new one included.
    winner_token = winners[0].json()["refresh_token"]
    assert accounts.refresh(client, winner_token).status_code == 401
    # The login of the other device is a different family and still works.
    assert accounts.refresh(client, other_device["refresh_token"]).status_code == 200


def test_parallel_registrations_create_one_account(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("register-race")
    spellings = [email, email.upper(), f" {email} ", email.capitalize()]
    accounts_before = _account_total(server)

    replies = _in_parallel(
        lambda n: _post_alone(
            server,
            "/api/v1/auth/register",
            {"email": spellings[n % len(spellings)], "password": PASSWORD},
        ),
        count=12,
    )
    statuses = sorted(reply.status_code for reply in replies)

    assert statuses == [201] + [409] * 11
    assert _account_total(server) == accounts_before + 1
    assert accounts.login(client, email, PASSWORD).status_code == 200


def test_parallel_wrong_logins_stop_at_account_limit(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("guessed")
    accounts.register(client, email)

    replies = _in_parallel(
        lambda n: _post_alone(
            server,
            "/api/v1/auth/login",
            {"email": email, "password": f"guess number {n:04d}"},
        ),
        count=25,
    )
    statuses = [reply.status_code for reply in replies]
    right = accounts.login(client, email, PASSWORD)
    upper = accounts.login(client, email.upper(), PASSWORD)

    assert statuses.count(401) == ACCOUNT_FAILURE_LIMIT
    assert statuses.count(429) == 25 - ACCOUNT_FAILURE_LIMIT
    assert right.status_code == 429
    assert right.json() == LOGIN_LIMITED
    assert 1 <= int(right.headers["Retry-After"]) <= LOGIN_WINDOW_SECONDS
    assert upper.status_code == 429


def test_parallel_wrong_logins_stop_at_address_limit(
    limited_server: FerndServer,
) -> None:
    with limited_server.client() as client:
        email = _email("bystander")
        accounts.register(client, email)

        replies = _in_parallel(
            lambda n: _post_alone(
                limited_server,
                "/api/v1/auth/login",
                {"email": _email(f"unknown{n}"), "password": PASSWORD},
            ),
            count=12,
        )
        statuses = [reply.status_code for reply in replies]
        right = accounts.login(client, email, PASSWORD)

    assert statuses.count(401) == ADDRESS_FAILURE_LIMIT
    assert statuses.count(429) == 12 - ADDRESS_FAILURE_LIMIT
    assert right.status_code == 429
    assert "Retry-After" in right.headers
    _assert_security_headers(right)


def test_refused_registrations_count_per_address(
    limited_server: FerndServer,
) -> None:
    email = _email("counted")
    with limited_server.client() as client:
        created = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        invalid = client.post(
            "/api/v1/auth/register", json={"email": "no-at-sign", "password": PASSWORD}
        )
        duplicate = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        limited = client.post(
            "/api/v1/auth/register",
            json={"email": _email("late"), "password": PASSWORD},
        )

    assert created.status_code == 201
    assert invalid.status_code == 400
    assert duplicate.status_code == 409
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_password_change_revokes_racing_logins(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("change-race")
    pair = accounts.register(client, email)
    device = expect_status(accounts.login(client, email, PASSWORD), 200).json()
    outcome: dict[str, httpx.Response] = {}

    def change() -> None:
        outcome["change"] = _post_alone(
            server,
            "/api/v1/me/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            pair["access_token"],
        )

    changer = threading.Thread(target=change)
    changer.start()
    # Refresh and log in with the old password for as long as the change runs.
    issued = [device["refresh_token"]]
    while changer.is_alive():
        refreshed = accounts.refresh(client, issued[-1])
        if refreshed.status_code == 200:
            issued.append(refreshed.json()["refresh_token"])
        login = accounts.login(client, email, PASSWORD)
        if login.status_code == 200:
            issued.append(login.json()["refresh_token"])
    changer.join()

    assert outcome["change"].status_code == 204
    # Every refresh token issued before the change committed is revoked.
    assert [accounts.refresh(client, token).status_code for token in issued] == [
        401
    ] * len(issued)
    assert accounts.login(client, email, PASSWORD).status_code == 401
    assert accounts.login(client, email, NEW_PASSWORD).status_code == 200


def test_reset_link_used_twice_at_once(
    mailing_server: tuple[ConfiguredServer, MailSink],
) -> None:
    server, sink = mailing_server
    email = _email("reset-race")
    with server.client() as client:
        pair = accounts.register(client, email, phone_number=PHONE)
        requested = client.post(
            "/api/v1/auth/password-reset", json={"email": email.upper()}
        )
        [mail] = sink.wait_for(1, timeout=20)
        text = mail.part("plain") or ""
        match = re.search(re.escape(PUBLIC_URL) + r"/reset-password\?\S+", text)
        assert match is not None, text
        token = parse_qs(urlsplit(match.group(0)).query)["token"][0]

        replies = _in_parallel(
            lambda n: _post_alone(
                server,
                "/api/v1/auth/password-reset/confirm",
                {"token": token, "new_password": f"new password number {n:02d}"},
            ),
            count=6,
        )
        statuses = [reply.status_code for reply in replies]
        winner = statuses.index(204) if 204 in statuses else -1
        logins = [
            accounts.login(client, email, f"new password number {n:02d}").status_code
            for n in range(6)
        ]
        old_refresh = accounts.refresh(client, pair["refresh_token"])

    assert requested.status_code == 202
    assert sorted(statuses) == [204] + [400] * 5
    assert all(
        reply.json() == INVALID_RESET for reply in replies if reply.status_code == 400
    )
    assert logins == [200 if n == winner else 401 for n in range(6)]
    assert old_refresh.status_code == 401
    log = server.log()
    for secret in (token, email, PHONE, PASSWORD, pair["refresh_token"]):
        assert secret not in log


# Forged and misused tokens

FORGERIES = [
    "alg none",
    "alg none with the kid",
    "HS256 keyed with the public key text",
    "HS256 keyed with the public key bytes",
    "HS256 keyed with the JWK",
    "tampered subject",
    "tampered expiry",
    "truncated signature",
    "unknown kid",
    "no kid",
    "wrong issuer",
    "expired",
    "issued in the future",
    "internal user",
    "refresh token as bearer",
    "not a JWT",
]


@pytest.fixture(scope="module")
def forged_tokens(server: FerndServer, victim: dict[str, Any]) -> dict[str, str]:
    """The victim's access token changed or imitated in each way of FORGERIES."""
    access_token = victim["access_token"]
    header, claims, signature = _segments(access_token)
    header_text, claims_text = access_token.split(".")[:2]
    with server.client() as client:
        jwk = expect_status(client.get("/.well-known/jwks.json"), 200).json()["keys"][0]
    public_x = jwk["x"]

    def hs256(secret: bytes) -> str:
        signed_header = _b64_json({"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]})
        signing_input = f"{signed_header}.{claims_text}".encode()
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        return f"{signed_header}.{claims_text}.{_b64(mac)}"

    issuer = LocalTokenIssuer(server.data_dir)
    impostor = LocalTokenIssuer(server.data_dir, issuer="https://id.example.test/")
    now = datetime.now(UTC)
    user_id = victim["user"]["user_id"]
    tokens = {
        "alg none": f"{_b64_json({'alg': 'none', 'typ': 'JWT'})}.{claims_text}.",
        "alg none with the kid": (
            f"{_b64_json({'alg': 'none', 'kid': jwk['kid']})}.{claims_text}."
        ),
        "HS256 keyed with the public key text": hs256(public_x.encode()),
        "HS256 keyed with the public key bytes": hs256(
            base64.urlsafe_b64decode(public_x + "=" * (-len(public_x) % 4))
        ),
        "HS256 keyed with the JWK": hs256(json.dumps(jwk).encode()),
        "tampered subject": (
            f"{header_text}.{_b64_json({**claims, 'sub': str(uuid.uuid4())})}"
            f".{signature}"
        ),
        "tampered expiry": (
            f"{header_text}.{_b64_json({**claims, 'exp': claims['exp'] + 86400})}"
            f".{signature}"
        ),
        "truncated signature": f"{header_text}.{claims_text}.{signature[:-8]}",
        "unknown kid": (
            f"{_b64_json({**header, 'kid': 'unknown-kid'})}.{claims_text}.{signature}"
        ),
        "no kid": (
            f"{_b64_json({'alg': 'EdDSA', 'typ': 'JWT'})}.{claims_text}.{signature}"
        ),
        "wrong issuer": impostor.issue(user_id, ttl_seconds=900),
        "expired": issuer.issue(user_id, ttl_seconds=900, now=now - timedelta(hours=2)),
        "issued in the future": issuer.issue(
            user_id, ttl_seconds=900, now=now + timedelta(hours=2)
        ),
        "internal user": issuer.issue(INTERNAL_USER_ID, ttl_seconds=900),
        "refresh token as bearer": victim["refresh_token"],
        "not a JWT": "not.a.token",
    }
    assert list(tokens) == FORGERIES
    return tokens


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_token_rejected_over_http(
    server: FerndServer, forged_tokens: dict[str, str], forgery: str
) -> None:
    with server.client(forged_tokens[forgery]) as client:
        me = client.get("/api/v1/me")
        history = client.get("/api/v1/labour/history")

    assert me.status_code == 401
    assert me.json() == UNAUTHORISED
    assert history.status_code == 401
    assert history.json() == UNAUTHORISED


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_token_rejected_at_upgrade(
    server: FerndServer, forged_tokens: dict[str, str], forgery: str
) -> None:
    reply = _upgrade(server, forged_tokens[forgery])

    assert reply.status_code == 401
    assert reply.json() == UNAUTHORISED


def test_nested_token_payload_rejected_over_http(server: FerndServer) -> None:
    with server.client(_nested_payload_token()) as client:
        reply = client.get("/api/v1/me")

    assert reply.status_code == 401
    assert reply.json() == UNAUTHORISED


def test_nested_token_payload_rejected_at_upgrade(server: FerndServer) -> None:
    reply = _upgrade(server, _nested_payload_token())

    assert reply.status_code == 401


def test_nested_token_payload_ignored_by_login(server: FerndServer) -> None:
    with server.client(_nested_payload_token()) as client:
        login = accounts.login(client, _email("nobody"), PASSWORD)

    assert login.status_code == 401
    assert login.json() == INVALID_CREDENTIALS


def test_token_lifetimes(server: FerndServer, client: httpx.Client) -> None:
    pair = accounts.register(client, _email("lifetime"))
    header, claims, _ = _segments(pair["access_token"])
    digest = hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
    connection = apsw.Connection(
        str(server.data_dir / "fernd.db"), flags=apsw.SQLITE_OPEN_READONLY
    )
    try:
        rows = connection.execute(
            "SELECT created_at, expires_at FROM refresh_tokens WHERE token_hash = ?",
            (digest,),
        ).fetchall()
    finally:
        connection.close()

    assert header["alg"] == "EdDSA"
    assert header["kid"]
    assert claims["iss"] == "fernd"
    assert claims["exp"] - claims["iat"] == 900
    assert pair["expires_in"] == 900
    # Only the SHA-256 digest of the refresh token is stored.
    [(created_at, expires_at)] = rows
    lifetime = datetime.fromisoformat(str(expires_at)) - datetime.fromisoformat(
        str(created_at)
    )
    assert lifetime == timedelta(days=30)


def test_access_token_as_refresh_token_rejected(client: httpx.Client) -> None:
    pair = accounts.register(client, _email("swap"))

    refreshed = accounts.refresh(client, pair["access_token"])
    logout = client.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["access_token"]}
    )
    still_signed_in = accounts.refresh(client, pair["refresh_token"])

    assert refreshed.status_code == 401
    assert refreshed.json() == INVALID_REFRESH
    # Logout returns 204 for any unknown token and revokes nothing.
    assert logout.status_code == 204
    assert still_signed_in.status_code == 200


def test_refresh_tokens_dead_after_logout_and_reuse(client: httpx.Client) -> None:
    email = _email("dead")
    first = accounts.register(client, email)
    second = expect_status(accounts.login(client, email, PASSWORD), 200).json()
    rotated = expect_status(
        accounts.refresh(client, second["refresh_token"]), 200
    ).json()

    logout = client.post(
        "/api/v1/auth/logout", json={"refresh_token": first["refresh_token"]}
    )
    after_logout = accounts.refresh(client, first["refresh_token"])
    reused = accounts.refresh(client, second["refresh_token"])
    after_reuse = accounts.refresh(client, rotated["refresh_token"])

    assert logout.status_code == 204
    assert after_logout.json() == INVALID_REFRESH
    assert reused.json() == INVALID_REFRESH
    assert after_reuse.json() == INVALID_REFRESH


def test_token_of_unknown_account_gets_404(server: FerndServer) -> None:
    token = server.token(str(uuid.uuid4()))

    with server.client(token) as client:
        me = client.get("/api/v1/me")
        patched = client.patch("/api/v1/me", json={"name": "Someone"})
        changed = client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )

    for reply in (me, patched, changed):
        assert reply.status_code == 404
        assert reply.json() == error("Account not found", "not_found")


def test_deleted_account_loses_its_logins(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("deleted")
    pair = accounts.register(client, email)

    _delete_account(server, pair["user"]["user_id"])
    me = client.get("/api/v1/me", headers=accounts.bearer(pair["access_token"]))
    refreshed = accounts.refresh(client, pair["refresh_token"])
    login = accounts.login(client, email, PASSWORD)
    again = client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )

    assert me.status_code == 404
    assert refreshed.json() == INVALID_REFRESH
    assert login.json() == INVALID_CREDENTIALS
    assert again.status_code == 201
    assert again.json()["user"]["user_id"] != pair["user"]["user_id"]


def test_upgrade_with_trailing_byte_keeps_server_up(
    fresh_server: FerndServer,
) -> None:
    fresh_server.start()
    parts = urlsplit(fresh_server.base_url)
    assert parts.hostname is not None and parts.port is not None
    handshake = "".join(
        f"{name}: {value}\r\n" for name, value in WEBSOCKET_HANDSHAKE.items()
    )
    request = (
        f"GET /api/v1/connect/{uuid.uuid4()} HTTP/1.1\r\n"
        f"Host: {parts.hostname}:{parts.port}\r\n{handshake}\r\n"
    ).encode()

    with socket.create_connection((parts.hostname, parts.port), timeout=10) as peer:
        peer.sendall(request + b"x")
        with contextlib.suppress(OSError):
            peer.recv(4096)
    assert fresh_server.process is not None
    with contextlib.suppress(subprocess.TimeoutExpired):
        fresh_server.process.wait(timeout=EXIT_WAIT_SECONDS)

    assert fresh_server.process.poll() is None
    with fresh_server.client() as client:
        assert client.get("/healthz").status_code == 200


# Crashes


def test_register_survives_kill(crash_server: FerndServer) -> None:
    email = _email("crash-register")
    with crash_server.client() as client:
        pair = accounts.register(client, email, phone_number=PHONE)
    crash_server.kill()
    crash_server.start()

    with crash_server.client() as client:
        login = accounts.login(client, email, PASSWORD)
        refreshed = accounts.refresh(client, pair["refresh_token"])
        again = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )

    assert login.status_code == 200
    assert login.json()["user"]["user_id"] == pair["user"]["user_id"]
    assert login.json()["user"]["phone_number"] == PHONE
    assert refreshed.status_code == 200
    assert again.status_code == 409


def test_refresh_survives_kill(crash_server: FerndServer) -> None:
    with crash_server.client() as client:
        pair = accounts.register(client, _email("crash-refresh"))
        rotated = expect_status(
            accounts.refresh(client, pair["refresh_token"]), 200
        ).json()
    crash_server.kill()
    crash_server.start()

    with crash_server.client() as client:
        newest = accounts.refresh(client, rotated["refresh_token"])
        oldest = accounts.refresh(client, pair["refresh_token"])

    assert newest.status_code == 200
    # The rotation was committed, so the first token counts as reused.
    assert oldest.json() == INVALID_REFRESH


def test_password_change_survives_kill(crash_server: FerndServer) -> None:
    email = _email("crash-password")
    with crash_server.client() as client:
        pair = accounts.register(client, email)
        changed = client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=accounts.bearer(pair["access_token"]),
        )
    assert changed.status_code == 204
    crash_server.kill()
    crash_server.start()

    with crash_server.client() as client:
        old = accounts.login(client, email, PASSWORD)
        new = accounts.login(client, email, NEW_PASSWORD)
        refreshed = accounts.refresh(client, pair["refresh_token"])

    assert old.status_code == 401
    assert new.status_code == 200
    assert refreshed.json() == INVALID_REFRESH


# Signing keys


def test_rotation_keeps_old_access_tokens(crash_server: FerndServer) -> None:
    with crash_server.client() as client:
        pair = accounts.register(client, _email("rotation"))
    old_kid = _segments(pair["access_token"])[0]["kid"]

    rotated = _fernd(
        "admin", "rotate-signing-key", "--data-dir", str(crash_server.data_dir)
    )
    assert rotated.returncode == 0, rotated.stderr
    with crash_server.client() as client:
        refresh_token = pair["refresh_token"]
        new_kid = old_kid
        deadline = time.monotonic() + 10
        # A running server signs with the new key within 2 s.
        while new_kid == old_kid and time.monotonic() < deadline:
            refreshed = expect_status(
                accounts.refresh(client, refresh_token), 200
            ).json()
            refresh_token = refreshed["refresh_token"]
            new_kid = _segments(refreshed["access_token"])[0]["kid"]
            time.sleep(0.2)
        me = client.get("/api/v1/me", headers=accounts.bearer(pair["access_token"]))
        published = client.get("/.well-known/jwks.json").json()

    assert new_kid != old_kid
    assert me.status_code == 200
    assert {key["kid"] for key in published["keys"]} == {old_kid, new_kid}
    keys = crash_server.data_dir / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for path in keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


# Security headers


def test_account_replies_carry_security_headers(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("headers")
    created = client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    pair = created.json()
    replies = [
        created,
        accounts.login(client, email, PASSWORD),
        accounts.login(client, email, "not the password"),
        client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        ),
        client.post("/api/v1/auth/register", content=b"[]"),
        client.post("/api/v1/auth/register", content=b"x" * (MAX_BODY_BYTES + 1)),
        client.get("/api/v1/auth/login"),
        client.get("/api/v1/me"),
        client.get("/api/v1/me", headers=accounts.bearer(pair["access_token"])),
        accounts.refresh(client, "unknown"),
        client.post("/api/v1/auth/password-reset", json={"email": email}),
        client.post(
            "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}
        ),
        client.options(
            "/api/v1/auth/login",
            headers={
                "Origin": "https://app.example.org",
                "Access-Control-Request-Method": "POST",
            },
        ),
    ]

    assert [reply.status_code for reply in replies] == [
        201, 200, 401, 409, 400, 413, 405, 401, 200, 401, 403, 204, 200,
    ]  # fmt: skip
    for reply in replies:
        _assert_security_headers(reply)


# Secrets


def test_log_and_errors_hold_no_secrets(
    server: FerndServer, client: httpx.Client
) -> None:
    email = _email("secretive")
    password = "a very secret password"
    wrong = "the wrong secret password"
    pair = accounts.register(
        client, email, password, name="Sam Secret", phone_number=SECRET_PHONE
    )
    rotated = expect_status(accounts.refresh(client, pair["refresh_token"]), 200).json()
    errors = [
        accounts.login(client, email, wrong),
        accounts.login(client, email.upper(), "x" * 2000),
        accounts.refresh(client, pair["refresh_token"]),
        accounts.refresh(client, rotated["refresh_token"]),
        client.post(
            "/api/v1/auth/register", json={"email": email, "password": password}
        ),
        client.post(
            "/api/v1/auth/register", json={"email": f"{email}\x00", "password": "short"}
        ),
        client.patch(
            "/api/v1/me",
            json={"phone_number": "+44 7700 900123"},
            headers=accounts.bearer(rotated["access_token"]),
        ),
        client.post(
            "/api/v1/me/password",
            json={"current_password": wrong, "new_password": NEW_PASSWORD},
            headers=accounts.bearer(rotated["access_token"]),
        ),
        client.get(
            "/api/v1/me", headers=accounts.bearer(rotated["access_token"] + "x")
        ),
    ]
    secrets = [
        email,
        password,
        wrong,
        SECRET_PHONE,
        pair["access_token"],
        pair["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
    ]

    for reply in errors:
        assert reply.status_code >= 400, reply.request.url.path
        for secret in secrets:
            assert secret not in reply.text, reply.request.url.path
    log = server.log()
    for secret in secrets:
        assert secret not in log
    # No address, phone number, JWT or test password of any test in this
    # module reached the log.
    assert "@example.org" not in log
    assert PHONE not in log
    assert "eyJ" not in log
    assert PASSWORD not in log
    assert NEW_PASSWORD not in log


# Operator commands


def test_password_from_stdin_kept_verbatim(server: FerndServer) -> None:
    email = _email("stdin")

    created = _fernd(
        "admin",
        "create-user",
        "--email",
        email,
        "--password-stdin",
        "--data-dir",
        str(server.data_dir),
        stdin=f"{PASSWORD}  \n",
    )
    with server.client() as client:
        trimmed = accounts.login(client, email, PASSWORD)
        verbatim = accounts.login(client, email, f"{PASSWORD}  ")

    assert created.returncode == 0, created.stderr
    # Only the line break is removed, so the trailing spaces are part of it.
    assert trimmed.status_code == 401
    assert verbatim.status_code == 200


@pytest.fixture(scope="module")
def operator_mistakes(
    server: FerndServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[list[str], str, int, str]]:
    """Each mistake: the arguments, standard input, and the expected exit
    status and part of the error message."""
    data_dir = str(server.data_dir)
    missing = str(tmp_path_factory.mktemp("operator") / "missing")
    labour_id = str(uuid.uuid4())
    registered = _email("registered")
    with server.client() as client:
        accounts.register(client, registered)
    closed_port = f"http://127.0.0.1:{free_port()}"
    line = f"{NEW_PASSWORD}\n"
    return {
        "accounts in a missing data dir": (
            ["accounts", "--data-dir", missing],
            "",
            2,
            "No fernd data directory",
        ),
        "create-user in a missing data dir": (
            [
                "create-user",
                "--email",
                _email("lost"),
                "--generate",
                "--data-dir",
                missing,
            ],
            "",
            2,
            "No fernd data directory",
        ),
        "reset-password of an unknown address": (
            [
                "reset-password",
                "--email",
                _email("ghost"),
                "--password-stdin",
                "--data-dir",
                data_dir,
            ],
            line,
            1,
            "Account not found",
        ),
        "create-user of a registered address": (
            [
                "create-user",
                "--email",
                registered.upper(),
                "--password-stdin",
                "--data-dir",
                data_dir,
            ],
            line,
            1,
            "Email already registered",
        ),
        "create-user with a short password": (
            [
                "create-user",
                "--email",
                _email("short"),
                "--password-stdin",
                "--data-dir",
                data_dir,
            ],
            "short\n",
            2,
            "at least 10 characters",
        ),
        "create-user without a terminal": (
            ["create-user", "--email", _email("tty"), "--data-dir", data_dir],
            "",
            2,
            "standard input is not a terminal",
        ),
        "projectors of a bad labour id": (
            [
                "projectors",
                "--labour",
                "not-a-uuid",
                "--data-dir",
                data_dir,
                "--server",
                server.base_url,
            ],
            "",
            2,
            "is not a labour id",
        ),
        "retry-effect of a bad effect id": (
            [
                "retry-effect",
                "--labour",
                labour_id,
                "--effect",
                "nope",
                "--data-dir",
                data_dir,
                "--server",
                server.base_url,
            ],
            "",
            2,
            "is not an effect id",
        ),
        "projectors with no server running": (
            [
                "projectors",
                "--labour",
                labour_id,
                "--data-dir",
                data_dir,
                "--server",
                closed_port,
            ],
            "",
            2,
            "cannot reach fernd",
        ),
        "rebuild of an unknown labour": (
            [
                "rebuild",
                "--labour",
                labour_id,
                "--data-dir",
                data_dir,
                "--server",
                server.base_url,
            ],
            "",
            1,
            "404: Labour not found",
        ),
    }


OPERATOR_MISTAKES = [
    "accounts in a missing data dir",
    "create-user in a missing data dir",
    "reset-password of an unknown address",
    "create-user of a registered address",
    "create-user with a short password",
    "create-user without a terminal",
    "projectors of a bad labour id",
    "retry-effect of a bad effect id",
    "projectors with no server running",
    "rebuild of an unknown labour",
]


@pytest.mark.parametrize("mistake", OPERATOR_MISTAKES)
def test_operator_mistake_reported(
    operator_mistakes: dict[str, tuple[list[str], str, int, str]], mistake: str
) -> None:
    args, stdin, status, message = operator_mistakes[mistake]

    result = _fernd("admin", *args, stdin=stdin)

    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_mistyped_data_dir_creates_nothing(server: FerndServer, tmp_path: Path) -> None:
    mistyped = tmp_path / "dtaa"

    result = _fernd(
        "admin",
        "projectors",
        "--labour",
        str(uuid.uuid4()),
        "--data-dir",
        str(mistyped),
        "--server",
        server.base_url,
    )

    assert not mistyped.exists()
    assert result.returncode == 2
    assert "No fernd data directory" in result.stderr


def test_rotation_outside_a_data_dir_refused(tmp_path: Path) -> None:
    unrelated = tmp_path / "home"
    unrelated.mkdir()

    result = _fernd("admin", "rotate-signing-key", "--data-dir", str(unrelated))

    assert not (unrelated / "keys").exists()
    assert result.returncode == 2
