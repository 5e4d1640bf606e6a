"""`fernd backup` and `fernd restore` against real servers and archives.

The main test backs up a data directory while a real server receives
commands, restores it into a new directory and starts a server on it. Each
restored labour must contain a prefix of the original's events that includes
every command acknowledged before the backup started, and its read models
must match its events. The other tests feed `fernd restore` archives that
are damaged, forged or aimed at a non-empty directory.
"""

import hashlib
import io
import json
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import apsw
import httpx
import pytest

from fernd import __version__
from fernd.cli import main
from fernd.domain import events as ev
from fernd.ops.backup import labour_archive_path
from fernd.storage import labour_db, shared_db
from fernd.storage.labour_db import labour_database_path
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    ask,
    expect_status,
    new_id,
    plan_labour,
    send,
    share_token,
)

ADMIN = "backup-admin"
# Labours written to at once, one writer thread each.
LOAD_LABOURS = 4
# Rounds every writer completes before the backup starts.
ROUNDS_BEFORE_BACKUP = 5
# A round is one contraction, so this keeps a labour's contractions on one
# page of GetContractions even on a slow machine.
MAX_ROUNDS = 80
# Every writer posts a labour update once in this many rounds.
UPDATE_EVERY = 4
# How long a writer or the test waits for the other side, in seconds.
WAIT_SECONDS = 20.0
# Contractions are timed in the past, far from any statistics window.
TIMELINE_START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

EVENT_COLUMNS = "sequence, event_type, event_data, created_at, user_id, audience"


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    """Run `fernd ARGS` in this process and capture what it prints."""
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return CliResult(status, captured.out, captured.err)


def read_events(data_dir: Path, labour_id: str) -> list[tuple[Any, ...]]:
    """Return every stored event row of the labour, read through a read-only
    connection."""
    path = labour_database_path(data_dir, UUID(labour_id))
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return connection.execute(
            f"SELECT {EVENT_COLUMNS} FROM events ORDER BY sequence"
        ).fetchall()
    finally:
        connection.close()


def _wire_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Writer:
    """A thread that times contractions on one labour until `stop` is set."""

    server: FerndServer
    token: str
    labour_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    # Contraction id -> time.monotonic() when its EndContraction was acknowledged.
    acknowledged: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.server.client(self.token) as client:
                while not self.stop.is_set() and self.rounds < MAX_ROUNDS:
                    self._round(client)
                    self.rounds += 1
        except BaseException as error:
            self.error = error

    def _round(self, client: httpx.Client) -> None:
        contraction_id = new_id()
        start = TIMELINE_START + timedelta(minutes=5 * self.rounds)
        reply = send(
            client,
            "Contraction",
            "StartContraction",
            labour_id=self.labour_id,
            contraction_id=contraction_id,
            start_time=_wire_time(start),
        )
        expect_status(reply, 204)
        reply = send(
            client,
            "Contraction",
            "EndContraction",
            labour_id=self.labour_id,
            contraction_id=contraction_id,
            end_time=_wire_time(start + timedelta(seconds=60)),
            intensity=5,
        )
        expect_status(reply, 204)
        self.acknowledged[contraction_id] = time.monotonic()
        if self.rounds % UPDATE_EVERY == 0:
            reply = send(
                client,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=self.labour_id,
                labour_update_type="STATUS_UPDATE",
                message=f"Round {self.rounds}",
            )
            expect_status(reply, 204)

    def wait_for_rounds(self, rounds: int) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while self.rounds < rounds and self.error is None:
            assert time.monotonic() < deadline, f"writer stuck at {self.rounds}"
            time.sleep(0.005)
        assert self.error is None, f"writer failed: {self.error!r}"

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(WAIT_SECONDS)
        assert self.error is None, f"writer failed: {self.error!r}"


def read_models(client: httpx.Client, labour_id: str) -> dict[str, Any]:
    labour = expect_status(ask(client, "Labour", "GetLabour", labour_id=labour_id), 200)
    return {
        "labour": labour.json(),
        "contractions": all_contractions(client, labour_id),
        "labour_updates": all_labour_updates(client, labour_id),
    }


def live_ids(
    rows: list[tuple[Any, ...]],
    added: type[ev.Event],
    removed: type[ev.Event],
    attribute: str,
) -> set[str]:
    """Return the ids that `added` events created and no `removed` event
    deleted, in the stored event rows."""
    ids: set[str] = set()
    for row in rows:
        event = ev.decode_event(row[2])
        if isinstance(event, added):
            ids.add(str(getattr(event, attribute)))
        elif isinstance(event, removed):
            ids.discard(str(getattr(event, attribute)))
    return ids


def ended_contraction_ids(rows: list[tuple[Any, ...]]) -> set[str]:
    return {
        str(event.contraction_id)
        for event in (ev.decode_event(row[2]) for row in rows)
        if isinstance(event, ev.ContractionEnded)
    }


