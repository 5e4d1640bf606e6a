"""fernd's own accounts against a real `fernd serve`.

Covered: registration, login, rotating refresh tokens with reuse detection,
profile, password change, and password reset by email through a real SMTP
server. Also the operator commands, the rate limits, and that no log line or
error reply contains a secret."""

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e import account_helpers as accounts
from tests.e2e.account_helpers import PASSWORD
from tests.e2e.helpers import error, expect_status
from tests.e2e.mail_helpers import ConfiguredServer, MailSink, write_config

NEW_PASSWORD = "staple horse battery"
PHONE = "+447700900123"
PUBLIC_URL = "https://fern.example.org"
ADMIN_USER_ID = "admin-accounts"
INVALID_CREDENTIALS = error("Invalid email or password", "unauthenticated")
INVALID_REFRESH = error("Invalid refresh token", "unauthenticated")


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    directory = tmp_path_factory.mktemp("accounts")
    server = FerndServer(
        directory / "data",
        env={
            "FERND_ADMIN_USER_IDS": ADMIN_USER_ID,
            # Every test registers from 127.0.0.1.
            "FERND_REGISTRATIONS_PER_ADDRESS": "1000",
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server: FerndServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# Registration and login


def test_registered_account_gets_working_tokens(client: httpx.Client) -> None:
    pair = accounts.register(
        client,
        "Alex.Morgan@Example.org",
        name="Alex Morgan",
        first_name="Alex",
        last_name="Morgan",
        phone_number=PHONE,
    )

    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    assert pair["user"]["email"] == "Alex.Morgan@Example.org"
    claims = _claims(pair["access_token"])
    assert claims["sub"] == pair["user"]["user_id"]
    assert claims["iss"] == "fernd"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["name"] == "Alex Morgan"
    assert claims["first_name"] == "Alex"
    assert claims["last_name"] == "Morgan"
    assert claims["email"] == "Alex.Morgan@Example.org"
    assert claims["phone_number"] == PHONE

    headers = accounts.bearer(pair["access_token"])
    planned = client.post(
        "/api/v1/labour/plan",
        json={"first_labour": True, "due_date": "2027-01-10T00:00:00Z"},
        headers=headers,
    )
    expect_status(planned, 200)
    history = expect_status(
        client.get("/api/v1/labour/history", headers=headers), 200
    ).json()
    assert [item["mother_name"] for item in history] == ["Alex Morgan"]


def test_email_is_unique_whatever_its_case(client: httpx.Client) -> None:
    accounts.register(client, "case@example.org")

    reply = client.post(
        "/api/v1/auth/register",
        json={"email": " CASE@Example.ORG ", "password": PASSWORD},
    )

    assert reply.status_code == 409
    assert reply.json() == error("Email already registered", "conflict")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"email": "not-an-address", "password": PASSWORD},
            "Validation error: Invalid email address",
        ),
        (
            {"email": "short@example.org", "password": "nine char"},
            "Validation error: Password must be at least 10 characters",
        ),
        (
            {"email": "long@example.org", "password": "x" * 1025},
            "Validation error: Password must be at most 1024 characters",
        ),
        (
            {
                "email": "phone@example.org",
                "password": PASSWORD,
                "phone_number": "07700",
            },
            "Validation error: Phone number must be in E.164 form, a + and 7 to 15"
            " digits, e.g. +447700900123",
        ),
        (
            {"email": "name@example.org", "password": PASSWORD, "name": "n" * 101},
            "Validation error: Name must be at most 100 characters",
        ),
        (
            {"email": "rlo@example.org", "password": PASSWORD, "name": "Al\u202eex"},
            "Validation error: Name must not contain control or format characters",
        ),
        (
            {"email": "zw\u200b@example.org", "password": PASSWORD},
            "Validation error: Invalid email address",
        ),
    ],
)
def test_invalid_registration_is_refused(
    client: httpx.Client, body: dict[str, Any], message: str
) -> None:
    reply = client.post("/api/v1/auth/register", json=body)

    assert reply.status_code == 400
    assert reply.json() == error(message, "validation_error")
    login = accounts.login(client, body["email"], body["password"])
    assert login.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"email": "a@example.org"}',
        b'{"email": 5, "password": "long enough pw"}',
        b'{"email": "a@example.org", "password": "long enough pw", "admin": true}',
    ],
)
def test_malformed_registration_is_refused(client: httpx.Client, body: bytes) -> None:
    reply = client.post("/api/v1/auth/register", content=body)

    assert reply.status_code == 400
    assert reply.json()["code"] == "invalid_request"
    assert reply.json()["message"].startswith("Failed to parse request body")


