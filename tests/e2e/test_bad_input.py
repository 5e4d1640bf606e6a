"""Malformed and refused requests over HTTP: parse errors, body size,
authentication, paths and methods, CORS, unknown labours and a bounded fuzz
run. Bad input never yields a 500, and every error body is exactly
`{"message", "code"}`."""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fernd.auth.tokens import LocalTokenIssuer
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    ask,
    error,
    expect_status,
    new_id,
    plan_labour,
    send,
    tagged,
    unique_user,
)

PARSE_FAILED = error("Failed to parse request body", "invalid_request")
# The largest body fernd accepts, in bytes.
MAX_BODY_BYTES = 65536
# The fuzz run stays within this many requests, so the suite stays fast.
FUZZ_REQUESTS = 300
# Fixed, so a failing run replays the same requests.
FUZZ_SEED = 8_2024
# The HTTP statuses each error code may be sent with.
ERROR_CODES = {
    "invalid_request": {400, 405, 426},
    "validation_error": {400},
    "unauthenticated": {401},
    "forbidden": {403},
    "not_found": {404},
    "conflict": {409},
    "payload_too_large": {413},
    "rate_limited": {429},
}
ALLOWED_ORIGIN = "https://app.example.org"
CORS_HEADERS = {
    "access-control-allow-origin": ALLOWED_ORIGIN,
    "vary": "Origin",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "Content-Type, Authorization, Idempotency-Key",
    "access-control-expose-headers": "Idempotency-Replayed, Retry-After",
}
# A UUID no test plans, so its labour never exists.
UNKNOWN_LABOUR_ID = "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d"


@dataclass(frozen=True)
class Target:
    """A planned labour with a started contraction, and its mother."""

    server: FerndServer
    labour_id: str
    mother_token: str
    contraction_id: str

    def mother(self) -> httpx.Client:
        return self.server.client(self.mother_token)


@pytest.fixture(scope="module")
def target(fernd_server: FerndServer) -> Iterator[Target]:
    token = fernd_server.token(unique_user("bad-input-mother"), name="Alex Morgan")
    contraction_id = new_id()
    with fernd_server.client(token) as mother:
        labour_id = plan_labour(mother)
        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=contraction_id,
        )
        expect_status(reply, 204)
    yield Target(fernd_server, labour_id, token, contraction_id)


