"""Signing key rotation, retired keys and the key ring that follows them."""

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fernd.auth.signing_keys import (
    DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS,
    RELOAD_INTERVAL_SECONDS,
    SigningKeyError,
    SigningKeys,
    keys_directory,
    max_token_lifetime,
    public_jwk,
    rotate_signing_key,
    signing_key_path,
)
from fernd.auth.tokens import AuthenticationError, LocalTokenIssuer, TokenVerifier
from fernd.cli import main
from fernd.storage.shared_db import SharedDatabase

# joserfc warns that the name "EdDSA" is deprecated; fernd signs with it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning"
)

NOW = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
LIFETIME_SECONDS = 3600
LEEWAY_SECONDS = 30
TTL_SECONDS = 600


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(data_dir: Path, clock: FakeClock) -> LocalTokenIssuer:
    issuer = LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    # A key ring on the fake clock, so tests decide when it reloads.
    issuer.keys = SigningKeys(
        data_dir, max_token_lifetime=LIFETIME_SECONDS, clock=clock
    )
    return issuer


@pytest.fixture
def verifier(issuer: LocalTokenIssuer) -> TokenVerifier:
    return TokenVerifier(issuer, leeway_seconds=LEEWAY_SECONDS)


def rotate(data_dir: Path, now: datetime = NOW) -> str | None:
    """Rotate at `now`; return the retired kid."""
    result = rotate_signing_key(
        data_dir,
        max_token_lifetime=LIFETIME_SECONDS,
        leeway_seconds=LEEWAY_SECONDS,
        now=now,
    )
    return result.retired_kid