def test_login_refuses_wrong_password_and_unknown_email_alike(
    client: httpx.Client,
) -> None:
    accounts.register(client, "login@example.org")

    wrong = accounts.login(client, "login@example.org", "wrong password!")
    unknown = accounts.login(client, "nobody@example.org", PASSWORD)
    right = accounts.login(client, "LOGIN@example.org", PASSWORD)

    assert (wrong.status_code, wrong.json()) == (401, INVALID_CREDENTIALS)
    assert (unknown.status_code, unknown.json()) == (401, INVALID_CREDENTIALS)
    assert right.status_code == 200
    assert right.json()["user"]["email"] == "login@example.org"


# Refresh tokens


def test_refresh_rotates_the_refresh_token(client: httpx.Client) -> None:
    first = accounts.register(client, "rotate@example.org")

    second = expect_status(accounts.refresh(client, first["refresh_token"]), 200).json()
    third = expect_status(accounts.refresh(client, second["refresh_token"]), 200).json()

    assert len({first["refresh_token"], second["refresh_token"]}) == 2
    assert third["user"]["user_id"] == first["user"]["user_id"]
    claims = _claims(third["access_token"])
    assert claims["sub"] == first["user"]["user_id"]


def test_reused_refresh_token_revokes_the_whole_login(client: httpx.Client) -> None:
    first = accounts.register(client, "reuse@example.org")
    other_login = expect_status(
        accounts.login(client, "reuse@example.org", PASSWORD), 200
    ).json()
    second = expect_status(accounts.refresh(client, first["refresh_token"]), 200).json()

    # Someone replays the rotated token: the login it belongs to ends.
    replayed = accounts.refresh(client, first["refresh_token"])
    after_reuse = accounts.refresh(client, second["refresh_token"])
    other = accounts.refresh(client, other_login["refresh_token"])

    assert (replayed.status_code, replayed.json()) == (401, INVALID_REFRESH)
    assert (after_reuse.status_code, after_reuse.json()) == (401, INVALID_REFRESH)
    # Another login of the same account is left alone.
    assert other.status_code == 200


def test_logout_revokes_the_login(client: httpx.Client) -> None:
    pair = accounts.register(client, "logout@example.org")
    refreshed = expect_status(
        accounts.refresh(client, pair["refresh_token"]), 200
    ).json()

    first = client.post(
        "/api/v1/auth/logout", json={"refresh_token": refreshed["refresh_token"]}
    )
    again = client.post(
        "/api/v1/auth/logout", json={"refresh_token": refreshed["refresh_token"]}
    )

    assert first.status_code == 204
    assert again.status_code == 204
    assert "Content-Type" not in first.headers
    assert accounts.refresh(client, refreshed["refresh_token"]).status_code == 401


@pytest.mark.parametrize("token", ["", "x" * 43, "a.b.c"])
def test_unknown_refresh_token_is_refused(client: httpx.Client, token: str) -> None:
    reply = accounts.refresh(client, token)

    assert (reply.status_code, reply.json()) == (401, INVALID_REFRESH)


# Profile and password


