"""Labour exports against a real server: `GET /api/v1/labour/{id}/export` as
CSV and JSON, its access rules and errors, and `fernd export`, which writes
the raw event stream from the data directory."""

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from fernd.cli import main
from fernd.storage.labour_db import labour_database_path
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    ask,
    denied,
    error,
    expect_status,
    join,
    new_id,
    parse_wire_time,
    plan_labour,
    send,
    unique_user,
)

CSV_HEADER = [
    "contraction_id",
    "start_time",
    "end_time",
    "duration_seconds",
    "intensity",
]
PRIVATE_NOTE = "Only my birth partner should read this"
STATUS_UPDATE = "Heading to the hospital soon"


@dataclass(frozen=True)
class Contraction:
    """A contraction sent by the setup, with the CSV row it must export as."""

    contraction_id: str
    start_time: str
    end_time: str | None
    intensity: int | None
    csv_row: list[str]


@dataclass(frozen=True)
class ExportedLabour:
    """A labour with contractions, updates and readers of each kind."""

    server: FerndServer
    labour_id: str
    mother_token: str
    loved_one_token: str
    birth_partner_token: str
    stranger_token: str
    # In start-time order, the order the CSV must have.
    contractions: list[Contraction]

    def client(self, token: str) -> httpx.Client:
        return self.server.client(token)


def _contraction(
    start: str, end: str | None, intensity: int | None, duration: str
) -> Contraction:
    contraction_id = new_id()
    row = [
        contraction_id,
        start,
        end or start,
        duration,
        "" if intensity is None else str(intensity),
    ]
    return Contraction(contraction_id, start, end, intensity, row)


@pytest.fixture(scope="module")
def exported(fernd_server: FerndServer) -> Iterator[ExportedLabour]:
    """Plan a labour, record four contractions out of start-time order (the
    last one still in progress), post a status update and a private note, and
    add a loved one and a birth partner."""
    server = fernd_server
    mother_token = server.token(unique_user("export-mum"), name="Alex Morgan")
    ordered = [
        _contraction(
            "2024-05-01T10:00:02.750000Z", "2024-05-01T10:01:05.250000Z", 6, "62.5"
        ),
        _contraction("2024-05-01T10:20:00Z", "2024-05-01T10:21:00.500000Z", 5, "60.5"),
        _contraction("2024-05-01T10:40:00Z", "2024-05-01T10:40:45Z", 7, "45.0"),
        _contraction("2024-05-01T10:50:00Z", None, None, "0.0"),
    ]
    sent_order = [ordered[1], ordered[0], ordered[2], ordered[3]]
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother, labour_name="Baby M")
        for item in sent_order:
            reply = send(
                mother,
                "Contraction",
                "StartContraction",
                labour_id=labour_id,
                contraction_id=item.contraction_id,
                start_time=item.start_time,
            )
            expect_status(reply, 204)
            if item.end_time is None:
                continue
            reply = send(
                mother,
                "Contraction",
                "EndContraction",
                labour_id=labour_id,
                contraction_id=item.contraction_id,
                end_time=item.end_time,
                intensity=item.intensity,
            )
            expect_status(reply, 204)
        for update_type, message in (
            ("STATUS_UPDATE", STATUS_UPDATE),
            ("PRIVATE_NOTE", PRIVATE_NOTE),
        ):
            reply = send(
                mother,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=labour_id,
                labour_update_type=update_type,
                message=message,
            )
            expect_status(reply, 204)
        loved_one = join(server, mother, labour_id, unique_user("export-gran"))
        partner = join(
            server, mother, labour_id, unique_user("export-bp"), role="BIRTH_PARTNER"
        )
    yield ExportedLabour(
        server=server,
        labour_id=labour_id,
        mother_token=mother_token,
        loved_one_token=loved_one.token,
        birth_partner_token=partner.token,
        stranger_token=server.token(unique_user("export-stranger")),
        contractions=ordered,
    )


def _export(client: httpx.Client, labour_id: str, fmt: str | None) -> httpx.Response:
    params = {"format": fmt} if fmt is not None else {}
    return client.get(f"/api/v1/labour/{labour_id}/export", params=params)


def _json_export(labour: ExportedLabour, token: str) -> dict[str, Any]:
    with labour.client(token) as client:
        reply = expect_status(_export(client, labour.labour_id, "json"), 200)
    record: dict[str, Any] = reply.json()
    return record


