"""Erasure of a labour against a real server: the administrator's
`POST /api/v1/admin/labours/{id}/purge` and the offline
`fernd admin purge-labour`. A purge must leave no database file and no shared
row naming the labour, and later requests must get 404 without creating
anything again."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected

from fernd.cli import main
from fernd.storage.labour_db import labour_database_path
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    ask,
    error,
    eventually,
    expect_status,
    join,
    new_id,
    plan_labour,
    send,
    share_token,
    unique_user,
)
from tests.e2e.ws_helpers import async_client, async_send, open_session

ADMIN_USER_ID = "erasure-admin"
# The SQLite files a labour may have; none may survive a purge.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# Shared tables with a labour_id column.
LABOUR_KEYED_TABLES = (
    "labour_status",
    "subscription_status",
    "projection_checkpoints",
    "labour_directory",
    "notification_log",
)
# Commands sent while a purge runs, to check that none is left waiting.
CONCURRENT_COMMANDS = 40
# A purge with commands in flight finishes well within this, in seconds.
PURGE_TIMEOUT_SECONDS = 20.0
# Idle seconds before a labour hibernates, for the test of purging one that
# is not active.
HIBERNATE_AFTER_SECONDS = 0.2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server with an administrator, shared by the tests of this module."""
    server = FerndServer(
        tmp_path_factory.mktemp("fernd-erasure") / "data",
        env={"FERND_ADMIN_USER_IDS": ADMIN_USER_ID},
    )
    server.start()
    yield server
    server.stop()


def labour_files(data_dir: Path, labour_id: str) -> list[Path]:
    path = labour_database_path(data_dir, uuid.UUID(labour_id))
    return [path.with_name(path.name + suffix) for suffix in SQLITE_SUFFIXES]


def existing_files(data_dir: Path, labour_id: str) -> list[str]:
    return [path.name for path in labour_files(data_dir, labour_id) if path.exists()]


def shared_rows(data_dir: Path, labour_id: str) -> dict[str, int]:
    """Count the rows naming the labour in each shared table, read directly
    from the shared database file."""
    connection = apsw.Connection(
        str(data_dir / "fernd.db"), flags=apsw.SQLITE_OPEN_READONLY
    )
    queries = {
        table: f"SELECT count(*) FROM {table} WHERE labour_id = ?"
        for table in LABOUR_KEYED_TABLES
    }
    queries["plan_idempotency"] = (
        "SELECT count(*) FROM plan_idempotency WHERE instr(body, ?) > 0"
    )
    counts = {}
    try:
        for table, sql in queries.items():
            (count,) = connection.execute(sql, (labour_id,)).fetchall()[0]
            assert isinstance(count, int)
            counts[table] = count
    finally:
        connection.close()
    return counts


def populate(server: FerndServer, mother_token: str) -> tuple[str, str]:
    """Plan a labour with an idempotency key, record a contraction, approve a
    loved one, and wait until every shared table contains a row naming the
    labour. Return the labour id and the loved one's token."""
    with server.client(mother_token) as mother:
        reply = mother.post(
            "/api/v1/labour/plan",
            json={"first_labour": True, "due_date": "2024-05-03T00:00:00Z"},
            headers={"Idempotency-Key": f"plan-{uuid.uuid4()}"},
        )
        labour_id: str = expect_status(reply, 200).json()["labour_id"]
        share_token(mother, labour_id)
        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=new_id(),
        )
        expect_status(reply, 204)
        loved_one = join(server, mother, labour_id, unique_user("erasure-gran"))
    rows = eventually(
        lambda: shared_rows(server.data_dir, labour_id),
        lambda counts: all(
            counts[table] > 0 for table in counts if table != "notification_log"
        ),
    )
    missing = [t for t, n in rows.items() if n == 0 and t != "notification_log"]
    assert missing == [], f"setup left no rows in {missing}"
    return labour_id, loved_one.token


def admin_client(server: FerndServer) -> httpx.Client:
    return server.client(server.token(ADMIN_USER_ID, name="Operator"))


def purge_url(labour_id: str) -> str:
    return f"/api/v1/admin/labours/{labour_id}/purge"


def run_cli(*argv: str) -> int:
    """Run `fernd` in this process with `argv`; return the exit status."""
    return main(list(argv))


# POST /api/v1/admin/labours/{labour_id}/purge