def _post_raw(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


def _command(target: Target, group: str, name: str, **payload: Any) -> bytes:
    return json.dumps(
        tagged(group, name, labour_id=target.labour_id, **payload)
    ).encode()


# Parse failures: 400 "Failed to parse request body"


def _bad_commands(target: Target) -> dict[str, bytes]:
    end = {"contraction_id": target.contraction_id}
    post = {"labour_update_type": "STATUS_UPDATE"}
    plan = {"due_date": "2024-05-03T00:00:00Z"}
    return {
        "not_json": b"{not json",
        "empty_body": b"",
        "json_array": b"[]",
        "json_null": b"null",
        "invalid_utf8": b'{"type": "\xff"}',
        "missing_payload": b'{"type": "Labour"}',
        "type_not_string": json.dumps({"type": 5, "payload": {}}).encode(),
        "missing_field": _command(target, "LabourUpdate", "PostLabourUpdate", **post),
        "wrong_type": _command(
            target, "LabourUpdate", "PostLabourUpdate", message=5, **post
        ),
        "unknown_enum": _command(
            target,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_update_type="SHOUT",
            message="Hi",
        ),
        "naive_datetime": _command(
            target,
            "Contraction",
            "EndContraction",
            end_time="2024-05-01T10:00:00",
            intensity=5,
            **end,
        ),
        "date_only": _command(
            target,
            "Contraction",
            "EndContraction",
            end_time="2024-05-01",
            intensity=5,
            **end,
        ),
        "unparsable_datetime": _command(
            target,
            "Contraction",
            "EndContraction",
            end_time="yesterday",
            intensity=5,
            **end,
        ),
        "string_for_int": _command(
            target, "Contraction", "EndContraction", intensity="5", **end
        ),
        "float_for_int": _command(
            target, "Contraction", "EndContraction", intensity=5.0, **end
        ),
        "bool_for_int": _command(
            target, "Contraction", "EndContraction", intensity=True, **end
        ),
        "number_for_bool": _command(
            target, "Labour", "UpdateLabourPlan", first_labour=1, **plan
        ),
        "bad_labour_uuid": json.dumps(
            tagged("Labour", "BeginLabour", labour_id="nope")
        ).encode(),
        "bad_entity_uuid": _command(
            target, "Contraction", "DeleteContraction", contraction_id="1234"
        ),
        "unknown_command": _command(target, "Labour", "Explode"),
        "unknown_group": _command(target, "Party", "BeginLabour"),
        "internal_command": _command(
            target, "Internal", "SetSubscriptionToken", token="ABCDEFGH"
        ),
        "internal_in_public_group": _command(
            target, "Labour", "AdvanceLabourPhase", labour_phase="PUSHING"
        ),
        "query_as_command": _command(target, "Labour", "GetLabour"),
    }


BAD_COMMAND_CASES = [
    "not_json",
    "empty_body",
    "json_array",
    "json_null",
    "invalid_utf8",
    "missing_payload",
    "type_not_string",
    "missing_field",
    "wrong_type",
    "unknown_enum",
    "naive_datetime",
    "date_only",
    "unparsable_datetime",
    "string_for_int",
    "float_for_int",
    "bool_for_int",
    "number_for_bool",
    "bad_labour_uuid",
    "bad_entity_uuid",
    "unknown_command",
    "unknown_group",
    "internal_command",
    "internal_in_public_group",
    "query_as_command",
]


@pytest.mark.parametrize("case", BAD_COMMAND_CASES)
def test_command_parse_failure(target: Target, case: str) -> None:
    with target.mother() as mother:
        reply = _post_raw(mother, "/api/v1/command", _bad_commands(target)[case])
    assert reply.status_code == 400
    assert reply.json() == PARSE_FAILED


def _bad_queries(target: Target) -> dict[str, bytes]:
    def query(group: str, name: str, **payload: Any) -> bytes:
        body = tagged(group, name, labour_id=target.labour_id, **payload)
        return json.dumps(body).encode()

    return {
        "not_json": b"{",
        "unknown_query": query("Labour", "GetEverything"),
        "command_as_query": query("Labour", "BeginLabour"),
        "bad_labour_uuid": json.dumps(
            tagged("Labour", "GetLabour", labour_id="nope")
        ).encode(),
        "missing_field": query("User", "GetUser"),
        "wrong_type": query("User", "GetUser", user_id=5),
        "unknown_range": query("Contraction", "GetContractionStatistics", range="1h"),
        "bad_entity_uuid": query(
            "Contraction", "GetContractionById", contraction_id="nope"
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not_json",
        "unknown_query",
        "command_as_query",
        "bad_labour_uuid",
        "missing_field",
        "wrong_type",
        "unknown_range",
        "bad_entity_uuid",
    ],
)
def test_query_parse_failure(target: Target, case: str) -> None:
    with target.mother() as mother:
        reply = _post_raw(mother, "/api/v1/query", _bad_queries(target)[case])
    assert reply.status_code == 400
    assert reply.json() == PARSE_FAILED


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"first_labour": true}',
        b'{"first_labour": 1, "due_date": "2024-05-03T00:00:00Z"}',
        b'{"first_labour": true, "due_date": "2024-05-03T00:00:00"}',
        b'{"first_labour": true, "due_date": "2024-05-03"}',
        b'{"first_labour": true, "due_date": "2024-05-03T00:00:00Z", "labour_name": 5}',
    ],
    ids=["not_json", "missing", "number_for_bool", "naive", "date_only", "wrong_type"],
)
def test_plan_parse_failure(target: Target, body: bytes) -> None:
    with target.mother() as mother:
        reply = _post_raw(mother, "/api/v1/labour/plan", body)
    assert reply.status_code == 400
    assert reply.json() == PARSE_FAILED