def _update_types(record: dict[str, Any]) -> list[str]:
    return [update["labour_update_type"] for update in record["labour_updates"]]


# CSV


def test_export_csv_headers(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = expect_status(_export(client, exported.labour_id, "csv"), 200)
    assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert reply.headers["Content-Disposition"] == (
        f'attachment; filename="labour-{exported.labour_id}.csv"'
    )


def test_export_csv_rows_in_start_order(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = expect_status(_export(client, exported.labour_id, "csv"), 200)
    rows = list(csv.reader(io.StringIO(reply.text)))
    assert rows[0] == CSV_HEADER
    assert rows[1:] == [item.csv_row for item in exported.contractions]


def test_export_csv_for_loved_one(exported: ExportedLabour) -> None:
    with exported.client(exported.loved_one_token) as client:
        reply = expect_status(_export(client, exported.labour_id, "csv"), 200)
    rows = list(csv.reader(io.StringIO(reply.text)))
    assert len(rows) == 1 + len(exported.contractions)


# JSON


def test_export_json_headers(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = expect_status(_export(client, exported.labour_id, "json"), 200)
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Content-Disposition"] == (
        f'attachment; filename="labour-{exported.labour_id}.json"'
    )


def test_export_json_without_format(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = expect_status(_export(client, exported.labour_id, None), 200)
    assert reply.json()["labour"]["labour_id"] == exported.labour_id


def test_export_json_matches_read_models(exported: ExportedLabour) -> None:
    record = _json_export(exported, exported.mother_token)
    with exported.client(exported.mother_token) as mother:
        labour = ask(mother, "Labour", "GetLabour", labour_id=exported.labour_id)
        contractions = all_contractions(mother, exported.labour_id)
        updates = all_labour_updates(mother, exported.labour_id)
    assert set(record) == {
        "labour",
        "contractions",
        "labour_updates",
        "statistics",
        "exported_at",
    }
    assert record["labour"] == expect_status(labour, 200).json()
    assert record["contractions"] == contractions[::-1]
    assert record["labour_updates"] == updates[::-1]


def test_export_json_contractions_match_sent(exported: ExportedLabour) -> None:
    record = _json_export(exported, exported.mother_token)
    exported_rows = [
        [
            item["contraction_id"],
            item["duration"]["start_time"],
            item["duration"]["end_time"],
            repr(item["duration_seconds"]),
            "" if item["intensity"] is None else str(item["intensity"]),
        ]
        for item in record["contractions"]
    ]
    assert exported_rows == [item.csv_row for item in exported.contractions]


def test_export_json_statistics_over_all(exported: ExportedLabour) -> None:
    record = _json_export(exported, exported.mother_token)
    with exported.client(exported.mother_token) as mother:
        reply = ask(
            mother,
            "Contraction",
            "GetContractionStatistics",
            labour_id=exported.labour_id,
            range="all",
        )
    expected = expect_status(reply, 200).json()
    statistics = record["statistics"]
    assert statistics["range"] == "all"
    assert statistics["contraction_count"] == len(exported.contractions)
    del statistics["computed_at"], expected["computed_at"]
    assert statistics == expected


def test_export_json_mother_sees_private_notes(exported: ExportedLabour) -> None:
    record = _json_export(exported, exported.mother_token)
    messages = [update["message"] for update in record["labour_updates"]]
    assert PRIVATE_NOTE in messages
    assert STATUS_UPDATE in messages


def test_export_json_birth_partner_sees_private_notes(
    exported: ExportedLabour,
) -> None:
    record = _json_export(exported, exported.birth_partner_token)
    assert "PRIVATE_NOTE" in _update_types(record)


def test_export_json_loved_one_without_private_notes(
    exported: ExportedLabour,
) -> None:
    record = _json_export(exported, exported.loved_one_token)
    with exported.client(exported.loved_one_token) as client:
        visible = all_labour_updates(client, exported.labour_id)
    assert "PRIVATE_NOTE" not in _update_types(record)
    assert STATUS_UPDATE in [update["message"] for update in record["labour_updates"]]
    assert record["labour_updates"] == visible[::-1]


# Access and errors


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_stranger_forbidden(exported: ExportedLabour, fmt: str) -> None:
    with exported.client(exported.stranger_token) as client:
        reply = _export(client, exported.labour_id, fmt)
    assert reply.status_code == 403
    assert reply.json() == denied("Not associated with this labour")


@pytest.mark.parametrize("fmt", ["xml", "CSV", ""])
def test_export_unknown_format_rejected(exported: ExportedLabour, fmt: str) -> None:
    with exported.client(exported.mother_token) as client:
        reply = _export(client, exported.labour_id, fmt)
    assert reply.status_code == 400
    assert reply.json() == error("format must be one of csv, json", "invalid_request")


def test_export_invalid_labour_id_rejected(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = _export(client, "not-a-uuid", "csv")
    assert reply.status_code == 400
    assert reply.json() == error("Invalid labour id", "invalid_request")


def test_export_unknown_labour_not_found(exported: ExportedLabour) -> None:
    with exported.client(exported.mother_token) as client:
        reply = _export(client, new_id(), "json")
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")


def test_export_without_token_unauthenticated(exported: ExportedLabour) -> None:
    with exported.server.client() as client:
        reply = _export(client, exported.labour_id, "csv")
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthenticated"


def test_export_deleted_labour_not_found(fernd_server: FerndServer) -> None:
    token = fernd_server.token(unique_user("export-deleted"), name="Sam")
    with fernd_server.client(token) as mother:
        labour_id = plan_labour(mother)
        for command in ("CompleteLabour", "DeleteLabour"):
            expect_status(send(mother, "Labour", command, labour_id=labour_id), 204)
        reply = _export(mother, labour_id, "csv")
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")


# fernd export: the raw event stream


def _stored_events(data_dir: Path, labour_id: str) -> list[dict[str, Any]]:
    """Read the labour's events table directly, without fernd's code."""
    path = labour_database_path(data_dir, uuid.UUID(labour_id))
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = connection.execute(
            "SELECT sequence, event_type, event_data, created_at, user_id"
            " FROM events ORDER BY sequence"
        ).fetchall()
    finally:
        connection.close()
    return [
        {
            "sequence": row[0],
            "event_type": row[1],
            "event": json.loads(str(row[2])),
            "created_at": parse_wire_time(str(row[3])),
            "user_id": row[4],
        }
        for row in rows
    ]


def _as_comparable(line: dict[str, Any]) -> dict[str, Any]:
    return {**line, "created_at": parse_wire_time(line["created_at"])}


def _cli_export(exported: ExportedLabour, *extra: str) -> int:
    """Run `fernd export` on the labour in this process; return its status."""
    return main(
        [
            "export",
            "--labour",
            exported.labour_id,
            "--data-dir",
            str(exported.server.data_dir),
            *extra,
        ]
    )


def test_export_cli_lines_match_events(
    exported: ExportedLabour, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _cli_export(exported)
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    stored = _stored_events(exported.server.data_dir, exported.labour_id)
    assert status == 0
    assert len(lines) == len(stored)
    assert [line["sequence"] for line in lines] == list(range(1, len(stored) + 1))
    assert [_as_comparable(line) for line in lines] == stored
    assert f"Exported {len(stored)} events" in captured.err


def test_export_cli_writes_wire_datetimes(
    exported: ExportedLabour, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_export(exported)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(line["created_at"].endswith("Z") for line in lines)
    assert lines[0]["event_type"] == "LabourPlanned"
    assert lines[0]["event"]["type"] == "LabourPlanned"


def test_export_cli_out_file(
    exported: ExportedLabour, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.jsonl"
    status = _cli_export(exported, "--out", str(out))
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    stored = _stored_events(exported.server.data_dir, exported.labour_id)
    assert status == 0
    assert captured.out == ""
    assert [_as_comparable(line) for line in lines] == stored


def test_export_cli_invalid_id_rejected(
    fernd_server: FerndServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["export", "--labour", "not-a-uuid", "--data-dir", str(fernd_server.data_dir)]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == (
        "fernd: error: --labour 'not-a-uuid' is not a labour id (a UUID)\n"
    )
    assert captured.out == ""


def test_export_cli_unknown_labour_rejected(
    fernd_server: FerndServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.jsonl"
    labour_id = new_id()
    status = main(
        [
            "export",
            "--labour",
            labour_id,
            "--data-dir",
            str(fernd_server.data_dir),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert f"no labour {labour_id}" in captured.err
    assert not out.exists()