def test_profile_changes_reach_the_next_access_token(client: httpx.Client) -> None:
    pair = accounts.register(client, "profile@example.org", name="Pat")
    headers = accounts.bearer(pair["access_token"])

    changed = client.patch(
        "/api/v1/me",
        json={"first_name": " Patricia ", "last_name": "Lee", "name": None},
        headers=headers,
    )
    me = client.get("/api/v1/me", headers=headers)
    refreshed = expect_status(
        accounts.refresh(client, pair["refresh_token"]), 200
    ).json()

    assert changed.status_code == 200
    assert changed.json()["first_name"] == "Patricia"
    assert me.json() == changed.json()
    assert me.json()["name"] is None
    claims = _claims(refreshed["access_token"])
    assert claims["first_name"] == "Patricia"
    assert claims["last_name"] == "Lee"
    assert "name" not in claims


def test_profile_refuses_bad_fields(client: httpx.Client) -> None:
    pair = accounts.register(client, "badprofile@example.org")
    headers = accounts.bearer(pair["access_token"])

    phone = client.patch("/api/v1/me", json={"phone_number": "123"}, headers=headers)
    email = client.patch(
        "/api/v1/me", json={"email": "other@example.org"}, headers=headers
    )

    assert phone.status_code == 400
    assert phone.json()["code"] == "validation_error"
    assert email.status_code == 400
    assert email.json()["code"] == "invalid_request"
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["email"] == "badprofile@example.org"
    assert me["phone_number"] is None


def test_me_needs_an_account_token(server: FerndServer, client: httpx.Client) -> None:
    missing = client.get("/api/v1/me")
    foreign = client.get(
        "/api/v1/me", headers=accounts.bearer(server.token("no-account"))
    )

    assert (missing.status_code, missing.json()["code"]) == (401, "unauthenticated")
    assert foreign.status_code == 404
    assert foreign.json() == error("Account not found", "not_found")


def test_password_change_revokes_every_login(client: httpx.Client) -> None:
    first = accounts.register(client, "change@example.org")
    second = expect_status(
        accounts.login(client, "change@example.org", PASSWORD), 200
    ).json()
    headers = accounts.bearer(first["access_token"])

    wrong = client.post(
        "/api/v1/me/password",
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
        headers=headers,
    )
    changed = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )

    assert wrong.status_code == 403
    assert wrong.json() == error("Current password is incorrect", "forbidden")
    assert changed.status_code == 204
    assert accounts.refresh(client, first["refresh_token"]).status_code == 401
    assert accounts.refresh(client, second["refresh_token"]).status_code == 401
    assert accounts.login(client, "change@example.org", PASSWORD).status_code == 401
    assert accounts.login(client, "change@example.org", NEW_PASSWORD).status_code == 200


def test_admin_lists_accounts_with_masked_emails(
    server: FerndServer, client: httpx.Client
) -> None:
    pair = accounts.register(client, "listed@example.org", name="Listed Person")

    denied = client.get(
        "/api/v1/admin/accounts", headers=accounts.bearer(pair["access_token"])
    )
    listed = client.get(
        "/api/v1/admin/accounts?limit=500",
        headers=accounts.bearer(server.token(ADMIN_USER_ID)),
    )
    bad_limit = client.get(
        "/api/v1/admin/accounts?limit=0",
        headers=accounts.bearer(server.token(ADMIN_USER_ID)),
    )

    assert denied.status_code == 403
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == len(body["accounts"])
    mine = [a for a in body["accounts"] if a["user_id"] == pair["user"]["user_id"]]
    assert mine == [
        {
            "user_id": pair["user"]["user_id"],
            "email": "l***@example.org",
            "name": "Listed Person",
            "created_at": pair["user"]["created_at"],
        }
    ]
    assert "listed@example.org" not in listed.text
    assert bad_limit.status_code == 400


def test_options_report_registration_and_reset(client: httpx.Client) -> None:
    reply = client.get("/api/v1/auth/options")

    assert reply.json() == {"registration": True, "password_reset": False}


def test_reset_off_without_email(
    client: httpx.Client,
) -> None:
    reply = client.post("/api/v1/auth/password-reset", json={"email": "a@example.org"})

    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"


# Operator commands


