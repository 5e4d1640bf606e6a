"""Tokens signed by this installation's own key, and their verification.

The signing key is an Ed25519 JWK stored in ``<data_dir>/keys/signing-key.json``
and created on first use. Tokens are JWTs signed with EdDSA and carry the
key's ``kid`` in their header.
"""

import contextlib
import json
import logging
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import OKPKey

from fernd.domain.constants import INTERNAL_ISSUER
from fernd.domain.users import User, user_from_claims

logger = logging.getLogger(__name__)

# The only algorithm verify accepts. It is fixed here and never read from a
# token, so "none", HS256 with the public key as secret and the like all fail.
ALGORITHM: Final = "EdDSA"
ALLOWED_ALGORITHMS: Final = (ALGORITHM,)

DEFAULT_ISSUER: Final = "fernd"
# The claim that makes a token signed by this installation's key an
# administrator's token. Anyone who can read the signing key can mint one.
ADMIN_CLAIM: Final = "fernd_admin"
DEFAULT_LEEWAY_SECONDS: Final = 30

KEYS_DIRECTORY: Final = "keys"
SIGNING_KEY_FILE: Final = "signing-key.json"

# joserfc 1.8 warns on every use of "EdDSA" because RFC 9864 deprecates that
# name in favour of "Ed25519". Only fernd verifies these tokens, so the name is
# kept and the warning is silenced around fernd's own calls.
_EDDSA_DEPRECATION_MESSAGE: Final = "EdDSA is deprecated"


# Advice appended to the errors for a key file that is read but invalid.
_SIGNING_KEY_FIX: Final = (
    "restore it from a backup, or delete it to create a new key "
    "(tokens signed with the old key then stop working)"
)


class SigningKeyError(Exception):
    """The signing key file exists but cannot be read or is not a valid key."""


class AuthenticationError(Exception):
    """A token failed verification. The message never contains the token."""