def test_backup_under_write_load_restores_labours(
    fresh_server: FerndServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_server.start()
    writers = []
    for number in range(LOAD_LABOURS):
        token = fresh_server.token(f"load-mother-{number}", name=f"Mother {number}")
        with fresh_server.client(token) as mother:
            labour_id = plan_labour(mother, labour_name=f"Labour {number}")
            share_token(mother, labour_id)
        writers.append(Writer(fresh_server, token, labour_id))

    for writer in writers:
        writer.start()
    for writer in writers:
        writer.wait_for_rounds(ROUNDS_BEFORE_BACKUP)
    archive = tmp_path / "backup.tar.gz"
    backup_started = time.monotonic()
    backup = run_cli(
        capsys, "backup", "--data-dir", fresh_server.data_dir, "--out", archive
    )
    rounds_at_backup_end = [writer.rounds for writer in writers]
    # Each writer completes a round after the backup, so the original labours
    # are strictly ahead of the backup.
    for writer, rounds in zip(writers, rounds_at_backup_end, strict=True):
        writer.wait_for_rounds(rounds + 1)
    for writer in writers:
        writer.finish()
    fresh_server.stop()

    assert backup.status == 0, backup.stderr
    assert backup.stderr == ""

    restored_dir = tmp_path / "restored"
    restore = run_cli(capsys, "restore", "--from", archive, "--data-dir", restored_dir)
    assert restore.status == 0, restore.stderr

    restored_events = {}
    for writer in writers:
        original = read_events(fresh_server.data_dir, writer.labour_id)
        restored = read_events(restored_dir, writer.labour_id)
        restored_events[writer.labour_id] = restored
        assert restored == original[: len(restored)], writer.labour_id
        assert len(restored) < len(original), writer.labour_id
        acknowledged_before = {
            contraction_id
            for contraction_id, at in writer.acknowledged.items()
            if at < backup_started
        }
        missing = acknowledged_before - ended_contraction_ids(restored)
        assert missing == set(), writer.labour_id

    restored_server = FerndServer(restored_dir, env={"FERND_ADMIN_USER_IDS": ADMIN})
    restored_server.start()
    try:
        admin_token = restored_server.token(ADMIN, name="Admin")
        with restored_server.client(admin_token) as admin:
            for writer in writers:
                # The original server's token: the signing key was restored.
                with restored_server.client(writer.token) as mother:
                    served = read_models(mother, writer.labour_id)
                    reply = send(
                        admin,
                        "Admin",
                        "RebuildReadModels",
                        aggregate_id=writer.labour_id,
                    )
                    expect_status(reply, 204)
                    rebuilt = read_models(mother, writer.labour_id)
                events = read_events(restored_dir, writer.labour_id)

                assert events == restored_events[writer.labour_id], writer.labour_id
                assert served == rebuilt, writer.labour_id
                contraction_ids = {
                    row["contraction_id"] for row in served["contractions"]
                }
                assert contraction_ids == live_ids(
                    events,
                    ev.ContractionStarted,
                    ev.ContractionDeleted,
                    "contraction_id",
                )
                update_ids = {
                    row["labour_update_id"] for row in served["labour_updates"]
                }
                assert update_ids == live_ids(
                    events,
                    ev.LabourUpdatePosted,
                    ev.LabourUpdateDeleted,
                    "labour_update_id",
                )
                assert served["labour"]["labour_id"] == writer.labour_id

        check = run_cli(capsys, "check", "--data-dir", restored_dir)
        assert check.status == 0, check.stdout
    finally:
        restored_server.stop()


# Archives of a small data directory, made once per module


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A stopped server's data directory with one labour, and its labour id."""
    server = FerndServer(tmp_path_factory.mktemp("source") / "data")
    server.start()
    try:
        with server.client(server.token("source-mother", name="Alex Morgan")) as mother:
            labour_id = plan_labour(mother)
            share_token(mother, labour_id)
            contraction_id = new_id()
            reply = send(
                mother,
                "Contraction",
                "StartContraction",
                labour_id=labour_id,
                contraction_id=contraction_id,
                start_time="2024-05-01T10:00:00Z",
            )
            expect_status(reply, 204)
    finally:
        server.stop()
    yield server.data_dir, labour_id


@pytest.fixture(scope="module")
def archive(source: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "backup.tar.gz"
    assert main(["backup", "--data-dir", str(source[0]), "--out", str(path)]) == 0
    return path


def read_archive(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    members = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            file = tar.extractfile(member) if member.isreg() else None
            members.append((member, file.read() if file is not None else b""))
    return members


def write_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            member.size = len(data) if member.isreg() else 0
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def manifest_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        next(data for member, data in members if member.name == "manifest.json")
    )
    return manifest


def with_manifest(
    members: list[tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Return `members` with `manifest.json` replaced by `manifest`."""
    return [
        file_member("manifest.json", json.dumps(manifest).encode())
        if member.name == "manifest.json"
        else (member, data)
        for member, data in members
    ]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_backup_manifest_lists_every_file(
    archive: Path, source: tuple[Path, str]
) -> None:
    _, labour_id = source
    members = read_archive(archive)
    manifest = manifest_of(members)
    contents = {member.name: data for member, data in members}

    assert manifest["fernd_version"] == __version__
    assert manifest["schema_versions"] == {
        "shared": len(shared_db._MIGRATIONS),
        "labour": len(labour_db._MIGRATIONS),
    }
    assert [entry["path"] for entry in manifest["files"]] == [
        "fernd.db",
        labour_archive_path(UUID(labour_id)),
        "keys/signing-key.json",
    ]
    for entry in manifest["files"]:
        assert entry["size"] == len(contents[entry["path"]]), entry["path"]
        assert entry["sha256"] == sha256(contents[entry["path"]]), entry["path"]


def test_backup_archive_is_private(archive: Path) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_backup_existing_out_rejected(
    source: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backup.tar.gz"
    out.write_bytes(b"earlier backup")

    result = run_cli(capsys, "backup", "--data-dir", source[0], "--out", out)

    assert result.status == 2
    assert result.stderr == (
        f"fernd: error: {out} already exists; choose a new file for --out\n"
    )
    assert out.read_bytes() == b"earlier backup"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backup.tar.gz"]


def test_backup_missing_data_dir_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backup.tar.gz"

    result = run_cli(capsys, "backup", "--data-dir", tmp_path / "none", "--out", out)

    assert result.status == 2
    assert "fernd.db is missing" in result.stderr
    assert not out.exists()


def test_backup_skips_unexpected_labour_entries(
    source: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(source[0], data_dir)
    labours = data_dir / "labours"
    (labours / "zz").mkdir()
    (labours / "zz" / "notes.txt").write_text("not a database")
    prefix = source[1][:2]
    (labours / prefix / "copy.db").write_bytes(b"")
    outside = tmp_path / "outside.db"
    outside.write_bytes(b"")
    linked = labours / prefix / f"{prefix}000000-0000-7000-8000-000000000000.db"
    linked.symlink_to(outside)
    out = tmp_path / "backup.tar.gz"

    result = run_cli(capsys, "backup", "--data-dir", data_dir, "--out", out)
    names = {member.name for member, _ in read_archive(out)}

    assert result.status == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"fernd: warning: skipped {path!r}: not a labour database"
        for path in (
            f"labours/{prefix}/{linked.name}",
            f"labours/{prefix}/copy.db",
            "labours/zz",
        )
    ]
    assert names == {
        "manifest.json",
        "fernd.db",
        labour_archive_path(UUID(source[1])),
        "keys/signing-key.json",
    }


# Restore


def test_restore_writes_private_files(
    archive: Path, source: tuple[Path, str], tmp_path: Path
) -> None:
    target = tmp_path / "restored"

    assert main(["restore", "--from", str(archive), "--data-dir", str(target)]) == 0

    paths = sorted(target.rglob("*"))
    modes = {
        str(path.relative_to(target)): stat.S_IMODE(path.stat().st_mode)
        for path in [target, *paths]
    }
    labour_path = labour_archive_path(UUID(source[1]))
    assert modes == {
        ".": 0o700,
        "fernd.db": 0o600,
        "keys": 0o700,
        "keys/signing-key.json": 0o600,
        "labours": 0o700,
        str(Path(labour_path).parent): 0o700,
        labour_path: 0o600,
    }
    key = "keys/signing-key.json"
    assert (target / key).read_bytes() == (source[0] / key).read_bytes()
    assert read_events(target, source[1]) == read_events(source[0], source[1])


def test_restore_into_empty_existing_directory(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    target.mkdir()

    assert main(["restore", "--from", str(archive), "--data-dir", str(target)]) == 0
    assert (target / "fernd.db").is_file()


def test_restore_non_empty_target_rejected(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "restored"
    target.mkdir()
    (target / "fernd.db").write_bytes(b"live data")

    result = run_cli(capsys, "restore", "--from", archive, "--data-dir", target)

    assert result.status == 2
    assert result.stderr == (
        f"fernd: error: Restore target {target} is not empty; restore into a new"
        " or empty directory\n"
    )
    assert [path.name for path in target.iterdir()] == ["fernd.db"]
    assert (target / "fernd.db").read_bytes() == b"live data"


def _tamper_labour_database(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    tampered = []
    for member, data in members:
        if member.name.startswith("labours/"):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        tampered.append((member, data))
    return tampered


def _truncate_member(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        (member, data[:4096] if member.name == "fernd.db" else data)
        for member, data in members
    ]


def _drop_signing_key(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(m, d) for m, d in members if m.name != "keys/signing-key.json"]


def _add_member(name: str) -> Callable[..., list[tuple[tarfile.TarInfo, bytes]]]:
    def add(
        members: list[tuple[tarfile.TarInfo, bytes]],
    ) -> list[tuple[tarfile.TarInfo, bytes]]:
        return [file_member(name, b"payload"), *members]

    return add


def _add_link(
    link_type: bytes, name: str, target: str
) -> Callable[..., list[tuple[tarfile.TarInfo, bytes]]]:
    def add(
        members: list[tuple[tarfile.TarInfo, bytes]],
    ) -> list[tuple[tarfile.TarInfo, bytes]]:
        info = tarfile.TarInfo(name)
        info.type = link_type
        info.linkname = target
        rest = [(m, d) for m, d in members if m.name != name]
        return [(info, b""), *rest]

    return add


def _list_in_manifest(
    path: str, *, with_member: bool
) -> Callable[..., list[tuple[tarfile.TarInfo, bytes]]]:
    """List `path` with a true checksum in the manifest, and add its member
    when `with_member` is set: a forged manifest must not make an unsafe path
    acceptable."""

    def forge(
        members: list[tuple[tarfile.TarInfo, bytes]],
    ) -> list[tuple[tarfile.TarInfo, bytes]]:
        manifest = manifest_of(members)
        manifest["files"].append(
            {"path": path, "size": 7, "sha256": sha256(b"payload"), "schema_version": 1}
        )
        forged = with_manifest(members, manifest)
        if with_member:
            forged.insert(0, file_member(path, b"payload"))
        return forged

    return forge


def _newer_schema(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    manifest = manifest_of(members)
    manifest["files"][0]["schema_version"] = len(shared_db._MIGRATIONS) + 1
    return with_manifest(members, manifest)


def _without_manifest(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(m, d) for m, d in members if m.name != "manifest.json"]


REJECTED_ARCHIVES = {
    "tampered_database": (_tamper_labour_database, "does not match its SHA-256"),
    "wrong_size": (_truncate_member, "fernd.db has 4096 bytes"),
    "missing_file": (_drop_signing_key, "keys/signing-key.json is listed"),
    "absolute_path": (_add_member("/tmp/fernd-escape.db"), "absolute path"),
    "parent_directory": (_add_member("../escape.db"), "contains '..'"),
    "nested_parent_directory": (
        _add_member("labours/../../escape.db"),
        "contains '..'",
    ),
    "unlisted_member": (
        _add_member("labours/01/01a2421a-dcbb-793b-acfe-138f0b533941.db"),
        "is not listed in manifest.json",
    ),
    "unknown_path": (_add_member("notes.txt"), "is not a path a backup may contain"),
    "symbolic_link": (
        _add_link(tarfile.SYMTYPE, "fernd.db", "/etc/passwd"),
        "is a link",
    ),
    "hard_link": (_add_link(tarfile.LNKTYPE, "fernd.db", "/etc/passwd"), "is a link"),
    "forged_manifest_parent": (
        _list_in_manifest("../escape.db", with_member=True),
        "contains '..'",
    ),
    "forged_manifest_path": (
        _list_in_manifest("../escape.db", with_member=False),
        "lists '../escape.db', which is not a path a backup may contain",
    ),
    "newer_schema": (_newer_schema, "newer than this fernd's"),
    "no_manifest": (_without_manifest, "has no manifest.json"),
}


@pytest.mark.parametrize("case", list(REJECTED_ARCHIVES))
def test_restore_invalid_archive_rejected(
    case: str, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = REJECTED_ARCHIVES[case]
    forged = write_archive(tmp_path / "forged.tar.gz", change(read_archive(archive)))
    target = tmp_path / "nested" / "restored"
    target.parent.mkdir()

    result = run_cli(capsys, "restore", "--from", forged, "--data-dir", target)

    assert result.status == 1
    assert result.stderr.startswith(f"fernd: error: Backup archive {forged} rejected")
    assert message in result.stderr
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "forged.tar.gz",
        "nested",
    ]
    assert not Path("/tmp/fernd-escape.db").exists()


def test_restore_truncated_archive_rejected(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "truncated.tar.gz"
    data = archive.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    target = tmp_path / "restored"

    result = run_cli(capsys, "restore", "--from", truncated, "--data-dir", target)

    assert result.status == 1
    assert "is not a readable tar.gz" in result.stderr
    assert not target.exists()


def test_restore_missing_archive_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.tar.gz"

    result = run_cli(
        capsys, "restore", "--from", missing, "--data-dir", tmp_path / "restored"
    )

    assert result.status == 2
    assert result.stderr == f"fernd: error: Backup archive {missing} does not exist\n"