def _fernd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fernd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_operator_resets_a_password_and_ends_every_login(
    server: FerndServer, client: httpx.Client
) -> None:
    pair = accounts.register(client, "forgot@example.org")
    data_dir = str(server.data_dir)

    reset = _fernd(
        "admin",
        "reset-password",
        "--data-dir",
        data_dir,
        "--email",
        "Forgot@example.org",
        "--password-stdin",
        stdin=NEW_PASSWORD + "\n",
    )
    unknown = _fernd(
        "admin",
        "reset-password",
        "--data-dir",
        data_dir,
        "--email",
        "nobody@example.org",
        "--generate",
    )
    listed = _fernd("admin", "accounts", "--data-dir", data_dir)

    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["user_id"] == pair["user"]["user_id"]
    assert accounts.refresh(client, pair["refresh_token"]).status_code == 401
    assert accounts.login(client, "forgot@example.org", NEW_PASSWORD).status_code == 200
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "fernd: error: Account not found"
    emails = [json.loads(line)["email"] for line in listed.stdout.splitlines()]
    assert "forgot@example.org" in emails


# Registration switched off, and the operator's create-user


def test_closed_registration_leaves_account_creation_to_the_operator(
    tmp_path: Path,
) -> None:
    server = FerndServer(tmp_path / "data", env={"FERND_ALLOW_REGISTRATION": "false"})
    server.start()
    try:
        with server.client() as client:
            refused = client.post(
                "/api/v1/auth/register",
                json={"email": "closed@example.org", "password": PASSWORD},
            )
            options = client.get("/api/v1/auth/options").json()
            created = _fernd(
                "admin",
                "create-user",
                "--data-dir",
                str(server.data_dir),
                "--email",
                "closed@example.org",
                "--name",
                "Closed Door",
                "--generate",
            )
            duplicate = _fernd(
                "admin",
                "create-user",
                "--data-dir",
                str(server.data_dir),
                "--email",
                "CLOSED@example.org",
                "--generate",
            )
            assert created.returncode == 0, created.stderr
            password = created.stdout.splitlines()[1].removeprefix("password: ")
            login = accounts.login(client, "closed@example.org", password)
    finally:
        server.stop()

    assert refused.status_code == 403
    assert refused.json() == error("Registration is disabled", "forbidden")
    assert options["registration"] is False
    assert login.status_code == 200
    assert login.json()["user"]["name"] == "Closed Door"
    assert duplicate.returncode == 1
    assert "Email already registered" in duplicate.stderr


# Password reset by email


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


def test_password_reset_by_emailed_link(
    mailing_server: tuple[ConfiguredServer, MailSink],
) -> None:
    server, sink = mailing_server
    with server.client() as client:
        pair = accounts.register(client, "reset@example.org", first_name="Robin")
        unknown = client.post(
            "/api/v1/auth/password-reset", json={"email": "nobody@example.org"}
        )
        asked = client.post(
            "/api/v1/auth/password-reset", json={"email": "RESET@example.org"}
        )
        [mail] = sink.wait_for(1, timeout=20)
        text = mail.part("plain") or ""
        link = next(word for word in text.split() if word.startswith(PUBLIC_URL))
        parts = urlsplit(link)
        token = parse_qs(parts.query)["token"][0]

        short = client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": "short"},
        )
        confirmed = client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": NEW_PASSWORD},
        )
        reused = client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": "another new password"},
        )
        old_login = accounts.login(client, "reset@example.org", PASSWORD)
        new_login = accounts.login(client, "reset@example.org", NEW_PASSWORD)
        old_refresh = accounts.refresh(client, pair["refresh_token"])

    assert unknown.status_code == 202
    assert asked.status_code == 202
    assert mail.envelope_recipients == ("reset@example.org",)
    assert mail.subject == "Reset your fernd password"
    assert "Hi Robin," in text
    assert parts.path == "/reset-password"
    assert link in (mail.part("html") or "")
    assert short.status_code == 400
    assert short.json()["code"] == "validation_error"
    assert confirmed.status_code == 204
    assert reused.status_code == 400
    assert reused.json() == error("Invalid or expired reset token", "validation_error")
    assert old_login.status_code == 401
    assert new_login.status_code == 200
    assert old_refresh.status_code == 401
    # Only the address with an account got an email.
    assert len(sink.messages) == 1
    log = server.log()
    assert token not in log
    assert "reset@example.org" not in log