class VerifiedToken(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a successful verification."""

    user: User
    expires_at: datetime
    is_admin: bool


@contextlib.contextmanager
def _eddsa_deprecation_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_EDDSA_DEPRECATION_MESSAGE, category=SecurityWarning
        )
        yield


def signing_key_path(data_dir: Path) -> Path:
    """Return the path of the installation's signing key file."""
    return data_dir / KEYS_DIRECTORY / SIGNING_KEY_FILE


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

    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning(
            "Signing key %s has mode %o, so other users may read it; "
            "run chmod 600 on it",
            path,
            mode,
        )
    return key


def _write_new_signing_key(path: Path) -> None:
    # Writes a complete key to a temporary file, then links it into place.
    # os.link never replaces an existing file, so when two processes start
    # at once the first link wins and the other process reads the winner.
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    text = json.dumps(key.as_dict(private=True), indent=2) + "\n"
    # mkstemp creates the file with mode 0600.
    descriptor, temporary_name = tempfile.mkstemp(
        dir=path.parent, prefix=".signing-key-", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary_name, path)
        except FileExistsError:
            logger.info("Another process created signing key %s first", path)
            return
    finally:
        os.unlink(temporary_name)

    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    logger.info("Created signing key %s with kid %s", path, key.kid)


def load_or_create_signing_key(data_dir: Path) -> OKPKey:
    """Load the installation's signing key, creating it on first use.

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


def _timestamp(now: datetime | None) -> int:
    # Whole seconds since the epoch, as JWT NumericDate claims are written.
    if now is None:
        now = datetime.now(UTC)
    elif now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return int(now.timestamp())


class LocalTokenIssuer:
    """Signs tokens with this installation's key.

    The key is loaded, or created, when the issuer is constructed.
    """

    def __init__(self, data_dir: Path, issuer: str = DEFAULT_ISSUER) -> None:
        # Internal users exist only inside fernd, so no token may claim them.
        if issuer == INTERNAL_ISSUER:
            raise ValueError(f"issuer {INTERNAL_ISSUER!r} is reserved")
        self.issuer = issuer
        self._private_key = load_or_create_signing_key(data_dir)
        self.key_id: str = self._private_key.kid or ""
        self.public_key = OKPKey.import_key(self._private_key.as_dict(private=False))

    def issue(
        self,
        user_id: str,
        *,
        name: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        phone_number: str | None = None,
        admin: bool = False,
        ttl_seconds: int,
        now: datetime | None = None,
    ) -> str:
        """Sign a token for ``user_id`` valid for ``ttl_seconds`` from ``now``.

        The claims are ``sub``, ``iss``, ``iat``, ``exp``, each profile
        claim that is not None and, when ``admin`` is true, ``fernd_admin``
        set to true, which makes the token an administrator's. Raises
        ``ValueError`` for an empty user id, a ``ttl_seconds`` below 1 or a
        naive ``now``.
        """
        if not user_id:
            raise ValueError("user_id must not be empty")
        if ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be at least 1, got {ttl_seconds}")
        issued_at = _timestamp(now)
        claims: dict[str, Any] = {
            "sub": user_id,
            "iss": self.issuer,
            "iat": issued_at,
            "exp": issued_at + ttl_seconds,
        }
        profile = {
            "name": name,
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "phone_number": phone_number,
        }
        claims.update({claim: v for claim, v in profile.items() if v is not None})
        if admin:
            claims[ADMIN_CLAIM] = True
        header = {"alg": ALGORITHM, "kid": self.key_id}
        with _eddsa_deprecation_silenced():
            return jwt.encode(
                header, claims, self._private_key, algorithms=ALLOWED_ALGORITHMS
            )


class TokenVerifier:
    """Verifies tokens signed by a ``LocalTokenIssuer``'s key."""

    def __init__(
        self,
        issuer: LocalTokenIssuer,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        admin_user_ids: frozenset[str] = frozenset(),
    ) -> None:
        if leeway_seconds < 0:
            raise ValueError(f"leeway_seconds must be 0 or more, got {leeway_seconds}")
        self._issuer = issuer
        self._leeway_seconds = leeway_seconds
        self._admin_user_ids = admin_user_ids

    def verify(self, token: str, now: datetime | None = None) -> VerifiedToken:
        """Verify ``token`` at ``now`` (default: the current time).

        Raises ``AuthenticationError`` for a malformed token, a signature that
        does not match the installation's key, an algorithm other than EdDSA,
        or another key id. It also raises for an ``iss`` other than the
        issuer's (the internal issuer always fails), a missing or passed
        ``exp``, an ``nbf`` or ``iat`` in the future, or a missing ``sub``.
        ``exp``, ``nbf`` and ``iat`` are compared with the configured leeway.

        The token is an administrator's when its user id is in
        ``admin_user_ids`` or its ``fernd_admin`` claim is JSON true. Every
        token that passes is signed by this installation's key, so only a
        holder of that key can set the claim.
        """
        timestamp = _timestamp(now)
        claims = self._decode(token)

        # Already rejected by the iss check below, but a token must never
        # yield an internal user whatever the issuer is configured to be.
        if claims.get("iss") == INTERNAL_ISSUER:
            raise AuthenticationError("token issuer is reserved for internal users")
        self._validate_claims(claims, timestamp)

        try:
            user = user_from_claims(claims)
            expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        except (ValueError, OverflowError, OSError):
            raise AuthenticationError("token claims are invalid") from None
        return VerifiedToken(
            user=user,
            expires_at=expires_at,
            is_admin=(
                user.user_id in self._admin_user_ids or claims.get(ADMIN_CLAIM) is True
            ),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            with _eddsa_deprecation_silenced():
                decoded = jwt.decode(
                    token, self._issuer.public_key, algorithms=ALLOWED_ALGORITHMS
                )
        except BadSignatureError:
            raise AuthenticationError("token signature is invalid") from None
        except UnsupportedAlgorithmError:
            raise AuthenticationError("token algorithm is not allowed") from None
        except (JoseError, ValueError, TypeError):
            raise AuthenticationError("token is malformed") from None

        if decoded.header.get("kid") != self._issuer.key_id:
            raise AuthenticationError("token was signed with an unknown key")
        return decoded.claims

    def _validate_claims(self, claims: dict[str, Any], timestamp: int) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=timestamp,
            leeway=self._leeway_seconds,
            iss={"essential": True, "value": self._issuer.issuer},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise AuthenticationError("token has expired") from None
        except MissingClaimError as error:
            raise AuthenticationError(f"token has no {error.claim} claim") from None
        except ClaimError as error:
            # Claim names are safe to report, so only values are left out.
            raise AuthenticationError(f"token claim {error.claim} is invalid") from None
        except JoseError:
            raise AuthenticationError("token claims are invalid") from None


def bearer_token(header_value: str | None) -> str | None:
    """Extract the token from an ``Authorization: Bearer <token>`` value.

    The scheme is matched case-insensitively. Returns None when the header is
    absent, uses another scheme, or has no token or more than one word after
    the scheme.
    """
    if header_value is None:
        return None
    scheme, _, credentials = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = credentials.strip()
    if not token or any(character.isspace() for character in token):
        return None
    return token
