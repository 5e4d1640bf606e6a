"""The installation signing key, LocalTokenIssuer, TokenVerifier, and
MultiIssuerVerifier with external issuers whose keys come from a JWKS file."""

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from fernd.auth.jwks import (
    UNKNOWN_KID_REFRESH_INTERVAL_SECONDS,
    JwksError,
    display_source,
    parse_jwks,
)
from fernd.auth.settings import IssuerSettings
from fernd.auth.tokens import (
    AuthenticationError,
    LocalTokenIssuer,
    SigningKeyError,
    TokenVerifier,
    VerifiedToken,
    bearer_token,
    load_or_create_signing_key,
    signing_key_path,
)
from fernd.auth.verifier import MultiIssuerVerifier

# joserfc warns that the name "EdDSA" is deprecated; the tests sign with it
# on purpose, exactly as fernd does.
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning"
)

NOW = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
TTL_SECONDS = 3600
LEEWAY_SECONDS = 30


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def issuer(data_dir: Path) -> LocalTokenIssuer:
    return LocalTokenIssuer(data_dir)


@pytest.fixture
def verifier(issuer: LocalTokenIssuer) -> TokenVerifier:
    return TokenVerifier(
        issuer, leeway_seconds=LEEWAY_SECONDS, admin_user_ids=frozenset({"admin-1"})
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode("utf-8"))