def test_parse_failure_appends_nothing(target: Target) -> None:
    with target.mother() as mother:
        reply = send(
            mother,
            "Contraction",
            "EndContraction",
            labour_id=target.labour_id,
            contraction_id=target.contraction_id,
            intensity="5",
        )
        assert reply.status_code == 400
        row = ask(
            mother,
            "Contraction",
            "GetContractionById",
            labour_id=target.labour_id,
            contraction_id=target.contraction_id,
        ).json()
    assert row["intensity"] is None


# Domain validation: 400 validation_error


@pytest.mark.parametrize("intensity", [11, -1])
def test_intensity_out_of_range(target: Target, intensity: int) -> None:
    with target.mother() as mother:
        reply = send(
            mother,
            "Contraction",
            "EndContraction",
            labour_id=target.labour_id,
            contraction_id=target.contraction_id,
            intensity=intensity,
        )
    assert reply.status_code == 400
    assert reply.json() == error(
        "Domain error: Validation error: Intensity must be between 0 and 10",
        "validation_error",
    )


def test_contraction_time_in_future(target: Target) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    with target.mother() as mother:
        reply = send(
            mother,
            "Contraction",
            "EndContraction",
            labour_id=target.labour_id,
            contraction_id=target.contraction_id,
            end_time=later.isoformat(),
            intensity=5,
        )
    assert reply.status_code == 400
    assert reply.json() == error(
        "Domain error: Validation error: Contraction time cannot be in the future",
        "validation_error",
    )


def test_unknown_fields_ignored(target: Target) -> None:
    with target.mother() as mother:
        body = tagged("Labour", "GetLabour", labour_id=target.labour_id, colour="red")
        reply = mother.post("/api/v1/query", json={**body, "extra": [1, 2]})
    assert reply.status_code == 200


@pytest.mark.parametrize("form", ["upper", "hex32"])
def test_labour_id_alternative_forms(target: Target, form: str) -> None:
    text = (
        target.labour_id.upper()
        if form == "upper"
        else target.labour_id.replace("-", "")
    )
    with target.mother() as mother:
        reply = ask(mother, "Labour", "GetLabour", labour_id=text)
    assert reply.status_code == 200
    assert reply.json()["labour_id"] == target.labour_id


# Other invalid_request rows: path id, limit, idempotency key


def test_timestamp_bad_labour_id(target: Target) -> None:
    with target.mother() as mother:
        reply = mother.get("/api/v1/timestamp/nope")
    assert reply.status_code == 400
    assert reply.json() == error("Invalid labour id", "invalid_request")


def test_timestamp_any_labour_id(target: Target) -> None:
    with target.mother() as mother:
        reply = mother.get(f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}")
    assert reply.status_code == 200
    stamp = reply.json()["server_timestamp"]
    assert stamp.endswith("Z")
    server_time = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(server_time - datetime.now(UTC)) < timedelta(seconds=5)


def test_history_limit_invalid(target: Target) -> None:
    with target.mother() as mother:
        reply = mother.get("/api/v1/labour/history", params={"limit": "0"})
    assert reply.status_code == 400
    assert reply.json() == error("limit must be between 1 and 100", "invalid_request")


def test_command_bad_idempotency_key(target: Target) -> None:
    with target.mother() as mother:
        reply = mother.post(
            "/api/v1/command",
            content=_command(target, "Labour", "BeginLabour"),
            headers={"Idempotency-Key": "with space"},
        )
    assert reply.status_code == 400
    assert reply.json() == error("Invalid idempotency key", "invalid_request")


def test_command_key_reused_different_command(target: Target) -> None:
    with target.mother() as mother:
        first = send(
            mother,
            "LabourUpdate",
            "PostLabourUpdate",
            key="reused-in-table",
            labour_id=target.labour_id,
            labour_update_type="PRIVATE_NOTE",
            message="first",
        )
        expect_status(first, 204)
        reply = send(
            mother,
            "Labour",
            "BeginLabour",
            key="reused-in-table",
            labour_id=target.labour_id,
        )
    assert reply.status_code == 400
    assert reply.json() == error(
        "Idempotency key reused with a different command", "invalid_request"
    )


