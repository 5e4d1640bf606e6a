"""Online backup of a data directory into one tar.gz archive, and its restore.

A backup contains the shared database `fernd.db`, every labour database under
`labours/<id[:2]>/<id>.db` and the signing key `keys/signing-key.json`, plus a
`manifest.json` member that records the fernd version, the schema versions
and, for every file, its relative path, size and SHA-256.

Consistency while fernd serves traffic: each database is copied with SQLite's
backup API in a single step. In WAL mode that step reads one snapshot and
never blocks fernd's writers, so every copied database is consistent on its
own. The databases are not copied at one common point in time, and that is
safe for these reasons:

* Labours are independent. No rule reads one labour's events while deciding
  for another, so each labour restored at its own point is a state that
  fernd could have reached.
* `fernd.db` is copied before the labour databases are listed. Every shared
  projector checkpoint in the copy is therefore at or behind the events of
  its labour in the backup. After a restore the shared read models catch up
  when the labour is next activated, and the `RebuildReadModels` admin
  command rebuilds them from the events in any case.
* A labour created after `fernd.db` was copied is in the backup without a
  row in the labour directory or the shared read models. Its shared read
  models are projected, and its unfinished work resumed, when it is next
  activated rather than at startup.
* A labour purged after `fernd.db` was copied is left out, while its rows
  in the copy of `fernd.db` remain; `fernd check` on the restored directory
  reports it as a labour without a database.

Restore verifies the whole archive (member names and types, sizes, SHA-256)
before it writes any file, and writes files with mode 0600 and directories
with mode 0700.
"""

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Final
from uuid import UUID

import apsw
import msgspec

from fernd import __version__
from fernd.auth.tokens import KEYS_DIRECTORY, SIGNING_KEY_FILE
from fernd.config import ConfigError
from fernd.storage import labour_db, shared_db
from fernd.storage.sqlite import BUSY_TIMEOUT_MS, StorageError, translate_errors

logger = logging.getLogger(__name__)

# Version of the archive layout; restore rejects any other value.
ARCHIVE_FORMAT: Final = 1
MANIFEST_NAME: Final = "manifest.json"
SHARED_DATABASE_PATH: Final = "fernd.db"
SIGNING_KEY_PATH: Final = f"{KEYS_DIRECTORY}/{SIGNING_KEY_FILE}"
LABOURS_DIRECTORY: Final = "labours"

# The schema version this fernd migrates each kind of database to.
SHARED_SCHEMA_VERSION: Final = len(shared_db._MIGRATIONS)
LABOUR_SCHEMA_VERSION: Final = len(labour_db._MIGRATIONS)

# zlib's default level, the one gzip(1) uses.
GZIP_LEVEL: Final = 6
# Read and hash files in chunks of this size, so memory stays flat however
# large a database is.
CHUNK_SIZE: Final = 1 << 20
# A manifest lists one short entry per file, so this bound only rejects a
# forged manifest member before it is read into memory.
MAX_MANIFEST_BYTES: Final = 64 << 20

# Files that SQLite keeps next to a database while it is open.
_SQLITE_SIDE_SUFFIXES: Final = ("-wal", "-shm", "-journal")
_UUID_PATTERN: Final = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_LABOUR_FILE = re.compile(rf"({_UUID_PATTERN})\.db")
_PREFIX_DIRECTORY = re.compile(r"[0-9a-f]{2}")

FILE_MODE: Final = 0o600
DIRECTORY_MODE: Final = 0o700


class ArchiveError(Exception):
    """The archive is not a fernd backup, or it does not match its manifest."""


Sha256Hex = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class ManifestFile(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
):
    """One file of a backup: its path relative to the data directory."""

    path: str
    size: Annotated[int, msgspec.Meta(ge=0)]
    sha256: Sha256Hex
    # `PRAGMA user_version` of a database copy; absent for the signing key.
    schema_version: Annotated[int, msgspec.Meta(ge=0)] | None = None