def decode_segment(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return result


def valid_claims(**changes: Any) -> dict[str, Any]:
    issued_at = int(NOW.timestamp())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "iss": "fernd",
        "iat": issued_at,
        "exp": issued_at + TTL_SECONDS,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def sign(data_dir: Path, claims: dict[str, Any], **header: Any) -> str:
    """Sign claims with the installation key, as an attacker with the key could."""
    key = load_or_create_signing_key(data_dir)
    full_header = {"alg": "EdDSA", "kid": key.kid, **header}
    return jwt.encode(full_header, claims, key, algorithms=["EdDSA"])


def assert_rejected(verifier: TokenVerifier, token: str, now: datetime = NOW) -> str:
    with pytest.raises(AuthenticationError) as raised:
        verifier.verify(token, now=now)
    message = str(raised.value)
    if token:
        assert token not in message
    return message


# --- signing key file -------------------------------------------------------


def test_signing_key_created_with_private_modes(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    path = signing_key_path(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_signing_key_file_is_ed25519_jwk_with_kid(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    jwk = json.loads(signing_key_path(data_dir).read_text())
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert "d" in jwk
    assert jwk["kid"] == issuer.key_id


def test_signing_key_leaves_no_temporary_files(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    assert os.listdir(signing_key_path(data_dir).parent) == ["signing-key.json"]


def test_signing_key_reused_by_next_issuer(
    issuer: LocalTokenIssuer, data_dir: Path
) -> None:
    before = signing_key_path(data_dir).read_bytes()
    second = LocalTokenIssuer(data_dir)
    assert second.key_id == issuer.key_id
    assert signing_key_path(data_dir).read_bytes() == before


def test_verify_after_issuer_restart(issuer: LocalTokenIssuer, data_dir: Path) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    restarted = TokenVerifier(LocalTokenIssuer(data_dir))
    assert restarted.verify(token, now=NOW).user.user_id == "user-1"


def test_signing_key_created_once_concurrently(data_dir: Path) -> None:
    thread_count = 8
    barrier = threading.Barrier(thread_count)
    kids: list[str | None] = []

    def create() -> None:
        barrier.wait()
        kids.append(load_or_create_signing_key(data_dir).kid)

    threads = [threading.Thread(target=create) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(kids) == thread_count
    assert len(set(kids)) == 1
    assert os.listdir(signing_key_path(data_dir).parent) == ["signing-key.json"]


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"kty": "OKP"}',
    ],
)
def test_signing_key_invalid_file_rejected(data_dir: Path, content: str) -> None:
    path = signing_key_path(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(SigningKeyError, match="not a valid JWK") as raised:
        LocalTokenIssuer(data_dir)
    assert str(path) in str(raised.value)


def test_signing_key_without_kid_rejected(data_dir: Path) -> None:
    path = signing_key_path(data_dir)
    path.parent.mkdir(parents=True)
    key = OKPKey.generate_key("Ed25519")
    path.write_text(json.dumps(key.as_dict(private=True)))
    with pytest.raises(SigningKeyError, match="has no kid"):
        LocalTokenIssuer(data_dir)


def test_signing_key_public_only_rejected(data_dir: Path) -> None:
    path = signing_key_path(data_dir)
    path.parent.mkdir(parents=True)
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    path.write_text(json.dumps(key.as_dict(private=False)))
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key"):
        LocalTokenIssuer(data_dir)


def test_signing_key_other_curve_rejected(data_dir: Path) -> None:
    path = signing_key_path(data_dir)
    path.parent.mkdir(parents=True)
    key = OKPKey.generate_key("X25519", auto_kid=True)
    path.write_text(json.dumps(key.as_dict(private=True)))
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key"):
        LocalTokenIssuer(data_dir)


def test_signing_key_readable_by_others_logged(
    issuer: LocalTokenIssuer, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signing_key_path(data_dir).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fernd.auth.tokens"):
        LocalTokenIssuer(data_dir)
    assert "chmod 600" in caplog.text


def test_issuer_internal_name_rejected(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        LocalTokenIssuer(data_dir, issuer="internal")


# --- issue and verify -------------------------------------------------------


def test_issue_header_names_algorithm_and_kid(issuer: LocalTokenIssuer) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    header = decode_segment(token.split(".")[0])
    assert header["alg"] == "EdDSA"
    assert header["kid"] == issuer.key_id


def test_issue_claims(issuer: LocalTokenIssuer) -> None:
    token = issuer.issue("user-1", name="Ann Lee", ttl_seconds=TTL_SECONDS, now=NOW)
    claims = decode_segment(token.split(".")[1])
    assert claims == {
        "sub": "user-1",
        "iss": "fernd",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + TTL_SECONDS,
        "name": "Ann Lee",
    }


def test_issue_custom_issuer_name(data_dir: Path) -> None:
    issuer = LocalTokenIssuer(data_dir, issuer="https://fern.example.com")
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    verified = TokenVerifier(issuer).verify(token, now=NOW)
    assert verified.user.issuer == "https://fern.example.com"


def test_token_round_trip(issuer: LocalTokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(
        "user-1",
        name="Ann Lee",
        first_name="Ann",
        last_name="Lee",
        email="ann@example.com",
        phone_number="+447700900123",
        ttl_seconds=TTL_SECONDS,
        now=NOW,
    )
    verified = verifier.verify(token, now=NOW)
    assert verified.user.user_id == "user-1"
    assert verified.user.issuer == "fernd"
    assert verified.user.name == "Ann Lee"
    assert verified.user.first_name == "Ann"
    assert verified.user.last_name == "Lee"
    assert verified.user.email == "ann@example.com"
    assert verified.user.phone_number == "+447700900123"
    assert verified.expires_at == NOW + timedelta(seconds=TTL_SECONDS)
    assert verified.is_admin is False


def test_verify_without_now_uses_current_time(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS)
    assert isinstance(verifier.verify(token), VerifiedToken)


def test_verify_marks_configured_admin(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("admin-1", ttl_seconds=TTL_SECONDS, now=NOW)
    assert verifier.verify(token, now=NOW).is_admin is True


def test_issue_zero_ttl_rejected(issuer: LocalTokenIssuer) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        issuer.issue("user-1", ttl_seconds=0, now=NOW)


def test_issue_empty_user_id_rejected(issuer: LocalTokenIssuer) -> None:
    with pytest.raises(ValueError, match="user_id"):
        issuer.issue("", ttl_seconds=TTL_SECONDS, now=NOW)


def test_issue_naive_now_rejected(issuer: LocalTokenIssuer) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=datetime(2024, 5, 1))


def test_verifier_negative_leeway_rejected(issuer: LocalTokenIssuer) -> None:
    with pytest.raises(ValueError, match="leeway_seconds"):
        TokenVerifier(issuer, leeway_seconds=-1)


# --- rejections -------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", "é.é.é", "..", "a.b.c.d.e"],
)
def test_verify_malformed_token_rejected(verifier: TokenVerifier, token: str) -> None:
    assert_rejected(verifier, token)


def test_verify_non_json_payload_rejected(
    verifier: TokenVerifier, data_dir: Path
) -> None:
    token = sign(data_dir, valid_claims())
    header, _, signature = token.split(".")
    assert_rejected(verifier, f"{header}.{b64url(b'not json')}.{signature}")


def test_verify_tampered_payload_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    header, payload, signature = token.split(".")
    claims = decode_segment(payload)
    claims["sub"] = "admin-1"
    message = assert_rejected(verifier, f"{header}.{b64url_json(claims)}.{signature}")
    assert "signature" in message


def test_verify_other_installation_key_rejected(
    verifier: TokenVerifier, issuer: LocalTokenIssuer, tmp_path: Path
) -> None:
    # Another installation's key, presented under this installation's kid.
    other = load_or_create_signing_key(tmp_path / "other")
    token = jwt.encode(
        {"alg": "EdDSA", "kid": issuer.key_id},
        valid_claims(),
        other,
        algorithms=["EdDSA"],
    )
    assert "signature" in assert_rejected(verifier, token)


def test_verify_unknown_kid_rejected(verifier: TokenVerifier, data_dir: Path) -> None:
    token = sign(data_dir, valid_claims(), kid="another-key")
    assert "unknown key" in assert_rejected(verifier, token)


def test_verify_missing_kid_rejected(verifier: TokenVerifier, data_dir: Path) -> None:
    key = load_or_create_signing_key(data_dir)
    token = jwt.encode({"alg": "EdDSA"}, valid_claims(), key, algorithms=["EdDSA"])
    assert_rejected(verifier, token)


def test_verify_hs256_with_raw_public_key_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    encoded_public_key = issuer.public_key.as_dict()["x"]
    assert isinstance(encoded_public_key, str)
    raw_public_key = base64.urlsafe_b64decode(encoded_public_key + "=")
    secret = OctKey.import_key(raw_public_key)
    token = jwt.encode(
        {"alg": "HS256", "kid": issuer.key_id},
        valid_claims(),
        secret,
        algorithms=["HS256"],
    )
    assert "algorithm" in assert_rejected(verifier, token)


def test_verify_hs256_with_pem_public_key_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    # joserfc refuses a PEM public key as an HMAC secret, so sign by hand.
    pem = issuer.public_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url_json({"alg": "HS256", "typ": "JWT", "kid": issuer.key_id})
    signing_input = f"{header}.{b64url_json(valid_claims())}"
    mac = hmac.new(pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    assert "algorithm" in assert_rejected(verifier, f"{signing_input}.{b64url(mac)}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_verify_alg_none_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier, alg: str
) -> None:
    header = b64url_json({"alg": alg, "typ": "JWT", "kid": issuer.key_id})
    unsigned = f"{header}.{b64url_json(valid_claims())}."
    assert_rejected(verifier, unsigned)


def test_verify_alg_none_with_stolen_signature_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    _, payload, signature = token.split(".")
    header = b64url_json({"alg": "none", "typ": "JWT", "kid": issuer.key_id})
    assert_rejected(verifier, f"{header}.{payload}.{signature}")


def test_verify_wrong_issuer_rejected(verifier: TokenVerifier, data_dir: Path) -> None:
    token = sign(data_dir, valid_claims(iss="https://evil.example.com"))
    assert "iss" in assert_rejected(verifier, token)


def test_verify_missing_issuer_rejected(
    verifier: TokenVerifier, data_dir: Path
) -> None:
    token = sign(data_dir, valid_claims(iss=None))
    assert "iss" in assert_rejected(verifier, token)


def test_verify_internal_issuer_rejected(
    verifier: TokenVerifier, data_dir: Path
) -> None:
    token = sign(
        data_dir,
        valid_claims(sub="fern-labour-internal-process-manager", iss="internal"),
    )
    assert "internal" in assert_rejected(verifier, token)


def test_verify_missing_exp_rejected(verifier: TokenVerifier, data_dir: Path) -> None:
    token = sign(data_dir, valid_claims(exp=None))
    assert "exp" in assert_rejected(verifier, token)


@pytest.mark.parametrize("exp", ["tomorrow", True, 1e300])
def test_verify_invalid_exp_rejected(
    verifier: TokenVerifier, data_dir: Path, exp: Any
) -> None:
    token = sign(data_dir, valid_claims(exp=exp))
    assert_rejected(verifier, token)


def test_verify_expired_beyond_leeway_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    later = NOW + timedelta(seconds=TTL_SECONDS + LEEWAY_SECONDS + 1)
    assert "expired" in assert_rejected(verifier, token, now=later)


def test_verify_expired_at_leeway_boundary_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    later = NOW + timedelta(seconds=TTL_SECONDS + LEEWAY_SECONDS)
    assert "expired" in assert_rejected(verifier, token, now=later)


def test_verify_expired_within_leeway_accepted(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    later = NOW + timedelta(seconds=TTL_SECONDS + LEEWAY_SECONDS - 1)
    assert verifier.verify(token, now=later).user.user_id == "user-1"


def test_verify_zero_leeway_rejects_at_exp(issuer: LocalTokenIssuer) -> None:
    strict = TokenVerifier(issuer, leeway_seconds=0)
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    assert_rejected(strict, token, now=NOW + timedelta(seconds=TTL_SECONDS))


def test_verify_nbf_beyond_leeway_rejected(
    verifier: TokenVerifier, data_dir: Path
) -> None:
    not_before = int(NOW.timestamp()) + LEEWAY_SECONDS + 1
    token = sign(data_dir, valid_claims(nbf=not_before))
    assert "nbf" in assert_rejected(verifier, token)


def test_verify_nbf_within_leeway_accepted(
    verifier: TokenVerifier, data_dir: Path
) -> None:
    token = sign(data_dir, valid_claims(nbf=int(NOW.timestamp()) + LEEWAY_SECONDS))
    assert verifier.verify(token, now=NOW).user.user_id == "user-1"


def test_verify_iat_in_future_rejected(verifier: TokenVerifier, data_dir: Path) -> None:
    issued_at = int(NOW.timestamp()) + LEEWAY_SECONDS + 1
    token = sign(data_dir, valid_claims(iat=issued_at))
    assert "iat" in assert_rejected(verifier, token)


@pytest.mark.parametrize("sub", [None, "", 42])
def test_verify_missing_or_invalid_sub_rejected(
    verifier: TokenVerifier, data_dir: Path, sub: Any
) -> None:
    token = sign(data_dir, valid_claims(sub=sub))
    assert "sub" in assert_rejected(verifier, token)


def test_verify_naive_now_rejected(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        verifier.verify(token, now=datetime(2024, 5, 1, 10))


def test_verify_profile_claims_mapped(verifier: TokenVerifier, data_dir: Path) -> None:
    claims = valid_claims(given_name="Ann", family_name="Lee", email_address="a@x.io")
    verified = verifier.verify(sign(data_dir, claims), now=NOW)
    assert verified.user.name == "Ann Lee"
    assert verified.user.email == "a@x.io"


def test_verify_failure_not_logged_with_token(
    issuer: LocalTokenIssuer,
    verifier: TokenVerifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    with caplog.at_level(logging.DEBUG):
        assert_rejected(verifier, token, now=NOW + timedelta(days=1))
    assert token not in caplog.text


def test_authentication_error_has_no_cause(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    # A chained library error could carry token text into a logged traceback.
    with pytest.raises(AuthenticationError) as raised:
        verifier.verify("not-a-token", now=NOW)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True


# --- bearer_token -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER abc.def.ghi", "abc.def.ghi"),
        ("  Bearer   abc.def.ghi  ", "abc.def.ghi"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearerabc.def.ghi", None),
        ("Bearer abc def", None),
        ("abc.def.ghi", None),
    ],
)
def test_bearer_token_parsing(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


# --- admin claim --------------------------------------------------------------


def test_issue_admin_sets_admin_claim(issuer: LocalTokenIssuer) -> None:
    token = issuer.issue("user-1", admin=True, ttl_seconds=TTL_SECONDS, now=NOW)
    assert decode_segment(token.split(".")[1])["fernd_admin"] is True


def test_issue_without_admin_has_no_admin_claim(issuer: LocalTokenIssuer) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    assert "fernd_admin" not in decode_segment(token.split(".")[1])


def test_verify_admin_claim_marks_admin(
    issuer: LocalTokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue("user-1", admin=True, ttl_seconds=TTL_SECONDS, now=NOW)
    assert verifier.verify(token, now=NOW).is_admin is True


@pytest.mark.parametrize("value", ["true", 1, False, None, {"admin": True}])
def test_verify_admin_claim_other_than_true_not_admin(
    data_dir: Path, verifier: TokenVerifier, value: Any
) -> None:
    claims = valid_claims()
    claims["fernd_admin"] = value
    token = sign(data_dir, claims)
    assert verifier.verify(token, now=NOW).is_admin is False


def test_verify_admin_claim_from_other_key_rejected(
    tmp_path: Path, verifier: TokenVerifier
) -> None:
    other = LocalTokenIssuer(tmp_path / "other")
    token = other.issue("user-1", admin=True, ttl_seconds=TTL_SECONDS, now=NOW)
    assert_rejected(verifier, token)


# --- external issuers ---------------------------------------------------------

EXTERNAL_ISSUER = "https://id.example.org/"
AUDIENCE = "fernd"
# Generated once: an RSA key takes a noticeable time to generate.
PROVIDER_RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
PROVIDER_EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
with warnings.catch_warnings():
    # joserfc warns about the short key this test makes on purpose.
    warnings.simplefilter("ignore", SecurityWarning)
    SHORT_RSA_KEY = RSAKey.generate_key(1024, parameters={"kid": "rsa-1"})


def write_jwks(path: Path, *keys: Key, extra: list[dict[str, Any]] = ()) -> Path:
    """Write a JWKS with the public parts of `keys`, plus `extra` entries."""
    entries = [key.as_dict(private=False) for key in keys] + list(extra)
    path.write_text(json.dumps({"keys": entries}))
    return path


def external_claims(**changes: Any) -> dict[str, Any]:
    issued_at = int(NOW.timestamp())
    claims: dict[str, Any] = {
        "sub": "ext-user-1",
        "iss": EXTERNAL_ISSUER,
        "aud": AUDIENCE,
        "iat": issued_at,
        "exp": issued_at + TTL_SECONDS,
        "given_name": "Ann",
        "family_name": "Lee",
        "email": "ann@example.org",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def external_token(
    key: Key, alg: str, claims: dict[str, Any] | None = None, **header: Any
) -> str:
    full_header = {"alg": alg, "kid": key.kid, **header}
    full_header = {name: value for name, value in full_header.items() if value}
    return jwt.encode(full_header, claims or external_claims(), key, algorithms=[alg])


@pytest.fixture
def jwks_path(tmp_path: Path) -> Path:
    return write_jwks(tmp_path / "jwks.json", PROVIDER_RSA_KEY, PROVIDER_EC_KEY)


def issuer_settings(jwks_path: Path, **changes: Any) -> IssuerSettings:
    values: dict[str, Any] = {
        "issuer": EXTERNAL_ISSUER,
        "audience": AUDIENCE,
        "jwks_file": str(jwks_path),
        "algorithms": ("RS256", "ES256"),
    }
    values.update(changes)
    return IssuerSettings(**values)


@pytest.fixture
def multi(issuer: LocalTokenIssuer, jwks_path: Path) -> MultiIssuerVerifier:
    return MultiIssuerVerifier(
        issuer,
        [issuer_settings(jwks_path)],
        leeway_seconds=LEEWAY_SECONDS,
        admin_user_ids=frozenset({"admin-1"}),
    )


async def assert_multi_rejected(
    verifier: MultiIssuerVerifier, token: str, now: datetime = NOW
) -> str:
    with pytest.raises(AuthenticationError) as raised:
        await verifier.verify(token, now=now)
    message = str(raised.value)
    assert token not in message
    return message


@pytest.mark.parametrize(
    ("key", "alg"), [(PROVIDER_RSA_KEY, "RS256"), (PROVIDER_EC_KEY, "ES256")]
)
async def test_external_token_verified(
    multi: MultiIssuerVerifier, key: Key, alg: str
) -> None:
    verified = await multi.verify(external_token(key, alg), now=NOW)
    assert verified.user.user_id == "ext-user-1"
    assert verified.user.issuer == EXTERNAL_ISSUER
    assert verified.user.name == "Ann Lee"
    assert verified.user.email == "ann@example.org"
    assert verified.expires_at == NOW + timedelta(seconds=TTL_SECONDS)
    assert verified.is_admin is False


async def test_external_audience_list_accepted(multi: MultiIssuerVerifier) -> None:
    claims = external_claims(aud=["other", AUDIENCE])
    token = external_token(PROVIDER_RSA_KEY, "RS256", claims)
    assert (await multi.verify(token, now=NOW)).user.user_id == "ext-user-1"


async def test_external_token_without_kid_verified(
    issuer: LocalTokenIssuer, tmp_path: Path
) -> None:
    path = write_jwks(tmp_path / "one.json", PROVIDER_EC_KEY)
    verifier = MultiIssuerVerifier(issuer, [issuer_settings(path)])
    token = external_token(PROVIDER_EC_KEY, "ES256", kid=None)
    assert (await verifier.verify(token, now=NOW)).user.user_id == "ext-user-1"


async def test_external_admin_claim_ignored(multi: MultiIssuerVerifier) -> None:
    claims = external_claims(fernd_admin=True)
    token = external_token(PROVIDER_RSA_KEY, "RS256", claims)
    assert (await multi.verify(token, now=NOW)).is_admin is False


async def test_external_admin_user_id_marks_admin(multi: MultiIssuerVerifier) -> None:
    token = external_token(PROVIDER_RSA_KEY, "RS256", external_claims(sub="admin-1"))
    assert (await multi.verify(token, now=NOW)).is_admin is True


async def test_external_claim_names_configured(
    issuer: LocalTokenIssuer, jwks_path: Path
) -> None:
    settings = issuer_settings(jwks_path, claims={"user_id": "oid", "email": "mail"})
    verifier = MultiIssuerVerifier(issuer, [settings])
    claims = external_claims(oid="object-7", mail="ann@corp.example")
    verified = await verifier.verify(
        external_token(PROVIDER_RSA_KEY, "RS256", claims), now=NOW
    )
    assert verified.user.user_id == "object-7"
    assert verified.user.email == "ann@corp.example"
    assert verified.user.first_name == "Ann"


async def test_external_configured_user_id_claim_missing_rejected(
    issuer: LocalTokenIssuer, jwks_path: Path
) -> None:
    verifier = MultiIssuerVerifier(
        issuer, [issuer_settings(jwks_path, claims={"user_id": "oid"})]
    )
    token = external_token(PROVIDER_RSA_KEY, "RS256")
    assert "user id" in await assert_multi_rejected(verifier, token)


async def test_local_token_verified_by_multi_verifier(
    issuer: LocalTokenIssuer, multi: MultiIssuerVerifier
) -> None:
    token = issuer.issue("user-1", admin=True, ttl_seconds=TTL_SECONDS, now=NOW)
    verified = await multi.verify(token, now=NOW)
    assert verified.user.issuer == "fernd"
    assert verified.is_admin is True


async def test_multi_verifier_naive_now_rejected(
    issuer: LocalTokenIssuer, multi: MultiIssuerVerifier
) -> None:
    token = issuer.issue("user-1", ttl_seconds=TTL_SECONDS, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        await multi.verify(token, now=datetime(2024, 5, 1, 10))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"iss": "https://evil.example.org/"}, "issuer is not accepted"),
        ({"iss": None}, "no iss"),
        ({"iss": ["https://id.example.org/"]}, "issuer is not accepted"),
        ({"iss": "internal"}, "internal"),
        ({"aud": None}, "aud"),
        ({"aud": "other"}, "aud"),
        ({"aud": ["other"]}, "aud"),
        ({"sub": None}, "sub"),
        ({"exp": None}, "exp"),
        ({"exp": int(NOW.timestamp()) - LEEWAY_SECONDS - 1}, "expired"),
        ({"nbf": int(NOW.timestamp()) + LEEWAY_SECONDS + 1}, "nbf"),
        ({"iat": int(NOW.timestamp()) + LEEWAY_SECONDS + 1}, "iat"),
    ],
)
async def test_external_claims_rejected(
    multi: MultiIssuerVerifier, changes: dict[str, Any], fragment: str
) -> None:
    claims = external_claims()
    claims.update(changes)
    claims = {key: value for key, value in claims.items() if value is not None}
    token = external_token(PROVIDER_RSA_KEY, "RS256", claims)
    assert fragment in await assert_multi_rejected(multi, token)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(NOW.timestamp()) - LEEWAY_SECONDS + 1},
        {"nbf": int(NOW.timestamp()) + LEEWAY_SECONDS},
        {"iat": int(NOW.timestamp()) + LEEWAY_SECONDS},
    ],
)
async def test_external_times_within_leeway_accepted(
    multi: MultiIssuerVerifier, changes: dict[str, Any]
) -> None:
    token = external_token(PROVIDER_RSA_KEY, "RS256", external_claims(**changes))
    assert (await multi.verify(token, now=NOW)).user.user_id == "ext-user-1"


async def test_external_algorithm_outside_list_rejected(
    multi: MultiIssuerVerifier,
) -> None:
    token = external_token(PROVIDER_RSA_KEY, "RS512")
    assert "algorithm" in await assert_multi_rejected(multi, token)


@pytest.mark.parametrize("alg", ["none", "None"])
async def test_external_alg_none_rejected(multi: MultiIssuerVerifier, alg: str) -> None:
    header = b64url_json({"alg": alg, "kid": PROVIDER_RSA_KEY.kid})
    await assert_multi_rejected(multi, f"{header}.{b64url_json(external_claims())}.")


async def test_external_hs256_with_pem_public_key_rejected(
    multi: MultiIssuerVerifier,
) -> None:
    pem = PROVIDER_RSA_KEY.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url_json({"alg": "HS256", "typ": "JWT", "kid": PROVIDER_RSA_KEY.kid})
    signing_input = f"{header}.{b64url_json(external_claims())}"
    mac = hmac.new(pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(mac)}"
    assert "algorithm" in await assert_multi_rejected(multi, token)


async def test_external_tampered_payload_rejected(multi: MultiIssuerVerifier) -> None:
    header, _, signature = external_token(PROVIDER_RSA_KEY, "RS256").split(".")
    payload = b64url_json(external_claims(sub="admin-1"))
    token = f"{header}.{payload}.{signature}"
    assert "signature" in await assert_multi_rejected(multi, token)


async def test_external_key_of_other_type_rejected(
    multi: MultiIssuerVerifier,
) -> None:
    # An ES256 token under the kid of the issuer's RSA key.
    token = external_token(PROVIDER_EC_KEY, "ES256", kid=PROVIDER_RSA_KEY.kid)
    assert "unknown key" in await assert_multi_rejected(multi, token)


async def test_external_key_as_local_issuer_rejected(
    multi: MultiIssuerVerifier,
) -> None:
    # A provider key cannot sign for fernd's own issuer.
    token = external_token(PROVIDER_RSA_KEY, "RS256", external_claims(iss="fernd"))
    assert "algorithm" in await assert_multi_rejected(multi, token)


async def test_local_key_as_external_issuer_rejected(
    data_dir: Path, multi: MultiIssuerVerifier
) -> None:
    token = sign(data_dir, external_claims())
    assert "algorithm" in await assert_multi_rejected(multi, token)


async def test_external_declared_alg_of_key_enforced(
    issuer: LocalTokenIssuer, tmp_path: Path
) -> None:
    entry = {**PROVIDER_RSA_KEY.as_dict(private=False), "alg": "RS384"}
    path = write_jwks(tmp_path / "alg.json", extra=[entry])
    verifier = MultiIssuerVerifier(issuer, [issuer_settings(path)])
    token = external_token(PROVIDER_RSA_KEY, "RS256")
    assert "unknown key" in await assert_multi_rejected(verifier, token)


@pytest.mark.parametrize(
    "entry",
    [
        {**PROVIDER_RSA_KEY.as_dict(private=False), "use": "enc"},
        OctKey.generate_key(256, parameters={"kid": "rsa-1"}).as_dict(private=True),
        SHORT_RSA_KEY.as_dict(private=False),
        {"kty": "RSA", "kid": "rsa-1"},
        "not a key",
    ],
    ids=["use_enc", "symmetric", "short_rsa", "incomplete", "not_object"],
)
async def test_external_unusable_jwks_entry_skipped(
    issuer: LocalTokenIssuer, tmp_path: Path, entry: Any
) -> None:
    path = write_jwks(tmp_path / "bad.json", PROVIDER_EC_KEY, extra=[entry])
    verifier = MultiIssuerVerifier(issuer, [issuer_settings(path)])
    good = external_token(PROVIDER_EC_KEY, "ES256")
    assert (await verifier.verify(good, now=NOW)).user.user_id == "ext-user-1"
    token = external_token(PROVIDER_RSA_KEY, "RS256")
    assert "unknown key" in await assert_multi_rejected(verifier, token)


async def test_external_unknown_kid_refreshes_keys(
    multi: MultiIssuerVerifier, jwks_path: Path
) -> None:
    # The server's background refresh loads the keys first.
    assert await multi.external[EXTERNAL_ISSUER].keys.refresh()
    assert await multi.verify(external_token(PROVIDER_EC_KEY, "ES256"), now=NOW)
    rotated = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
    write_jwks(jwks_path, rotated)
    verified = await multi.verify(external_token(rotated, "ES256"), now=NOW)
    assert verified.user.user_id == "ext-user-1"


async def test_external_unknown_kid_refresh_limited(
    multi: MultiIssuerVerifier, jwks_path: Path, autojump_clock: Any
) -> None:
    unknown = external_token(PROVIDER_EC_KEY, "ES256", kid="no-such-kid")
    assert "unknown key" in await assert_multi_rejected(multi, unknown)

    rotated = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
    write_jwks(jwks_path, rotated)
    token = external_token(rotated, "ES256")
    assert "unknown key" in await assert_multi_rejected(multi, token)

    await trio.sleep(UNKNOWN_KID_REFRESH_INTERVAL_SECONDS)
    assert (await multi.verify(token, now=NOW)).user.user_id == "ext-user-1"


async def test_external_failed_refresh_keeps_keys(
    multi: MultiIssuerVerifier,
    jwks_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = external_token(PROVIDER_RSA_KEY, "RS256")
    assert await multi.verify(token, now=NOW)
    jwks_path.write_text("<html>maintenance</html>")
    source = multi.external[EXTERNAL_ISSUER].keys
    with caplog.at_level(logging.WARNING, logger="fernd.auth.jwks"):
        assert await source.refresh() is False
    assert "keeping 2 cached keys" in caplog.text
    assert (await multi.verify(token, now=NOW)).user.user_id == "ext-user-1"


async def test_external_missing_jwks_file_logged(
    issuer: LocalTokenIssuer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = MultiIssuerVerifier(issuer, [issuer_settings(tmp_path / "absent")])
    token = external_token(PROVIDER_RSA_KEY, "RS256")
    with caplog.at_level(logging.WARNING, logger="fernd.auth.jwks"):
        assert "unknown key" in await assert_multi_rejected(verifier, token)
    assert "Cannot load the keys of issuer" in caplog.text
    assert token not in caplog.text


async def test_external_keys_refreshed_in_background(
    issuer: LocalTokenIssuer, jwks_path: Path
) -> None:
    verifier = MultiIssuerVerifier(issuer, [issuer_settings(jwks_path, jwks_max_age=1)])
    source = verifier.external[EXTERNAL_ISSUER].keys

    async def wait_for_kids(expected: list[str]) -> None:
        # The refresh reads the file in a worker thread, so the test polls.
        with trio.fail_after(10):
            while sorted(str(key.kid) for key in source.keys) != expected:
                await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(verifier.refresh_keys_periodically)
        await wait_for_kids(["ec-1", "rsa-1"])
        rotated = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
        write_jwks(jwks_path, rotated)
        await wait_for_kids(["ec-2"])
        nursery.cancel_scope.cancel()


def test_parse_jwks_without_usable_key_rejected() -> None:
    with pytest.raises(JwksError, match="no usable signature key"):
        parse_jwks(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode())


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"keys": {}}', b"not json"])
def test_parse_jwks_not_a_jwks_rejected(body: bytes) -> None:
    with pytest.raises(JwksError):
        parse_jwks(body)


def test_parse_jwks_keeps_public_part_only() -> None:
    document = {"keys": [PROVIDER_EC_KEY.as_dict(private=True)]}
    [key] = parse_jwks(json.dumps(document).encode())
    assert not key.is_private


def test_display_source_drops_query() -> None:
    url = "https://id.example.org/jwks.json?key=secret#part"
    assert display_source(url) == "https://id.example.org/jwks.json"


def test_multi_verifier_jwks_lists_local_keys(
    issuer: LocalTokenIssuer, multi: MultiIssuerVerifier
) -> None:
    [jwk] = multi.jwks(now=NOW)["keys"]
    assert jwk["kid"] == issuer.key_id
    assert jwk["alg"] == "EdDSA"
    assert "d" not in jwk


async def test_multi_verifier_kept_token_expires(tmp_path: Path) -> None:
    issuer = LocalTokenIssuer(tmp_path)
    verifier = MultiIssuerVerifier(issuer, leeway_seconds=0)
    token = issuer.issue("kept-user", ttl_seconds=1)

    first = await verifier.verify(token)
    again = await verifier.verify(token)
    await trio.sleep(1.1)

    assert again is first
    with pytest.raises(AuthenticationError):
        await verifier.verify(token)