def test_query_cursor_invalid(target: Target) -> None:
    cursor = {"id": "not-a-uuid", "updated_at": "2024-05-01T10:00:00Z"}
    with target.mother() as mother:
        reply = ask(
            mother,
            "Contraction",
            "GetContractions",
            labour_id=target.labour_id,
            cursor=cursor,
        )
    assert reply.status_code == 400
    assert reply.json() == error("Invalid cursor", "invalid_request")


def test_connect_without_upgrade(target: Target) -> None:
    with target.mother() as mother:
        reply = mother.get(f"/api/v1/connect/{target.labour_id}")
    assert reply.status_code == 426
    assert reply.json() == error("Upgrade Required", "invalid_request")


# Body size


def _padded_command(target: Target, size: int) -> bytes:
    """A valid PostLabourUpdate body padded with spaces to exactly `size` bytes."""
    body = _command(
        target,
        "LabourUpdate",
        "PostLabourUpdate",
        labour_update_type="PRIVATE_NOTE",
        message="padded",
    )
    return body + b" " * (size - len(body))


def test_body_at_limit_accepted(target: Target) -> None:
    with target.mother() as mother:
        reply = _post_raw(
            mother, "/api/v1/command", _padded_command(target, MAX_BODY_BYTES)
        )
    assert reply.status_code == 204


@pytest.mark.parametrize(
    "path", ["/api/v1/command", "/api/v1/query", "/api/v1/labour/plan"]
)
def test_body_over_limit_rejected(target: Target, path: str) -> None:
    with target.mother() as mother:
        reply = _post_raw(mother, path, _padded_command(target, MAX_BODY_BYTES + 1))
    assert reply.status_code == 413
    assert reply.json() == error("Request body too large", "payload_too_large")


def _chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for offset in range(0, len(body), size):
        yield body[offset : offset + size]