class SchemaVersions(msgspec.Struct, frozen=True, kw_only=True):
    """The schema versions of the fernd that wrote the backup."""

    shared: int
    labour: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `manifest.json` member of a backup archive."""

    format: int
    fernd_version: str
    created_at: str
    schema_versions: SchemaVersions
    files: list[ManifestFile]


@dataclass
class LabourScan:
    """The labour databases found under `labours/`, and every other entry."""

    databases: list[tuple[UUID, Path]] = field(default_factory=list)
    # Paths relative to the data directory, in POSIX form.
    unexpected: list[str] = field(default_factory=list)


@dataclass
class BackupResult:
    manifest: Manifest
    # Paths under `labours/` that are not labour databases and were left out.
    skipped: list[str]
    # Labours whose database was purged between listing and copying.
    purged: list[UUID]
    archive_size: int


def _labour_file_id(name: str, prefix: str) -> UUID | None:
    """Return the labour id of `<id>.db` in directory `prefix`, or None when
    the name is not a canonical lowercase UUID whose first two digits are
    `prefix`."""
    match = _LABOUR_FILE.fullmatch(name)
    if match is None or not match.group(1).startswith(prefix):
        return None
    return UUID(match.group(1))


def _is_side_file(name: str, prefix: str) -> bool:
    """Tell whether `name` is the WAL, shared-memory or journal file of a
    labour database in directory `prefix`."""
    for suffix in _SQLITE_SIDE_SUFFIXES:
        if name.endswith(suffix):
            return _labour_file_id(name.removesuffix(suffix), prefix) is not None
    return False


def scan_labour_databases(data_dir: Path) -> LabourScan:
    """List the labour databases under `<data_dir>/labours`, sorted by id.

    A labour database is a regular file (not a symbolic link) named
    `<id>.db` in directory `<id[:2]>`, where `<id>` is a UUID in canonical
    lowercase form. SQLite's own `-wal`, `-shm` and `-journal` files next to
    one are ignored; every other entry is reported in `unexpected`.
    """
    scan = LabourScan()
    root = data_dir / LABOURS_DIRECTORY
    if not root.is_dir():
        return scan
    for directory in sorted(root.iterdir()):
        relative = f"{LABOURS_DIRECTORY}/{directory.name}"
        if directory.is_symlink() or not directory.is_dir():
            scan.unexpected.append(relative)
            continue
        if _PREFIX_DIRECTORY.fullmatch(directory.name) is None:
            scan.unexpected.append(relative)
            continue
        for entry in sorted(directory.iterdir()):
            labour_id = _labour_file_id(entry.name, directory.name)
            if labour_id is not None and entry.is_file() and not entry.is_symlink():
                scan.databases.append((labour_id, entry))
            elif not _is_side_file(entry.name, directory.name):
                scan.unexpected.append(f"{relative}/{entry.name}")
    scan.databases.sort()
    return scan


def labour_archive_path(labour_id: UUID) -> str:
    """Return the archive path of a labour's database."""
    text = str(labour_id)
    return f"{LABOURS_DIRECTORY}/{text[:2]}/{text}.db"


def is_backup_path(path: str) -> bool:
    """Tell whether `path` is one a backup may contain: `fernd.db`, the
    signing key, or a labour database at its canonical place."""
    if path in (SHARED_DATABASE_PATH, SIGNING_KEY_PATH):
        return True
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != LABOURS_DIRECTORY:
        return False
    return _labour_file_id(parts[2], parts[1]) is not None