def retired_files(data_dir: Path) -> list[str]:
    return sorted(
        name
        for name in os.listdir(keys_directory(data_dir))
        if name.startswith("retired-")
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- max_token_lifetime -------------------------------------------------------


def test_max_token_lifetime_takes_longer_token_lifetime() -> None:
    assert max_token_lifetime(86400) == 86400


def test_max_token_lifetime_takes_access_token_lifetime() -> None:
    assert max_token_lifetime(60) == DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS


def test_max_token_lifetime_access_lifetime_is_parameter() -> None:
    assert max_token_lifetime(60, access_token_lifetime=7200) == 7200


# --- rotation on disk ---------------------------------------------------------


def test_rotate_replaces_current_key(issuer: LocalTokenIssuer, data_dir: Path) -> None:
    old_kid = issuer.key_id
    assert rotate(data_dir) == old_kid
    new_key = json.loads(signing_key_path(data_dir).read_text())
    assert new_key["kid"] != old_kid
    assert "d" in new_key


def test_rotate_keeps_retired_key_public_only(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    old_kid = issuer.key_id
    rotate(data_dir)
    [name] = retired_files(data_dir)
    record = json.loads((keys_directory(data_dir) / name).read_text())
    assert record["retired_at"] == int(NOW.timestamp())
    assert record["key"]["kid"] == old_kid
    assert "d" not in record["key"]


def test_rotate_file_modes(issuer: LocalTokenIssuer, data_dir: Path) -> None:
    rotate(data_dir)
    directory = keys_directory(data_dir)
    assert mode(directory) == 0o700
    assert mode(signing_key_path(data_dir)) == 0o600
    for name in retired_files(data_dir):
        assert mode(directory / name) == 0o600


def test_rotate_leaves_no_temporary_files(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    rotate(data_dir)
    names = os.listdir(keys_directory(data_dir))
    assert len(names) == 2
    assert "signing-key.json" in names


def test_rotate_creates_first_key(data_dir: Path) -> None:
    data_dir.mkdir()
    assert rotate(data_dir) is None
    assert signing_key_path(data_dir).exists()
    assert mode(keys_directory(data_dir)) == 0o700
    assert mode(signing_key_path(data_dir)) == 0o600
    assert retired_files(data_dir) == []


def test_rotate_invalid_current_key_rejected(data_dir: Path) -> None:
    path = signing_key_path(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.raises(SigningKeyError, match="not a valid JWK"):
        rotate(data_dir)
    assert path.read_text() == "{}"


def test_rotate_deletes_expired_retired_keys(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    first_kid = rotate(data_dir, NOW)
    later = NOW + timedelta(seconds=LIFETIME_SECONDS + LEEWAY_SECONDS + 1)
    second_kid = rotate(data_dir, later)
    kids = [
        json.loads((keys_directory(data_dir) / name).read_text())["key"]["kid"]
        for name in retired_files(data_dir)
    ]
    assert kids == [second_kid]
    assert first_kid not in kids


def test_rotate_keeps_retired_keys_within_lifetime(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    rotate(data_dir, NOW)
    rotate(data_dir, NOW + timedelta(seconds=LIFETIME_SECONDS + LEEWAY_SECONDS))
    assert len(retired_files(data_dir)) == 2


def test_rotate_concurrently_retires_every_key(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    thread_count = 4
    barrier = threading.Barrier(thread_count)
    retired: list[str | None] = []

    def run() -> None:
        barrier.wait()
        retired.append(rotate(data_dir))

    threads = [threading.Thread(target=run) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Each rotation retired the key the previous one made.
    assert len(set(retired)) == thread_count
    assert len(retired_files(data_dir)) == thread_count
    current = json.loads(signing_key_path(data_dir).read_text())["kid"]
    assert current not in retired


# --- verification across a rotation ------------------------------------------


def test_old_token_verifies_after_rotation(
    issuer: LocalTokenIssuer, verifier: TokenVerifier, data_dir: Path
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    rotate(data_dir, NOW)
    restarted = TokenVerifier(LocalTokenIssuer(data_dir), leeway_seconds=30)
    assert restarted.verify(token, now=NOW).user.user_id == "user-1"


def test_old_token_verifies_until_retirement_plus_lifetime(
    data_dir: Path,
) -> None:
    issuer = LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    # A token whose own exp is later than the key's retention.
    token = issuer.issue("user-1", ttl_seconds=10 * LIFETIME_SECONDS, now=NOW)
    rotate(data_dir, NOW)
    verifier = TokenVerifier(
        LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS),
        leeway_seconds=LEEWAY_SECONDS,
    )
    last = NOW + timedelta(seconds=LIFETIME_SECONDS + LEEWAY_SECONDS)
    assert verifier.verify(token, now=last).user.user_id == "user-1"


def test_old_token_rejected_after_retirement_plus_lifetime(data_dir: Path) -> None:
    issuer = LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    token = issuer.issue("user-1", ttl_seconds=10 * LIFETIME_SECONDS, now=NOW)
    rotate(data_dir, NOW)
    verifier = TokenVerifier(
        LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS),
        leeway_seconds=LEEWAY_SECONDS,
    )
    after = NOW + timedelta(seconds=LIFETIME_SECONDS + LEEWAY_SECONDS + 1)
    with pytest.raises(AuthenticationError, match="retired key"):
        verifier.verify(token, now=after)


def test_old_token_rejected_once_rotate_deleted_key(data_dir: Path) -> None:
    issuer = LocalTokenIssuer(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    token = issuer.issue("user-1", ttl_seconds=10 * LIFETIME_SECONDS, now=NOW)
    rotate(data_dir, NOW)
    after = NOW + timedelta(seconds=LIFETIME_SECONDS + LEEWAY_SECONDS + 1)
    rotate(data_dir, after)
    verifier = TokenVerifier(LocalTokenIssuer(data_dir), leeway_seconds=30)
    with pytest.raises(AuthenticationError, match="unknown key"):
        verifier.verify(token, now=NOW)


def test_new_token_signed_with_new_key(
    issuer: LocalTokenIssuer, data_dir: Path, clock: FakeClock
) -> None:
    old_kid = issuer.key_id
    rotate(data_dir)
    clock.advance(RELOAD_INTERVAL_SECONDS)
    assert issuer.key_id != old_kid
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    restarted = TokenVerifier(LocalTokenIssuer(data_dir))
    assert restarted.verify(token, now=NOW).user.user_id == "user-1"


# --- a running key ring -------------------------------------------------------


def test_running_issuer_keeps_key_before_reload_interval(
    issuer: LocalTokenIssuer, data_dir: Path, clock: FakeClock
) -> None:
    old_kid = issuer.key_id
    rotate(data_dir)
    clock.advance(RELOAD_INTERVAL_SECONDS / 2)
    assert issuer.key_id == old_kid


def test_running_verifier_accepts_new_key_after_reload(
    issuer: LocalTokenIssuer,
    verifier: TokenVerifier,
    data_dir: Path,
    clock: FakeClock,
) -> None:
    rotate(data_dir)
    # Another process, such as `fernd token`, signs with the new key.
    token = LocalTokenIssuer(data_dir).issue("user-1", ttl_seconds=60, now=NOW)
    clock.advance(RELOAD_INTERVAL_SECONDS)
    assert verifier.verify(token, now=NOW).user.user_id == "user-1"


def test_running_verifier_rejects_new_key_before_reload(
    issuer: LocalTokenIssuer,
    verifier: TokenVerifier,
    data_dir: Path,
) -> None:
    rotate(data_dir)
    token = LocalTokenIssuer(data_dir).issue("user-1", ttl_seconds=60, now=NOW)
    with pytest.raises(AuthenticationError, match="unknown key"):
        verifier.verify(token, now=NOW)


def test_running_verifier_keeps_old_key_after_reload(
    issuer: LocalTokenIssuer,
    verifier: TokenVerifier,
    data_dir: Path,
    clock: FakeClock,
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    rotate(data_dir)
    clock.advance(RELOAD_INTERVAL_SECONDS)
    assert verifier.verify(token, now=NOW).user.user_id == "user-1"


def test_running_key_ring_keeps_key_when_file_deleted(
    issuer: LocalTokenIssuer,
    data_dir: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kid = issuer.key_id
    signing_key_path(data_dir).unlink()
    clock.advance(RELOAD_INTERVAL_SECONDS)
    with caplog.at_level(logging.WARNING, logger="fernd.auth.signing_keys"):
        assert issuer.key_id == kid
    assert "is missing" in caplog.text


def test_invalid_retired_key_file_skipped(
    issuer: LocalTokenIssuer,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rotate(data_dir)
    broken = keys_directory(data_dir) / "retired-broken.json"
    broken.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="fernd.auth.signing_keys"):
        keys = SigningKeys(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    assert len(keys.published_keys(int(NOW.timestamp()))) == 2
    assert "retired-broken.json" in caplog.text


# --- published keys -----------------------------------------------------------


def test_published_keys_current_first(issuer: LocalTokenIssuer, data_dir: Path) -> None:
    old_kid = issuer.key_id
    rotate(data_dir, NOW)
    keys = SigningKeys(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    kids = [key.kid for key in keys.published_keys(int(NOW.timestamp()))]
    assert kids[1] == old_kid
    assert kids[0] == json.loads(signing_key_path(data_dir).read_text())["kid"]


def test_published_keys_leave_out_expired_key(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    rotate(data_dir, NOW)
    keys = SigningKeys(data_dir, max_token_lifetime=LIFETIME_SECONDS)
    after = int(NOW.timestamp()) + LIFETIME_SECONDS + 1
    assert len(keys.published_keys(after)) == 1


def test_published_keys_are_public(issuer: LocalTokenIssuer) -> None:
    for key in issuer.keys.published_keys(int(NOW.timestamp())):
        assert not key.is_private


def test_public_jwk_shape(issuer: LocalTokenIssuer) -> None:
    jwk = public_jwk(issuer.public_key)
    assert set(jwk) == {"kid", "kty", "crv", "x", "alg", "use"}
    assert jwk["kid"] == issuer.key_id
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert jwk["use"] == "sig"


# --- fernd admin rotate-signing-key -----------------------------------------


def test_rotate_command_prints_kids(
    issuer: LocalTokenIssuer,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    SharedDatabase.open(data_dir, "FULL").close()
    old_kid = issuer.key_id
    status = main(["admin", "rotate-signing-key", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    new_kid = json.loads(signing_key_path(data_dir).read_text())["kid"]
    assert status == 0
    assert f"New signing key {new_kid}" in out
    assert f"Retired key {old_kid} verifies tokens until" in out


def test_rotate_command_refuses_directory_without_database(
    issuer: LocalTokenIssuer,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = signing_key_path(data_dir).read_text()

    status = main(["admin", "rotate-signing-key", "--data-dir", str(data_dir)])

    assert status == 2
    assert "fernd.db is missing" in capsys.readouterr().err
    assert signing_key_path(data_dir).read_text() == before


def test_rotate_command_missing_data_dir_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "absent"
    status = main(["admin", "rotate-signing-key", "--data-dir", str(missing)])
    err = capsys.readouterr().err
    assert status == 2
    assert "No fernd data directory" in err
    assert not missing.exists()