# Rate limits


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[FerndServer]:
    server = FerndServer(
        tmp_path / "data",
        env={
            "FERND_LOGIN_FAILURES_PER_ACCOUNT": "3",
            "FERND_LOGIN_FAILURES_PER_ADDRESS": "5",
            "FERND_REGISTRATIONS_PER_ADDRESS": "3",
        },
    )
    server.start()
    yield server
    server.stop()


def test_failed_logins_are_limited_per_account_and_address(
    limited_server: FerndServer,
) -> None:
    with limited_server.client() as client:
        accounts.register(client, "target@example.org")
        accounts.register(client, "second@example.org")
        failures = [
            accounts.login(
                client, "target@example.org", f"guess number {n}"
            ).status_code
            for n in range(3)
        ]
        # The right password no longer helps until the window passes.
        blocked = accounts.login(client, "target@example.org", PASSWORD)
        # Other accounts still work from this address, until its own limit.
        other = [
            accounts.login(client, "second@example.org", f"other guess {n}").status_code
            for n in range(2)
        ]
        address_blocked = accounts.login(client, "second@example.org", PASSWORD)
        registration_blocked = client.post(
            "/api/v1/auth/register",
            json={"email": "third@example.org", "password": PASSWORD},
        )
        registration_blocked_again = client.post(
            "/api/v1/auth/register",
            json={"email": "fourth@example.org", "password": PASSWORD},
        )

    assert failures == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.json() == error(
        "Rate limit exceeded: Too many failed logins, try again later", "rate_limited"
    )
    assert 1 <= int(blocked.headers["Retry-After"]) <= 900
    assert other == [401, 401]
    assert address_blocked.status_code == 429
    # Three registrations per address: two above and this one.
    assert registration_blocked.status_code == 201
    assert registration_blocked_again.status_code == 429
    assert int(registration_blocked_again.headers["Retry-After"]) >= 1


def test_password_reset_requests_are_limited_per_address(
    mailing_server: tuple[ConfiguredServer, MailSink],
) -> None:
    server, _ = mailing_server
    with server.client() as client:
        replies = [
            client.post(
                "/api/v1/auth/password-reset", json={"email": f"n{n}@example.org"}
            )
            for n in range(6)
        ]

    assert [reply.status_code for reply in replies] == [202] * 5 + [429]
    assert replies[-1].json()["code"] == "rate_limited"
    assert "Retry-After" in replies[-1].headers


# Secrets


def test_no_secret_in_log_or_errors(server: FerndServer, client: httpx.Client) -> None:
    email, password = "secretive@example.org", "a very secret password"
    pair = accounts.register(client, email, password, phone_number="+15555550123")
    replies = [
        accounts.login(client, email, "the wrong secret password"),
        accounts.refresh(client, pair["refresh_token"] + "x"),
        client.post(
            "/api/v1/auth/register", json={"email": email, "password": password}
        ),
        client.get("/api/v1/me", headers=accounts.bearer(pair["access_token"] + "x")),
    ]
    rotated = expect_status(accounts.refresh(client, pair["refresh_token"]), 200).json()
    replies.append(accounts.refresh(client, pair["refresh_token"]))

    secrets = [
        email,
        password,
        "the wrong secret password",
        "+15555550123",
        pair["access_token"],
        pair["refresh_token"],
        rotated["refresh_token"],
        rotated["access_token"],
    ]
    for reply in replies:
        assert reply.status_code >= 400
        for secret in secrets:
            assert secret not in reply.text
    log = server.log()
    for secret in secrets:
        assert secret not in log