def _sha256_of(path: Path) -> tuple[int, str]:
    """Return the size and SHA-256 hex digest of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def copy_database(source: Path, destination: Path) -> int:
    """Copy the SQLite database `source` to the new file `destination` with
    the backup API, and return the copy's `PRAGMA user_version`.

    The source is opened read-only and copied in one backup step, so the copy
    is one consistent snapshot. In WAL mode the step does not block writers.
    Raises StorageError when SQLite fails.

    NOTE: a read-only connection cannot delete the WAL and shared-memory
    files, so a source that had none keeps an empty `-wal` and a `-shm` file
    until fernd next opens and closes it.
    """
    with translate_errors(f"Copying database {source}"):
        source_connection = apsw.Connection(
            str(source), flags=apsw.SQLITE_OPEN_READONLY
        )
        try:
            source_connection.set_busy_timeout(BUSY_TIMEOUT_MS)
            copy = apsw.Connection(str(destination))
            try:
                with copy.backup("main", source_connection, "main") as backup:
                    # -1 copies every page in this one step.
                    while not backup.step(-1):
                        pass
                version = copy.execute("PRAGMA user_version").fetchall()[0][0]
            finally:
                copy.close()
        finally:
            source_connection.close()
    # The copy carries the source's WAL flag; closing the last connection
    # checkpoints and removes its WAL, so the copy must be one file now.
    for suffix in ("-wal", "-journal"):
        leftover = Path(f"{destination}{suffix}")
        if leftover.exists():
            raise StorageError(f"Copy of {source} left {leftover.name} behind")
    assert isinstance(version, int), "user_version is an integer"
    return version


def _tar_info(path: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.size = size
    info.mode = FILE_MODE
    info.mtime = int(mtime)
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_file(
    archive: tarfile.TarFile, path: str, source: Path, mtime: float
) -> tuple[int, str]:
    """Add `source` to `archive` as `path`; return its size and SHA-256."""
    size, sha256 = _sha256_of(source)
    with source.open("rb") as file:
        archive.addfile(_tar_info(path, size, mtime), file)
    return size, sha256


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_archive(
    data_dir: Path,
    raw: IO[bytes],
    work_dir: Path,
    now: datetime,
    skipped: list[str],
    purged: list[UUID],
) -> Manifest:
    """Write the archive of `data_dir` to `raw`, using `work_dir` for the
    database copies. Append left-out paths to `skipped`, and labours purged
    during the backup to `purged`."""
    mtime = now.timestamp()
    files: list[ManifestFile] = []
    with tarfile.open(
        fileobj=raw, mode="w:gz", compresslevel=GZIP_LEVEL, format=tarfile.PAX_FORMAT
    ) as archive:

        def add_database(source: Path, path: str) -> None:
            copy = work_dir / "copy.db"
            copy.unlink(missing_ok=True)
            version = copy_database(source, copy)
            size, sha256 = _add_file(archive, path, copy, mtime)
            copy.unlink()
            files.append(
                ManifestFile(
                    path=path, size=size, sha256=sha256, schema_version=version
                )
            )

        # fernd.db first, before the labours are listed: see the module
        # docstring for why this order keeps shared checkpoints behind.
        add_database(data_dir / SHARED_DATABASE_PATH, SHARED_DATABASE_PATH)

        scan = scan_labour_databases(data_dir)
        skipped.extend(scan.unexpected)
        for labour_id, path in scan.databases:
            try:
                add_database(path, labour_archive_path(labour_id))
            except StorageError:
                # A purge deletes the database files of a labour while fernd
                # serves. Such a labour is left out, and any other error fails.
                if path.exists():
                    raise
                purged.append(labour_id)
                logger.info("Labour %s was purged during the backup", labour_id)
                continue
            logger.debug("Copied the database of labour %s", labour_id)

        key = data_dir / SIGNING_KEY_PATH
        if key.is_file() and not key.is_symlink():
            size, sha256 = _add_file(archive, SIGNING_KEY_PATH, key, mtime)
            files.append(ManifestFile(path=SIGNING_KEY_PATH, size=size, sha256=sha256))
        elif key.exists() or key.is_symlink():
            skipped.append(SIGNING_KEY_PATH)

        manifest = Manifest(
            format=ARCHIVE_FORMAT,
            fernd_version=__version__,
            created_at=now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            schema_versions=SchemaVersions(
                shared=SHARED_SCHEMA_VERSION, labour=LABOUR_SCHEMA_VERSION
            ),
            files=files,
        )
        encoded = msgspec.json.format(msgspec.json.encode(manifest), indent=2)
        archive.addfile(
            _tar_info(MANIFEST_NAME, len(encoded), mtime), io.BytesIO(encoded)
        )
    return manifest


def create_backup(
    data_dir: Path, out: Path, *, now: datetime | None = None
) -> BackupResult:
    """Write a backup archive of `data_dir` to the new file `out`.

    Safe while fernd serves `data_dir`: see the module docstring for what is
    consistent. The archive is written to a temporary file next to `out`,
    with mode 0600 because it contains personal data and the signing key, and
    then linked into place, so `out` never exists half-written and is never
    replaced. Raises ConfigError when `data_dir` has no `fernd.db`, when
    `out` exists or its directory is missing, and StorageError when SQLite
    fails to copy a database.

    NOTE: a backup killed before it finishes leaves a `.<out name>.*.tmp`
    file and a `.fernd-backup-*` directory next to `out`.
    """
    if now is None:
        now = datetime.now(UTC)
    if not (data_dir / SHARED_DATABASE_PATH).is_file():
        raise ConfigError(
            f"No fernd data directory at {data_dir} (fernd.db is missing)"
        )
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out} already exists; choose a new file for --out")
    if not out.parent.is_dir():
        raise ConfigError(f"Directory {out.parent} of --out does not exist")

    skipped: list[str] = []
    purged: list[UUID] = []
    descriptor, temporary_name = tempfile.mkstemp(
        dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"
    )
    temporary = Path(temporary_name)
    try:
        with (
            os.fdopen(descriptor, "wb") as raw,
            tempfile.TemporaryDirectory(
                dir=out.parent, prefix=".fernd-backup-"
            ) as work_dir,
        ):
            manifest = _write_archive(
                data_dir, raw, Path(work_dir), now, skipped, purged
            )
            raw.flush()
            os.fsync(raw.fileno())
        try:
            # os.link never replaces an existing file, unlike os.rename.
            os.link(temporary, out)
        except FileExistsError:
            raise ConfigError(
                f"{out} already exists; choose a new file for --out"
            ) from None
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(out.parent)

    logger.info("Backed up %s into %s: %d files", data_dir, out, len(manifest.files))
    return BackupResult(
        manifest=manifest,
        skipped=skipped,
        purged=purged,
        archive_size=out.stat().st_size,
    )


# Restore


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Return why `member` may not be restored whatever the manifest lists,
    or None when its name and type are acceptable."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        return f"member {name!r} has an absolute path"
    if ".." in path.parts:
        return f"member {name!r} contains '..'"
    if member.issym() or member.islnk():
        return f"member {name!r} is a link"
    if not member.isreg():
        return f"member {name!r} is not a regular file"
    return None


def _decode_manifest(data: bytes) -> Manifest:
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.ValidationError as error:
        raise ArchiveError(f"{MANIFEST_NAME} is invalid: {error}") from None
    except msgspec.DecodeError as error:
        raise ArchiveError(f"{MANIFEST_NAME} is not valid JSON: {error}") from None
    if manifest.format != ARCHIVE_FORMAT:
        raise ArchiveError(
            f"archive format {manifest.format} is not supported; this fernd reads"
            f" format {ARCHIVE_FORMAT}"
        )

    seen: set[str] = set()
    for entry in manifest.files:
        if not is_backup_path(entry.path):
            raise ArchiveError(
                f"{MANIFEST_NAME} lists {entry.path!r}, which is not a path a"
                " backup may contain"
            )
        if entry.path in seen:
            raise ArchiveError(f"{MANIFEST_NAME} lists {entry.path!r} twice")
        seen.add(entry.path)
        _check_schema_version(entry)
    if SHARED_DATABASE_PATH not in seen:
        raise ArchiveError(f"{MANIFEST_NAME} does not list {SHARED_DATABASE_PATH}")
    return manifest


def _check_schema_version(entry: ManifestFile) -> None:
    if entry.path == SIGNING_KEY_PATH:
        return
    supported = (
        SHARED_SCHEMA_VERSION
        if entry.path == SHARED_DATABASE_PATH
        else LABOUR_SCHEMA_VERSION
    )
    if entry.schema_version is None:
        raise ArchiveError(f"{MANIFEST_NAME} has no schema version for {entry.path}")
    if entry.schema_version > supported:
        raise ArchiveError(
            f"{entry.path} has schema version {entry.schema_version}, newer than"
            f" this fernd's {supported}; restore it with a newer fernd"
        )


def _hash_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    source = archive.extractfile(member)
    assert source is not None, "regular members always have data"
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK_SIZE):
        digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _reading(archive_path: Path) -> Iterator[tarfile.TarFile]:
    """Open the gzip tar archive, translating every way in which it can be
    unreadable into ArchiveError."""
    try:
        with tarfile.open(archive_path, mode="r:gz") as archive:
            yield archive
    # A truncated stream raises EOFError and a bad CRC gzip.BadGzipFile, so
    # other OSErrors, such as a full disk while restoring, pass through.
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ArchiveError(
            f"{archive_path} is not a readable tar.gz: {error}"
        ) from None


def verify_archive(archive_path: Path) -> Manifest:
    """Read the whole archive and return its manifest once every check holds.

    Every member must be a regular file with a relative path free of `..`,
    listed in the manifest exactly once, with the listed size and SHA-256.
    Every listed file must be present, and the manifest may name only paths
    a backup may contain. Writes nothing. Raises ArchiveError otherwise.
    """
    manifest_data: bytes | None = None
    found: dict[str, tuple[int, str]] = {}
    with _reading(archive_path) as archive:
        for member in archive:
            problem = _member_problem(member)
            if problem is not None:
                raise ArchiveError(problem)
            if member.name in found or (
                member.name == MANIFEST_NAME and manifest_data is not None
            ):
                raise ArchiveError(f"member {member.name!r} appears twice")
            if member.name == MANIFEST_NAME:
                if member.size > MAX_MANIFEST_BYTES:
                    raise ArchiveError(f"{MANIFEST_NAME} is larger than any manifest")
                source = archive.extractfile(member)
                assert source is not None, "regular members always have data"
                manifest_data = source.read()
                continue
            if not is_backup_path(member.name):
                raise ArchiveError(
                    f"member {member.name!r} is not a path a backup may contain"
                )
            found[member.name] = (member.size, _hash_member(archive, member))

    if manifest_data is None:
        raise ArchiveError(f"the archive has no {MANIFEST_NAME}")
    manifest = _decode_manifest(manifest_data)

    listed = {entry.path: entry for entry in manifest.files}
    for name in found:
        if name not in listed:
            raise ArchiveError(f"member {name!r} is not listed in {MANIFEST_NAME}")
    for path, entry in listed.items():
        if path not in found:
            raise ArchiveError(f"{path} is listed in {MANIFEST_NAME} but missing")
        size, sha256 = found[path]
        if size != entry.size:
            raise ArchiveError(
                f"{path} has {size} bytes, but {MANIFEST_NAME} lists {entry.size}"
            )
        if sha256 != entry.sha256:
            raise ArchiveError(
                f"{path} does not match its SHA-256 in {MANIFEST_NAME}; the archive"
                " is damaged or was modified"
            )
    return manifest


class _Writer:
    """Creates files and directories under a restore target, remembering each
    one so that `undo` can remove them after a failure."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.created: list[Path] = []

    def make_directory(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            return
        path.mkdir(mode=DIRECTORY_MODE)
        self.created.append(path)
        # mkdir applies the umask; the mode is set exactly afterwards.
        path.chmod(DIRECTORY_MODE)

    def write(self, relative: str, source: IO[bytes], expected: ManifestFile) -> None:
        """Write `source` to `relative` with mode 0600, checking its SHA-256
        again in case the archive changed since it was verified."""
        path = self.target / relative
        for parent in reversed(path.relative_to(self.target).parents[:-1]):
            self.make_directory(self.target / parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(path, flags, FILE_MODE)
        self.created.append(path)
        digest = hashlib.sha256()
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            while chunk := source.read(CHUNK_SIZE):
                digest.update(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        if digest.hexdigest() != expected.sha256:
            raise ArchiveError(f"{relative} changed while it was being restored")

    def sync_directories(self) -> None:
        for path in [self.target, *self.created]:
            if path.is_dir():
                _fsync_directory(path)

    def undo(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()


def _check_target(data_dir: Path) -> None:
    if not data_dir.parent.is_dir():
        raise ConfigError(f"Directory {data_dir.parent} of the target does not exist")
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()):
        raise ConfigError(f"Restore target {data_dir} is not a directory")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise ConfigError(
            f"Restore target {data_dir} is not empty; restore into a new or empty"
            " directory"
        )


def restore_backup(archive_path: Path, data_dir: Path) -> Manifest:
    """Restore the backup at `archive_path` into the new or empty `data_dir`.

    The archive is verified completely (see `verify_archive`) before any file
    is written. Files get mode 0600 and directories mode 0700; a failure while
    writing removes what this call created. Raises ConfigError for a missing
    archive or an unusable target, and ArchiveError for an invalid archive.
    """
    if not archive_path.is_file():
        raise ConfigError(f"Backup archive {archive_path} does not exist")
    _check_target(data_dir)
    manifest = verify_archive(archive_path)
    # Checked again: the target may have been filled while the archive was
    # verified.
    _check_target(data_dir)

    listed = {entry.path: entry for entry in manifest.files}
    writer = _Writer(data_dir)
    written: set[str] = set()
    try:
        writer.make_directory(data_dir)
        data_dir.chmod(DIRECTORY_MODE)
        with _reading(archive_path) as archive:
            for member in archive:
                if member.name == MANIFEST_NAME:
                    continue
                entry = listed.get(member.name)
                if (
                    _member_problem(member) is not None
                    or entry is None
                    or member.name in written
                    or member.size != entry.size
                ):
                    raise ArchiveError(
                        f"member {member.name!r} changed while it was being restored"
                    )
                source = archive.extractfile(member)
                assert source is not None, "regular members always have data"
                writer.write(member.name, source, entry)
                written.add(member.name)
        missing = listed.keys() - written
        if missing:
            raise ArchiveError(
                f"{sorted(missing)[0]} disappeared while it was being restored"
            )
        writer.sync_directories()
    except BaseException:
        writer.undo()
        raise
    logger.info(
        "Restored %d files from %s into %s", len(written), archive_path, data_dir
    )
    return manifest
