"""`fernd check` on data directories written by a real server.

Each damaged case edits a copy of one stopped server's data directory and
expects exactly the problem line for that damage, so a healthy database that
is reported by mistake also fails the test.
"""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import apsw
import pytest

from fernd.cli import main
from fernd.storage.labour_db import labour_database_path
from tests.conftest import FerndServer
from tests.e2e.helpers import expect_status, new_id, plan_labour, send, share_token

MOTHER_NAME = "Alex Morgan"
LABOUR_NAME = "Baby Morgan"
# Written into error columns by the damaged cases, and never to be printed.
PERSONAL_DATA = "alex.morgan@example.com"


@dataclass
class CheckResult:
    status: int
    problems: list[str]
    summary: str
    stderr: str


def run_check(capsys: pytest.CaptureFixture[str], data_dir: Path) -> CheckResult:
    """Run `fernd check` in this process; split its output into the problem
    lines and the summary line."""
    capsys.readouterr()
    status = main(["check", "--data-dir", str(data_dir)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    return CheckResult(status, lines[:-1], lines[-1] if lines else "", captured.err)


def time_contractions(server: FerndServer, token: str, labour_id: str) -> None:
    with server.client(token) as mother:
        for minute in range(3):
            contraction_id = new_id()
            reply = send(
                mother,
                "Contraction",
                "StartContraction",
                labour_id=labour_id,
                contraction_id=contraction_id,
                start_time=f"2024-05-01T10:0{minute}:00Z",
            )
            expect_status(reply, 204)
            reply = send(
                mother,
                "Contraction",
                "EndContraction",
                labour_id=labour_id,
                contraction_id=contraction_id,
                end_time=f"2024-05-01T10:0{minute}:40Z",
                intensity=5,
            )
            expect_status(reply, 204)


@dataclass
class Source:
    data_dir: Path
    labour_ids: list[str]
    mother_token: str


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A stopped server's data directory with two labours of one mother."""
    server = FerndServer(tmp_path_factory.mktemp("source") / "data")
    server.start()
    labour_ids = []
    try:
        for number in range(2):
            token = server.token(f"check-mother-{number}", name=MOTHER_NAME)
            with server.client(token) as mother:
                labour_id = plan_labour(mother, labour_name=LABOUR_NAME)
                share_token(mother, labour_id)
            time_contractions(server, token, labour_id)
            labour_ids.append(labour_id)
    finally:
        server.stop()
    yield Source(server.data_dir, labour_ids, token)


@pytest.fixture
def copy(source: Source, tmp_path: Path) -> Path:
    """A copy of the source data directory that a test may damage."""
    data_dir = tmp_path / "data"
    shutil.copytree(source.data_dir, data_dir)
    return data_dir


def labour_connection(data_dir: Path, labour_id: str) -> apsw.Connection:
    return apsw.Connection(str(labour_database_path(data_dir, UUID(labour_id))))


def last_sequence(connection: apsw.Connection) -> int:
    sequence: int = connection.execute("SELECT max(sequence) FROM events").fetchall()[
        0
    ][0]
    return sequence


def test_check_healthy_while_serving(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(source.data_dir, data_dir)
    server = FerndServer(data_dir)
    server.start()
    try:
        # Activates the labour, so its database is open in the server.
        time_contractions(server, source.mother_token, source.labour_ids[1])

        result = run_check(capsys, data_dir)
    finally:
        server.stop()

    assert result.status == 0
    assert result.problems == []
    assert result.summary == (
        "fernd check: healthy: the shared database and 2 labour databases"
    )


def test_check_healthy_stopped(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_check(capsys, copy)

    assert result.status == 0
    assert result.problems == []


def test_check_reports_checkpoint_behind(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    connection = labour_connection(copy, labour_id)
    last = last_sequence(connection)
    connection.execute(
        "UPDATE projection_checkpoints SET last_processed_sequence = ?"
        " WHERE projector_name = 'ContractionReadModelProjector'",
        (last - 2,),
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: projector ContractionReadModelProjector checkpoint is"
        f" at sequence {last - 2}, but the last event is {last}"
    ]
    assert result.summary == (f"fernd check: 1 problem in {copy} (2 labour databases)")


def test_check_reports_missing_checkpoint(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    connection = labour_connection(copy, labour_id)
    last = last_sequence(connection)
    connection.execute(
        "DELETE FROM projection_checkpoints"
        " WHERE projector_name = 'SubscriptionTokenReadModelProjector'"
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: projector SubscriptionTokenReadModelProjector"
        f" checkpoint is at sequence 0, but the last event is {last}"
    ]


def test_check_reports_process_manager_behind(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[1]
    connection = labour_connection(copy, labour_id)
    last = last_sequence(connection)
    connection.execute(
        "UPDATE process_manager_state SET last_processed_sequence = 1 WHERE id = 1"
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: process manager checkpoint is at sequence 1, but the"
        f" last event is {last}"
    ]


def test_check_reports_faulted_projector(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    connection = labour_connection(copy, labour_id)
    last = last_sequence(connection)
    connection.execute(
        "UPDATE projection_checkpoints SET status = 'error', error_count = 5,"
        " error_message = ?, last_processed_sequence = ?"
        " WHERE projector_name = 'LabourUpdateReadModelProjector'",
        (f"KeyError: {PERSONAL_DATA}", last - 1),
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: projector LabourUpdateReadModelProjector is faulted"
        f" after 5 errors in a row at sequence {last - 1}"
    ]


def test_check_reports_failed_effect(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[1]
    connection = labour_connection(copy, labour_id)
    effect_id, effect_type, attempts = connection.execute(
        "SELECT effect_id, effect_type, attempts FROM pending_effects"
    ).fetchall()[0]
    connection.execute(
        "UPDATE pending_effects SET status = 'FAILED', last_error = ?"
        " WHERE effect_id = ?",
        (f"SMTP 550 for {PERSONAL_DATA}", effect_id),
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: effect {effect_id} ({effect_type}) FAILED after"
        f" {attempts} attempts"
    ]


def test_check_reports_faulted_shared_projector(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    connection = apsw.Connection(str(copy / "fernd.db"))
    connection.execute(
        "UPDATE projection_checkpoints SET status = 'error', error_count = 7,"
        " error_message = ? WHERE labour_id = ?"
        " AND projector_name = 'LabourStatusReadModelProjector'",
        (PERSONAL_DATA, labour_id),
    )
    sequence = connection.execute(
        "SELECT last_processed_sequence FROM projection_checkpoints"
        " WHERE labour_id = ? AND projector_name = 'LabourStatusReadModelProjector'",
        (labour_id,),
    ).fetchall()[0][0]
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        "shared database: projector LabourStatusReadModelProjector is faulted for"
        f" labour {labour_id} after 7 errors in a row at sequence {sequence}"
    ]


def test_check_reports_several_problems(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for labour_id in source.labour_ids:
        connection = labour_connection(copy, labour_id)
        connection.execute(
            "UPDATE process_manager_state SET last_processed_sequence = 0"
        )
        connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert len(result.problems) == 2
    assert result.summary == (f"fernd check: 2 problems in {copy} (2 labour databases)")


def test_check_reports_corrupt_database(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[1]
    path = labour_database_path(copy, UUID(labour_id))
    data = bytearray(path.read_bytes())
    # Page 1 contains the header and the schema. Every later page is
    # overwritten with bytes that no b-tree page starts with.
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = b"\xee" * (len(data) - page_size)
    path.write_bytes(bytes(data))

    result = run_check(capsys, copy)

    assert result.status == 1
    assert len(result.problems) == 1
    assert result.problems[0].startswith(f"labour {labour_id}: "), result.problems


def test_check_reports_failed_integrity_check(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    connection = labour_connection(copy, labour_id)
    # The index now claims to cover end_time, but its entries are start_time
    # values, so the integrity check finds every row missing from it.
    connection.execute("PRAGMA writable_schema = ON")
    connection.execute(
        "UPDATE sqlite_schema SET sql = 'CREATE INDEX contractions_by_start"
        " ON contractions (end_time DESC, contraction_id DESC)'"
        " WHERE name = 'contractions_by_start'"
    )
    connection.close()

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: integrity check failed: row 1 missing from index"
        " contractions_by_start (and 2 more)"
    ]


def test_check_reports_unexpected_entry(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "labours" / "notes.txt").write_text("reminder")

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        "'labours/notes.txt': unexpected entry, not a labour database"
    ]


def test_check_reports_labour_without_database(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labour_id = source.labour_ids[0]
    path = labour_database_path(copy, UUID(labour_id))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    result = run_check(capsys, copy)

    assert result.status == 1
    assert result.problems == [
        f"labour {labour_id}: listed in the labour directory, but has no database"
    ]


def test_check_output_has_no_personal_data(
    source: Source, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for labour_id in source.labour_ids:
        connection = labour_connection(copy, labour_id)
        connection.execute(
            "UPDATE projection_checkpoints SET status = 'error', error_count = 5,"
            " error_message = ?",
            (PERSONAL_DATA,),
        )
        connection.execute(
            "UPDATE pending_effects SET status = 'FAILED', last_error = ?",
            (PERSONAL_DATA,),
        )
        connection.close()

    capsys.readouterr()
    status = main(["check", "--data-dir", str(copy)])
    output = capsys.readouterr()

    assert status == 1
    for text in (PERSONAL_DATA, MOTHER_NAME, LABOUR_NAME):
        assert text not in output.out, text
        assert text not in output.err, text


def test_check_missing_data_dir_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_check(capsys, tmp_path / "none")

    assert result.status == 2
    assert result.stderr == (
        f"fernd: error: No fernd data directory at {tmp_path / 'none'}"
        " (fernd.db is missing)\n"
    )
