"""This installation's signing keys: the current key, retired keys, rotation,
and a key ring that follows rotations made by another process.

The keys live in ``<data_dir>/keys/`` (directory mode 0700, files 0600):

* ``signing-key.json`` is the current key, an Ed25519 private JWK with a kid,
  created on first use. It signs every new token.
* ``retired-<kid>.json`` is a key that a rotation replaced, stored as
  ``{"retired_at": <seconds since the epoch>, "key": <public JWK>}``. Its
  private part is dropped, so it can only verify.

A retired key verifies tokens until ``retired_at`` plus the longest token
lifetime fernd issues, because every token it signed has expired by then.
After that it verifies nothing, and the next rotation deletes its file.
"""

import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

logger = logging.getLogger(__name__)

KEYS_DIRECTORY: Final = "keys"
SIGNING_KEY_FILE: Final = "signing-key.json"
RETIRED_KEY_PREFIX: Final = "retired-"
RETIRED_KEY_SUFFIX: Final = ".json"

# The default of the token_lifetime setting: tokens printed by `fernd token`.
DEFAULT_TOKEN_LIFETIME_SECONDS: Final = 86400
# Lifetime of the access tokens fernd issues when a user logs in.
DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS: Final = 900

# A key ring checks its directory for changes at most this often. A rotation
# made by another process reaches a running server within this time, and a
# flood of tokens naming unknown kids costs one directory listing per period.
RELOAD_INTERVAL_SECONDS: Final = 2.0

# The algorithm name published with each key, as fernd's tokens name it.
PUBLISHED_ALGORITHM: Final = "EdDSA"

# Advice appended to the errors for a key file that is read but invalid.
_SIGNING_KEY_FIX: Final = (
    "restore it from a backup, or delete it to create a new key "
    "(tokens signed with the old key then stop working)"
)


class SigningKeyError(Exception):
    """The signing key file exists but cannot be read or is not a valid key."""


@dataclass(frozen=True, kw_only=True)
class VerificationKey:
    """The public part of a current or retired signing key."""

    key: OKPKey
    # Seconds since the epoch; None for the current key.
    retired_at: int | None = None

    def verifies_at(self, timestamp: int, max_token_lifetime: int) -> bool:
        """Return whether a token the key signed may still be unexpired at
        ``timestamp``, seconds since the epoch."""
        return self.retired_at is None or (
            timestamp <= self.retired_at + max_token_lifetime
        )


@dataclass(frozen=True, kw_only=True)
class RotationResult:
    """The changes made by ``rotate_signing_key``."""

    new_kid: str
    # None when there was no current key to retire.
    retired_kid: str | None
    deleted_kids: tuple[str, ...]


def max_token_lifetime(
    token_lifetime: int,
    access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS,
) -> int:
    """Return the longest lifetime, in seconds, of a token fernd issues.

    ``token_lifetime`` is the setting of that name, the default lifetime of a
    token printed by ``fernd token``. A token given a longer ``--ttl`` stops
    verifying once its key has been retired for this long.
    """
    return max(token_lifetime, access_token_lifetime)


DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: Final = max_token_lifetime(
    DEFAULT_TOKEN_LIFETIME_SECONDS
)


def keys_directory(data_dir: Path) -> Path:
    """Return the directory of the installation's signing keys."""
    return data_dir / KEYS_DIRECTORY


def signing_key_path(data_dir: Path) -> Path:
    """Return the path of the installation's current signing key file."""
    return keys_directory(data_dir) / SIGNING_KEY_FILE


def _retired_key_path(directory: Path, key: OKPKey) -> Path:
    # The RFC 7638 thumbprint is base64url, so it is safe in a file name
    # whatever the kid contains. fernd's kids are that thumbprint.
    return directory / f"{RETIRED_KEY_PREFIX}{key.thumbprint()}{RETIRED_KEY_SUFFIX}"


def _is_key_file(name: str) -> bool:
    return name == SIGNING_KEY_FILE or (
        name.startswith(RETIRED_KEY_PREFIX) and name.endswith(RETIRED_KEY_SUFFIX)
    )