def test_chunked_body_over_limit_rejected(target: Target) -> None:
    body = _padded_command(target, MAX_BODY_BYTES + 4096)
    with target.mother() as mother:
        request = mother.build_request(
            "POST",
            "/api/v1/command",
            content=_chunks(body),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        reply = mother.send(request)
    assert reply.status_code == 413
    assert reply.json() == error("Request body too large", "payload_too_large")


def test_chunked_body_within_limit_accepted(target: Target) -> None:
    body = _padded_command(target, 20000)
    with target.mother() as mother:
        reply = mother.post(
            "/api/v1/command",
            content=_chunks(body),
            headers={"Content-Type": "application/json"},
        )
    assert reply.status_code == 204


# Authentication

ROUTES = [
    ("POST", "/api/v1/labour/plan"),
    ("GET", "/api/v1/labour/history"),
    ("GET", "/api/v1/labour/active"),
    ("GET", "/api/v1/subscriptions/list"),
    ("GET", "/api/v1/subscriptions/labours"),
    ("POST", "/api/v1/command"),
    ("POST", "/api/v1/query"),
    ("GET", f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_missing_token_rejected(
    fernd_server: FerndServer, method: str, path: str
) -> None:
    with fernd_server.client() as anonymous:
        reply = anonymous.request(method, path, json={})
    assert reply.status_code == 401
    assert reply.json() == error("Unauthorised: Not Authenticated", "unauthenticated")


def _expired_token(server: FerndServer) -> str:
    issued = datetime.now(UTC) - timedelta(hours=2)
    return server.token(unique_user("expired"), ttl_seconds=60, now=issued)


def _foreign_token(tmp_path: Path) -> str:
    # Signed by another installation's key.
    return LocalTokenIssuer(tmp_path).issue(unique_user("foreign"), ttl_seconds=600)


@pytest.mark.parametrize("kind", ["garbage", "expired", "foreign_key", "basic"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_bad_token_rejected(
    fernd_server: FerndServer, tmp_path: Path, kind: str, method: str, path: str
) -> None:
    headers = {
        "garbage": {"Authorization": "Bearer not.a.token"},
        "expired": {"Authorization": f"Bearer {_expired_token(fernd_server)}"},
        "foreign_key": {"Authorization": f"Bearer {_foreign_token(tmp_path)}"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
    }[kind]
    with fernd_server.client() as anonymous:
        reply = anonymous.request(method, path, json={}, headers=headers)
    assert reply.status_code == 401
    assert reply.json() == error(
        "Unauthorised: User verification failed", "unauthenticated"
    )


def test_missing_token_before_bad_path(fernd_server: FerndServer) -> None:
    with fernd_server.client() as anonymous:
        reply = anonymous.get("/api/v1/timestamp/nope")
    assert reply.status_code == 401


# Paths and methods


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/api/v1/commands", "/api/v2/command", "/api/v1/labour"]
)
def test_unknown_path_not_found(target: Target, path: str) -> None:
    with target.mother() as mother:
        reply = mother.get(path)
    assert reply.status_code == 404
    assert reply.json() == error("Not Found", "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/command"),
        ("GET", "/api/v1/query"),
        ("GET", "/api/v1/labour/plan"),
        ("POST", "/api/v1/labour/history"),
        ("PUT", "/api/v1/command"),
        ("DELETE", f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}"),
    ],
)
def test_wrong_method_rejected(target: Target, method: str, path: str) -> None:
    with target.mother() as mother:
        reply = mother.request(method, path)
    assert reply.status_code == 405
    assert reply.json() == error("Method Not Allowed", "invalid_request")


# Unknown labours


def _labour_files(server: FerndServer, labour_id: str) -> list[Path]:
    return list((server.data_dir / "labours").rglob(f"*{labour_id}*"))


def test_unknown_labour_command_not_found(target: Target) -> None:
    labour_id = new_id()
    with target.mother() as mother:
        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=new_id(),
        )
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")
    assert _labour_files(target.server, labour_id) == []


@pytest.mark.parametrize(
    ("group", "name"),
    [
        ("Labour", "GetLabour"),
        ("Contraction", "GetContractions"),
        ("Subscription", "GetSubscriptionToken"),
        ("User", "GetUsers"),
    ],
)
def test_unknown_labour_query_not_found(target: Target, group: str, name: str) -> None:
    labour_id = new_id()
    with target.mother() as mother:
        reply = ask(mother, group, name, labour_id=labour_id)
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")
    assert _labour_files(target.server, labour_id) == []


def test_unknown_labour_admin_not_found(target: Target) -> None:
    labour_id = new_id()
    with target.mother() as mother:
        reply = send(mother, "Admin", "RebuildReadModels", aggregate_id=labour_id)
    assert reply.status_code == 404
    assert _labour_files(target.server, labour_id) == []


def test_planned_labour_has_file(target: Target) -> None:
    # Guards the check above: a planned labour does have a file to find.
    assert _labour_files(target.server, target.labour_id) != []


# CORS


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server that allows one browser origin."""
    directory = tmp_path_factory.mktemp("cors")
    server = FerndServer(
        directory / "data", env={"FERND_ALLOWED_ORIGINS": ALLOWED_ORIGIN}
    )
    server.start()
    yield server
    server.stop()


def _cors_headers(reply: httpx.Response) -> dict[str, str | None]:
    return {name: reply.headers.get(name) for name in CORS_HEADERS}


def test_cors_disallowed_origin_forbidden(cors_server: FerndServer) -> None:
    with cors_server.client(cors_server.token(unique_user("cors"))) as client:
        reply = client.get(
            f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}",
            headers={"Origin": "https://evil.example"},
        )
    assert reply.status_code == 403
    assert reply.json() == error("Forbidden", "forbidden")
    assert "access-control-allow-origin" not in reply.headers


def test_cors_disallowed_preflight_forbidden(cors_server: FerndServer) -> None:
    with cors_server.client() as client:
        reply = client.options(
            "/api/v1/command",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )
    assert reply.status_code == 403
    assert reply.json() == error("Forbidden", "forbidden")


def test_cors_disallowed_origin_before_auth(cors_server: FerndServer) -> None:
    with cors_server.client() as client:
        reply = client.post(
            "/api/v1/command", json={}, headers={"Origin": "https://evil.example"}
        )
    assert reply.status_code == 403


def test_cors_allowed_origin_headers(cors_server: FerndServer) -> None:
    with cors_server.client(cors_server.token(unique_user("cors"))) as client:
        reply = client.get(
            f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}", headers={"Origin": ALLOWED_ORIGIN}
        )
    assert reply.status_code == 200
    assert _cors_headers(reply) == CORS_HEADERS


@pytest.mark.parametrize(
    ("method", "path", "authorised", "status"),
    [
        ("GET", "/api/v1/labour/history", False, 401),
        ("GET", "/api/v1/timestamp/nope", True, 400),
        ("GET", "/api/v1/nowhere", True, 404),
        ("GET", "/api/v1/command", True, 405),
        ("POST", "/api/v1/query", True, 404),
    ],
)
def test_cors_allowed_origin_on_errors(
    cors_server: FerndServer, method: str, path: str, authorised: bool, status: int
) -> None:
    token = cors_server.token(unique_user("cors")) if authorised else None
    body = tagged("Labour", "GetLabour", labour_id=UNKNOWN_LABOUR_ID)
    with cors_server.client(token) as client:
        reply = client.request(
            method, path, json=body, headers={"Origin": ALLOWED_ORIGIN}
        )
    assert reply.status_code == status
    assert _cors_headers(reply) == CORS_HEADERS


def test_cors_allowed_origin_on_too_large(cors_server: FerndServer) -> None:
    with cors_server.client(cors_server.token(unique_user("cors"))) as client:
        reply = client.post(
            "/api/v1/command",
            content=b" " * (MAX_BODY_BYTES + 1),
            headers={"Origin": ALLOWED_ORIGIN},
        )
    assert reply.status_code == 413
    assert _cors_headers(reply) == CORS_HEADERS


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_cors_preflight(cors_server: FerndServer, method: str, path: str) -> None:
    with cors_server.client() as client:
        reply = client.options(
            path,
            headers={
                "Origin": ALLOWED_ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert reply.status_code == 200
    assert reply.content == b""
    assert reply.headers.get("access-control-max-age") == "86400"
    assert _cors_headers(reply) == CORS_HEADERS


def test_cors_no_origin_unaffected(cors_server: FerndServer) -> None:
    with cors_server.client(cors_server.token(unique_user("cors"))) as client:
        reply = client.get(f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}")
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers


def test_cors_empty_list_allows_any_origin(fernd_server: FerndServer) -> None:
    origin = "https://anywhere.example"
    with fernd_server.client(fernd_server.token(unique_user("cors"))) as client:
        reply = client.get(
            f"/api/v1/timestamp/{UNKNOWN_LABOUR_ID}", headers={"Origin": origin}
        )
    assert reply.status_code == 200
    assert reply.headers.get("access-control-allow-origin") == origin


# Fuzzing


def _random_scalar(generator: random.Random) -> Any:
    choice = generator.randrange(9)
    if choice == 0:
        return None
    if choice == 1:
        return generator.choice([True, False])
    if choice == 2:
        return generator.randint(-(2**70), 2**70)
    if choice == 3:
        return generator.uniform(-1e6, 1e6)
    if choice == 4:
        return new_id()
    if choice == 5:
        return generator.choice(
            ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00", "2024-05-01", "9999-99"]
        )
    if choice == 6:
        return generator.choice(
            ["PRIVATE_NOTE", "ANNOUNCEMENT", "EMAIL", "BIRTH_PARTNER", "all", ""]
        )
    if choice == 7:
        return "".join(chr(generator.randrange(1, 0x2FF)) for _ in range(8))
    return "x" * generator.randrange(0, 300)


def _random_json(generator: random.Random, depth: int = 0) -> Any:
    if depth > 3 or generator.random() < 0.4:
        return _random_scalar(generator)
    if generator.random() < 0.5:
        return [
            _random_json(generator, depth + 1) for _ in range(generator.randrange(4))
        ]
    return {
        generator.choice(["type", "payload", "labour_id", "limit", "cursor", "k"]): (
            _random_json(generator, depth + 1)
        )
        for _ in range(generator.randrange(4))
    }


TEMPLATES: list[tuple[str, str, dict[str, Any]]] = [
    ("Contraction", "StartContraction", {"contraction_id": None, "start_time": None}),
    ("Contraction", "EndContraction", {"contraction_id": None, "intensity": 5}),
    ("Contraction", "UpdateContraction", {"contraction_id": None, "intensity": 3}),
    (
        "LabourUpdate",
        "PostLabourUpdate",
        {"labour_update_type": "STATUS_UPDATE", "message": "m"},
    ),
    (
        "Labour",
        "UpdateLabourPlan",
        {"first_labour": True, "due_date": "2024-05-03T00:00:00Z"},
    ),
    ("Subscriber", "RequestAccess", {"token": "ABCDEFGH"}),
    (
        "Subscriber",
        "UpdateNotificationMethods",
        {"subscription_id": None, "notification_methods": []},
    ),
    (
        "Subscription",
        "UpdateSubscriberRole",
        {"subscription_id": None, "role": "LOVED_ONE"},
    ),
    ("Contraction", "GetContractions", {"limit": 5, "cursor": None}),
    ("Contraction", "GetContractionStatistics", {"range": "all"}),
    ("LabourUpdate", "GetLabourUpdateById", {"labour_update_id": None}),
    ("User", "GetUser", {"user_id": "someone"}),
]


def _fuzz_body(generator: random.Random, labour_id: str) -> bytes:
    """A random request body: raw bytes, random JSON, or a template with one
    field replaced, removed or added."""
    kind = generator.randrange(10)
    if kind == 0:
        return bytes(generator.randrange(256) for _ in range(generator.randrange(64)))
    if kind == 1:
        return json.dumps(_random_json(generator)).encode()
    group, name, fields = generator.choice(TEMPLATES)
    payload: dict[str, Any] = {"labour_id": labour_id, **fields}
    for key, value in payload.items():
        if value is None and key != "cursor" and key != "start_time":
            payload[key] = new_id()
    field = generator.choice([*payload, "extra"])
    action = generator.randrange(4)
    if action == 0:
        payload.pop(field, None)
    elif action in (1, 2):
        payload[field] = _random_json(generator)
    # Otherwise the template stays valid, so the request reaches the labour.
    body: Any = tagged(group, name, **payload)
    if generator.random() < 0.2:
        body[generator.choice(["type", "payload"])] = _random_json(generator)
    return json.dumps(body).encode()


def _assert_well_formed(reply: httpx.Response, body: bytes) -> None:
    request = f"{reply.request.url.path} {body[:200]!r}"
    context = f"{request} -> {reply.status_code} {reply.text[:200]!r}"
    assert reply.status_code < 500, context
    if reply.status_code >= 400:
        parsed = reply.json()
        assert isinstance(parsed, dict), context
        assert set(parsed) == {"message", "code"}, context
        assert isinstance(parsed["message"], str), context
        assert reply.status_code in ERROR_CODES.get(parsed["code"], set()), context


def test_fuzz_never_internal_error(fernd_server: FerndServer) -> None:
    generator = random.Random(FUZZ_SEED)
    token = fernd_server.token(unique_user("fuzz-mother"))
    with fernd_server.client(token) as mother:
        labour_id = plan_labour(mother)
        for _ in range(FUZZ_REQUESTS):
            path = generator.choice(["/api/v1/command", "/api/v1/query"])
            body = _fuzz_body(generator, labour_id)
            reply = _post_raw(mother, path, body)
            _assert_well_formed(reply, body)