async def test_purge_route_closes_socket_4404(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, _ = populate(server, mother_token)
    admin_token = server.token(ADMIN_USER_ID, name="Operator")
    async with open_session(server, labour_id, mother_token) as session:
        async with async_client(server, admin_token) as admin:
            reply = await admin.post(purge_url(labour_id))
        reason = await session.wait_closed()
    assert reply.status_code == 200
    assert reason.code == 4404
    assert reason.reason == "Labour deleted"


def test_purge_route_removes_files_and_rows(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, _ = populate(server, mother_token)
    before = shared_rows(server.data_dir, labour_id)
    with admin_client(server) as admin:
        reply = expect_status(admin.post(purge_url(labour_id)), 200)
    report = reply.json()
    assert report["labour_id"] == labour_id
    assert f"{labour_id}.db" in report["files_removed"]
    assert report["rows_removed"] == before
    assert existing_files(server.data_dir, labour_id) == []
    assert shared_rows(server.data_dir, labour_id) == dict.fromkeys(before, 0)


def test_purge_route_later_requests_not_found(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, loved_token = populate(server, mother_token)
    with server.client(mother_token) as mother:
        other_id = plan_labour(mother, labour_name="Kept")
    with admin_client(server) as admin:
        expect_status(admin.post(purge_url(labour_id)), 200)
        second = admin.post(purge_url(labour_id))

    not_found = error("Labour not found", "not_found")
    with server.client(mother_token) as mother:
        query = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
        command = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=new_id(),
        )
        export = mother.get(f"/api/v1/labour/{labour_id}/export?format=csv")
        history = expect_status(mother.get("/api/v1/labour/history"), 200).json()
        other_labour = ask(mother, "Labour", "GetLabour", labour_id=other_id)
    with server.client(loved_token) as loved_one:
        subscribed = loved_one.get("/api/v1/subscriptions/list").json()

    assert (second.status_code, second.json()) == (404, not_found)
    assert (query.status_code, query.json()) == (404, not_found)
    assert (command.status_code, command.json()) == (404, not_found)
    assert (export.status_code, export.json()) == (404, not_found)
    assert [row["labour_id"] for row in history] == [other_id]
    assert other_labour.status_code == 200
    assert subscribed == []
    assert existing_files(server.data_dir, labour_id) == []
    assert sum(shared_rows(server.data_dir, labour_id).values()) == 0


async def test_purge_route_refuses_later_socket(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
    with admin_client(server) as admin:
        expect_status(admin.post(purge_url(labour_id)), 200)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_session(server, labour_id, mother_token):
            pass
    assert rejected.value.status_code == 404
    assert existing_files(server.data_dir, labour_id) == []


async def test_purge_route_with_commands_in_flight(server: FerndServer) -> None:
    """Commands racing a purge each get a reply: done before it, or 404."""
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
    admin_token = server.token(ADMIN_USER_ID, name="Operator")
    statuses: list[int] = []

    async def post_update(client: httpx.AsyncClient, number: int) -> None:
        reply = await async_send(
            client,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=labour_id,
            labour_update_type="STATUS_UPDATE",
            message=f"Update {number}",
        )
        statuses.append(reply.status_code)

    purge_replies: list[httpx.Response] = []

    async def purge(client: httpx.AsyncClient) -> None:
        await trio.sleep(0.01)
        purge_replies.append(await client.post(purge_url(labour_id)))

    with trio.fail_after(PURGE_TIMEOUT_SECONDS):
        async with (
            async_client(server, mother_token) as mother_async,
            async_client(server, admin_token) as admin_async,
            trio.open_nursery() as nursery,
        ):
            for number in range(CONCURRENT_COMMANDS):
                nursery.start_soon(post_update, mother_async, number)
            nursery.start_soon(purge, admin_async)

    assert [reply.status_code for reply in purge_replies] == [200]
    assert len(statuses) == CONCURRENT_COMMANDS
    assert set(statuses) <= {204, 404}
    assert existing_files(server.data_dir, labour_id) == []


def test_purge_route_hibernated_labour(fresh_server: FerndServer) -> None:
    server = fresh_server
    server.env["FERND_ADMIN_USER_IDS"] = ADMIN_USER_ID
    server.env["FERND_HIBERNATE_AFTER"] = str(HIBERNATE_AFTER_SECONDS)
    server.start()
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, _ = populate(server, mother_token)
    with admin_client(server) as admin:
        metrics = eventually(
            lambda: admin.get("/api/v1/admin/metrics").json(),
            lambda snapshot: snapshot["active_labours"] == 0,
        )
        reply = admin.post(purge_url(labour_id))
        after = admin.get("/api/v1/admin/metrics").json()
    with server.client(mother_token) as mother:
        query = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
    assert metrics["active_labours"] == 0
    assert reply.status_code == 200
    assert existing_files(server.data_dir, labour_id) == []
    assert sum(shared_rows(server.data_dir, labour_id).values()) == 0
    assert after["activations"] == metrics["activations"]
    assert after["hibernated_labours"] == metrics["hibernated_labours"] - 1
    assert query.status_code == 404


def test_purge_route_deleted_labour(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        for command in ("CompleteLabour", "DeleteLabour"):
            expect_status(send(mother, "Labour", command, labour_id=labour_id), 204)
    with admin_client(server) as admin:
        reply = admin.post(purge_url(labour_id))
    assert reply.status_code == 200
    assert existing_files(server.data_dir, labour_id) == []


def test_purge_route_mother_forbidden(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        reply = mother.post(purge_url(labour_id))
        labour = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
    assert reply.status_code == 403
    assert reply.json() == error(
        "Authorization failed: Missing required capability: Administer", "forbidden"
    )
    assert labour.status_code == 200


def test_purge_route_without_token_unauthenticated(server: FerndServer) -> None:
    with server.client() as client:
        reply = client.post(purge_url(new_id()))
    assert reply.status_code == 401


def test_purge_route_unknown_labour_not_found(server: FerndServer) -> None:
    labour_id = new_id()
    with admin_client(server) as admin:
        reply = admin.post(purge_url(labour_id))
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")
    assert existing_files(server.data_dir, labour_id) == []


def test_purge_route_invalid_labour_id(server: FerndServer) -> None:
    with admin_client(server) as admin:
        reply = admin.post(purge_url("not-a-uuid"))
    assert reply.status_code == 400
    assert reply.json() == error("Invalid labour id", "invalid_request")


def test_purge_route_logs_labour_id(server: FerndServer) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
    with admin_client(server) as admin:
        expect_status(admin.post(purge_url(labour_id)), 200)
    lines = [line for line in server.log().splitlines() if labour_id in line]
    purged = [line for line in lines if f"Purged labour {labour_id}" in line]
    assert len(purged) == 1
    assert "Alex Morgan" not in purged[0]


# fernd admin purge-labour


def test_purge_cli_without_yes_rejected(
    server: FerndServer, capsys: pytest.CaptureFixture[str]
) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
    status = run_cli(
        "admin", "purge-labour", labour_id, "--data-dir", str(server.data_dir)
    )
    captured = capsys.readouterr()
    assert status == 2
    assert "--yes" in captured.err
    assert f"{labour_id}.db" in existing_files(server.data_dir, labour_id)


def test_purge_cli_while_serving_rejected(
    server: FerndServer, capsys: pytest.CaptureFixture[str]
) -> None:
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, _ = populate(server, mother_token)
    before = shared_rows(server.data_dir, labour_id)
    status = run_cli(
        "admin",
        "purge-labour",
        labour_id,
        "--data-dir",
        str(server.data_dir),
        "--yes",
    )
    captured = capsys.readouterr()
    with server.client(mother_token) as mother:
        labour = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
    assert status == 2
    assert "in use" in captured.err
    assert f"{labour_id}.db" in existing_files(server.data_dir, labour_id)
    assert shared_rows(server.data_dir, labour_id) == before
    assert labour.status_code == 200


def test_purge_cli_invalid_labour_id(
    server: FerndServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_cli(
        "admin", "purge-labour", "nope", "--data-dir", str(server.data_dir), "--yes"
    )
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == "fernd: error: 'nope' is not a labour id (a UUID)\n"


def test_purge_cli_after_stop_erases_labour(
    fresh_server: FerndServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fresh_server
    server.env["FERND_ADMIN_USER_IDS"] = ADMIN_USER_ID
    server.start()
    mother_token = server.token(unique_user("erasure-mum"), name="Alex Morgan")
    labour_id, _ = populate(server, mother_token)
    before = shared_rows(server.data_dir, labour_id)
    assert server.stop() == 0

    argv = ("admin", "purge-labour", labour_id, "--data-dir", str(server.data_dir))
    status = run_cli(*argv, "--yes")
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    again = run_cli(*argv, "--yes")
    again_err = capsys.readouterr().err

    assert status == 0
    assert report["labour_id"] == labour_id
    assert report["rows_removed"] == before
    assert existing_files(server.data_dir, labour_id) == []
    assert sum(shared_rows(server.data_dir, labour_id).values()) == 0
    assert again == 2
    assert f"no labour {labour_id}" in again_err

    server.start()
    with server.client(mother_token) as mother:
        query = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
        history = expect_status(mother.get("/api/v1/labour/history"), 200).json()
    assert query.status_code == 404
    assert history == []
    assert existing_files(server.data_dir, labour_id) == []