def _warn_if_readable_by_others(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning(
            "Signing key %s has mode %o, so other users may read it; "
            "run chmod 600 on it",
            path,
            mode,
        )


def _read_signing_key(path: Path) -> OKPKey:
    # Raises FileNotFoundError when the key does not exist yet.
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise SigningKeyError(f"Cannot read signing key {path}: {error}") from None

    fix = _SIGNING_KEY_FIX
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("a JWK is a JSON object")
        key = OKPKey.import_key(data)
    except (ValueError, TypeError, JoseError):
        raise SigningKeyError(f"Signing key {path} is not a valid JWK; {fix}") from None
    if not isinstance(data.get("kid"), str) or not data["kid"]:
        raise SigningKeyError(f"Signing key {path} has no kid; {fix}")
    if key.curve_name != "Ed25519" or not key.is_private:
        raise SigningKeyError(
            f"Signing key {path} is not an Ed25519 private key; {fix}"
        )

    _warn_if_readable_by_others(path)
    return key


def _read_retired_key(path: Path) -> VerificationKey:
    """Read a retired key file. Raises FileNotFoundError when it is gone and
    SigningKeyError when it is invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise SigningKeyError(
            f"Cannot read retired signing key {path}: {error}"
        ) from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("a retired key file is a JSON object")
        retired_at = data.get("retired_at")
        if not isinstance(retired_at, int) or isinstance(retired_at, bool):
            raise TypeError("retired_at must be a whole number of seconds")
        jwk = data.get("key")
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            raise TypeError("key must be a JWK with a kid")
        key = OKPKey.import_key(jwk)
    except (ValueError, TypeError, JoseError) as error:
        raise SigningKeyError(
            f"Retired signing key {path} is invalid: {error}"
        ) from None
    if key.curve_name != "Ed25519":
        raise SigningKeyError(f"Retired signing key {path} is not an Ed25519 key")
    _warn_if_readable_by_others(path)
    return VerificationKey(key=key, retired_at=retired_at)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_temporary_file(directory: Path, text: str) -> str:
    """Write ``text`` to a new file in ``directory``, flushed to disk, and
    return its name. mkstemp creates the file with mode 0600."""
    descriptor, temporary_name = tempfile.mkstemp(
        dir=directory, prefix=".signing-key-", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.unlink(temporary_name)
        raise
    return temporary_name


def _replace_file(path: Path, text: str) -> None:
    # Readers see either the old file or the complete new one.
    temporary_name = _write_temporary_file(path.parent, text)
    try:
        os.replace(temporary_name, path)
    except BaseException:
        os.unlink(temporary_name)
        raise


def _private_jwk_text(key: OKPKey) -> str:
    return json.dumps(key.as_dict(private=True), indent=2) + "\n"


def _write_new_signing_key(path: Path) -> None:
    # Writes a complete key to a temporary file, then links it into place.
    # os.link never replaces an existing file, so when two processes start
    # at once the first link wins and the other process reads the winner.
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    temporary_name = _write_temporary_file(path.parent, _private_jwk_text(key))
    try:
        try:
            os.link(temporary_name, path)
        except FileExistsError:
            logger.info("Another process created signing key %s first", path)
            return
    finally:
        os.unlink(temporary_name)

    _fsync_directory(path.parent)
    logger.info("Created signing key %s with kid %s", path, key.kid)


def load_or_create_signing_key(data_dir: Path) -> OKPKey:
    """Load the installation's current signing key, creating it on first use.

    A new key directory gets mode 0700 and a new key file mode 0600. Raises
    ``SigningKeyError`` for an unreadable or invalid key file, and
    ``OSError`` when the key directory cannot be created or written.
    """
    path = signing_key_path(data_dir)
    try:
        return _read_signing_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_new_signing_key(path)
    return _read_signing_key(path)


def _retired_key_paths(directory: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [
        directory / name
        for name in names
        if name != SIGNING_KEY_FILE and _is_key_file(name)
    ]


def _read_retired_keys(directory: Path) -> dict[str, VerificationKey]:
    """Read every valid retired key by kid; log and skip invalid files."""
    retired: dict[str, VerificationKey] = {}
    for path in _retired_key_paths(directory):
        try:
            record = _read_retired_key(path)
        except FileNotFoundError:
            continue
        except SigningKeyError as error:
            logger.warning("Skipping %s", error)
            continue
        retired[record.key.kid or ""] = record
    return retired


def _delete_expired_keys(
    directory: Path, timestamp: int, max_token_lifetime: int
) -> list[str]:
    """Delete the retired keys that no longer verify at ``timestamp``; return
    their kids. Invalid files are left for the operator to inspect."""
    deleted = []
    for path in _retired_key_paths(directory):
        try:
            retired = _read_retired_key(path)
        except (FileNotFoundError, SigningKeyError):
            continue
        if retired.verifies_at(timestamp, max_token_lifetime):
            continue
        path.unlink(missing_ok=True)
        deleted.append(retired.key.kid or path.name)
    return deleted


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    # An exclusive flock on the directory itself, so two rotations never
    # interleave and no lock file appears among the keys.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def timestamp_of(now: datetime | None) -> int:
    """Return ``now`` (default: the current time) in whole seconds since the
    epoch, as JWT NumericDate claims are written. Raises ``ValueError`` for
    a naive ``now``."""
    if now is None:
        now = datetime.now(UTC)
    elif now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return int(now.timestamp())


def rotate_signing_key(
    data_dir: Path,
    *,
    max_token_lifetime: int,
    leeway_seconds: int = 0,
    now: datetime | None = None,
) -> RotationResult:
    """Make a new current signing key and retire the previous one.

    The previous key keeps verifying the tokens it signed for
    ``max_token_lifetime`` plus ``leeway_seconds`` after ``now``. Retired keys
    whose time has passed are deleted. Creates the key directory (mode 0700)
    when missing; every file written has mode 0600. A server using the same
    data directory picks the change up without a restart. Raises
    ``SigningKeyError`` when the current key file is invalid, and ``OSError``
    when the directory cannot be written.
    """
    timestamp = timestamp_of(now)
    directory = keys_directory(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    current_path = signing_key_path(data_dir)

    with _directory_locked(directory):
        try:
            previous: OKPKey | None = _read_signing_key(current_path)
        except FileNotFoundError:
            previous = None

        # The retired file goes in before the current key is replaced, so a
        # reader never misses the previous key. A crash in between leaves the
        # key both current and retired, which the key ring reads as current.
        if previous is not None:
            public = previous.as_dict(private=False)
            record = {"retired_at": timestamp, "key": public}
            _replace_file(
                _retired_key_path(directory, previous),
                json.dumps(record, indent=2) + "\n",
            )

        key = OKPKey.generate_key("Ed25519", auto_kid=True)
        _replace_file(current_path, _private_jwk_text(key))

        deleted = _delete_expired_keys(
            directory, timestamp - leeway_seconds, max_token_lifetime
        )
        _fsync_directory(directory)

    logger.info(
        "Rotated signing key in %s: new kid %s, retired kid %s, deleted %d",
        directory,
        key.kid,
        previous.kid if previous is not None else None,
        len(deleted),
    )
    return RotationResult(
        new_kid=key.kid or "",
        retired_kid=previous.kid if previous is not None else None,
        deleted_kids=tuple(deleted),
    )


def public_jwk(key: OKPKey) -> dict[str, Any]:
    """Return the public JWK of a signing key as a JWKS publishes it."""
    jwk = key.as_dict(private=False)
    return {
        "kid": key.kid,
        "kty": jwk["kty"],
        "crv": jwk["crv"],
        "x": jwk["x"],
        "alg": PUBLISHED_ALGORITHM,
        "use": "sig",
    }


def _directory_fingerprint(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Identify the key files' current versions. Every write replaces a file,
    so a changed file has a new inode."""
    entries = []
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if not _is_key_file(entry.name):
                    continue
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                entries.append(
                    (entry.name, info.st_ino, info.st_mtime_ns, info.st_size)
                )
    except FileNotFoundError:
        return ()
    return tuple(sorted(entries))


class SigningKeys:
    """The current and retired signing keys of one data directory.

    The current key is loaded, or created, on construction. Afterwards the
    directory is checked for changes at most every ``reload_interval``
    seconds while the keys are in use, so a rotation by another process is
    picked up without a restart.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        max_token_lifetime: int = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
        reload_interval: float = RELOAD_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_token_lifetime < 1:
            raise ValueError(
                f"max_token_lifetime must be at least 1, got {max_token_lifetime}"
            )
        self.data_dir = data_dir
        self.directory = keys_directory(data_dir)
        self.max_token_lifetime = max_token_lifetime
        self._reload_interval = reload_interval
        self._clock = clock

        self._current = load_or_create_signing_key(data_dir)
        self._current_public = VerificationKey(key=_public(self._current))
        self._retired = _read_retired_keys(self.directory)
        self._fingerprint = _directory_fingerprint(self.directory)
        self._checked_at = clock()

    def current(self) -> OKPKey:
        """Return the current private key, after checking for a rotation."""
        self._reload_if_due()
        return self._current

    def find(self, kid: str) -> VerificationKey | None:
        """Return the public key named ``kid``, current or retired, or None.

        A retired key is returned even when its time has passed, and
        ``VerificationKey.verifies_at`` returns whether it still verifies.
        """
        self._reload_if_due()
        if kid == self._current.kid:
            return self._current_public
        return self._retired.get(kid)

    def published_keys(self, timestamp: int) -> list[OKPKey]:
        """Return the public current key and every retired key that still
        verifies at ``timestamp`` (seconds since the epoch), current first."""
        self._reload_if_due()
        keys = [self._current_public.key]
        keys.extend(
            retired.key
            for kid, retired in self._retired.items()
            if kid != self._current.kid
            and retired.verifies_at(timestamp, self.max_token_lifetime)
        )
        return keys

    def _reload_if_due(self) -> None:
        now = self._clock()
        if now - self._checked_at < self._reload_interval:
            return
        self._checked_at = now
        fingerprint = _directory_fingerprint(self.directory)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        self._reload()

    def _reload(self) -> None:
        # A missing or broken current key file keeps the keys in memory, so
        # a mistake on disk does not stop a running server from verifying.
        path = signing_key_path(self.data_dir)
        try:
            current = _read_signing_key(path)
        except FileNotFoundError:
            logger.warning(
                "Signing key %s is missing; still signing with kid %s until it "
                "is restored",
                path,
                self._current.kid,
            )
            return
        except SigningKeyError as error:
            logger.warning("%s; still signing with kid %s", error, self._current.kid)
            return
        if current.kid != self._current.kid:
            logger.info(
                "Signing key in %s changed from kid %s to kid %s",
                self.directory,
                self._current.kid,
                current.kid,
            )
        self._current = current
        self._current_public = VerificationKey(key=_public(current))
        self._retired = _read_retired_keys(self.directory)


def _public(key: OKPKey) -> OKPKey:
    return OKPKey.import_key(key.as_dict(private=False))
