"""Tokens signed by this installation's own key, and their verification.

The signing keys are Ed25519 JWKs kept in ``<data_dir>/keys/`` (see
``fernd.auth.signing_keys``). Tokens are JWTs signed with EdDSA by the
current key and carry its ``kid`` in their header, which picks the
verification key among the current and retired keys.
"""

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from joserfc import jws, jwt
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

from fernd.auth.signing_keys import (
    DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
    KEYS_DIRECTORY,
    SIGNING_KEY_FILE,
    SigningKeyError,
    SigningKeys,
    load_or_create_signing_key,
    signing_key_path,
    timestamp_of,
)
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

# joserfc 1.8 warns on every use of "EdDSA" because RFC 9864 deprecates that
# name in favour of "Ed25519". fernd's tokens and published keys keep the
# older name, which verifiers written before RFC 9864 know, and the warning
# is silenced around fernd's own calls.
_EDDSA_DEPRECATION_MESSAGE: Final = "EdDSA is deprecated"

__all__ = [
    "ADMIN_CLAIM",
    "ALGORITHM",
    "ALLOWED_ALGORITHMS",
    "DEFAULT_ISSUER",
    "DEFAULT_LEEWAY_SECONDS",
    "KEYS_DIRECTORY",
    "SIGNING_KEY_FILE",
    "AuthenticationError",
    "LocalTokenIssuer",
    "SigningKeyError",
    "TokenVerifier",
    "VerifiedToken",
    "bearer_token",
    "check_claims",
    "eddsa_deprecation_silenced",
    "expiry_of",
    "load_or_create_signing_key",
    "read_unverified",
    "signing_key_path",
]


class AuthenticationError(Exception):
    """A token failed verification. The message never contains the token."""


class VerifiedToken(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a successful verification."""

    user: User
    expires_at: datetime
    is_admin: bool


@contextlib.contextmanager
def eddsa_deprecation_silenced() -> Iterator[None]:
    """Silence joserfc's warning about the algorithm name "EdDSA"."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_EDDSA_DEPRECATION_MESSAGE, category=SecurityWarning
        )
        yield


class LocalTokenIssuer:
    """Signs tokens with this installation's key.

    The current key is loaded, or created, when the issuer is constructed,
    and a rotation made later by ``fernd admin rotate-signing-key`` is picked
    up within ``RELOAD_INTERVAL_SECONDS``. ``max_token_lifetime`` is the
    longest lifetime of a token fernd issues, in seconds: a retired key
    verifies for that long after its rotation, plus the verifier's leeway.
    """

    def __init__(
        self,
        data_dir: Path,
        issuer: str = DEFAULT_ISSUER,
        *,
        max_token_lifetime: int = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        # Internal users exist only inside fernd, so no token may claim them.
        if issuer == INTERNAL_ISSUER:
            raise ValueError(f"issuer {INTERNAL_ISSUER!r} is reserved")
        self.issuer = issuer
        self.keys = SigningKeys(data_dir, max_token_lifetime=max_token_lifetime)

    @property
    def key_id(self) -> str:
        """The kid of the current signing key."""
        return self.keys.current().kid or ""

    @property
    def public_key(self) -> OKPKey:
        """The public part of the current signing key."""
        return OKPKey.import_key(self.keys.current().as_dict(private=False))

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
        issued_at = timestamp_of(now)
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
        key = self.keys.current()
        header = {"alg": ALGORITHM, "kid": key.kid}
        with eddsa_deprecation_silenced():
            return jwt.encode(header, claims, key, algorithms=ALLOWED_ALGORITHMS)


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the header and claims of ``token`` without checking anything.

    Only for choosing the keys and rules that verify it. Raises
    ``AuthenticationError`` when the token is not a JWS whose payload is a
    JSON object.
    """
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        header = dict(compact.headers())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, TypeError, RecursionError):
        raise AuthenticationError("token is malformed") from None
    if not isinstance(claims, dict):
        raise AuthenticationError("token is malformed")
    return header, claims


def check_claims(
    claims: dict[str, Any],
    timestamp: int,
    *,
    issuer: str,
    leeway_seconds: int,
    audience: str | None = None,
) -> None:
    """Check the registered claims of a token whose signature is verified.

    Requires ``iss`` equal to ``issuer``, a ``sub`` and an ``exp`` after
    ``timestamp``; an ``nbf`` or ``iat`` must not be after ``timestamp``.
    Times are compared with ``leeway_seconds``. With ``audience``, ``aud``
    is required and must be it or a list containing it. Raises
    ``AuthenticationError`` naming the claim, never its value.
    """
    options: dict[str, jwt.ClaimsOption] = {
        "iss": {"essential": True, "value": issuer},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    registry = jwt.JWTClaimsRegistry(now=timestamp, leeway=leeway_seconds, **options)
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


def expiry_of(claims: dict[str, Any]) -> datetime:
    """Return the time of the ``exp`` claim that ``check_claims`` passed."""
    try:
        return datetime.fromtimestamp(claims["exp"], UTC)
    except (ValueError, OverflowError, OSError):
        raise AuthenticationError("token claim exp is invalid") from None


class TokenVerifier:
    """Verifies tokens signed by a ``LocalTokenIssuer``'s keys."""

    def __init__(
        self,
        issuer: LocalTokenIssuer,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        admin_user_ids: frozenset[str] = frozenset(),
    ) -> None:
        if leeway_seconds < 0:
            raise ValueError(f"leeway_seconds must be 0 or more, got {leeway_seconds}")
        self.issuer = issuer
        self._leeway_seconds = leeway_seconds
        self._admin_user_ids = admin_user_ids

    def verify(self, token: str, now: datetime | None = None) -> VerifiedToken:
        """Verify ``token`` at ``now`` (default: the current time).

        Raises ``AuthenticationError`` for a malformed token, an algorithm
        other than EdDSA, a kid that names none of the installation's keys,
        a retired key whose tokens have all expired, or a signature that does
        not match. It also raises for an ``iss`` other than the issuer's (the
        internal issuer always fails), a missing or passed ``exp``, an
        ``nbf`` or ``iat`` in the future, or a missing ``sub``. ``exp``,
        ``nbf`` and ``iat`` are compared with the configured leeway.

        The token is an administrator's when its user id is in
        ``admin_user_ids`` or its ``fernd_admin`` claim is JSON true. Every
        token that passes is signed by this installation's key, so only a
        holder of that key can set the claim.
        """
        timestamp = timestamp_of(now)
        claims = self._decode(token, timestamp)

        # Already rejected by the iss check below, but a token must never
        # yield an internal user whatever the issuer is configured to be.
        if claims.get("iss") == INTERNAL_ISSUER:
            raise AuthenticationError("token issuer is reserved for internal users")
        check_claims(
            claims,
            timestamp,
            issuer=self.issuer.issuer,
            leeway_seconds=self._leeway_seconds,
        )

        try:
            user = user_from_claims(claims)
        except ValueError:
            raise AuthenticationError("token claims are invalid") from None
        return VerifiedToken(
            user=user,
            expires_at=expiry_of(claims),
            is_admin=(
                user.user_id in self._admin_user_ids or claims.get(ADMIN_CLAIM) is True
            ),
        )

    def _decode(self, token: str, timestamp: int) -> dict[str, Any]:
        header, _ = read_unverified(token)
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise AuthenticationError("token algorithm is not allowed")
        kid = header.get("kid")
        found = self.issuer.keys.find(kid) if isinstance(kid, str) else None
        if found is None:
            raise AuthenticationError("token was signed with an unknown key")
        # The retired key's tokens have expired even with the leeway.
        max_lifetime = self.issuer.keys.max_token_lifetime
        if not found.verifies_at(timestamp - self._leeway_seconds, max_lifetime):
            raise AuthenticationError("token was signed with a retired key")

        try:
            with eddsa_deprecation_silenced():
                decoded = jwt.decode(token, found.key, algorithms=ALLOWED_ALGORITHMS)
        except BadSignatureError:
            raise AuthenticationError("token signature is invalid") from None
        except UnsupportedAlgorithmError:
            raise AuthenticationError("token algorithm is not allowed") from None
        except (JoseError, ValueError, TypeError, RecursionError):
            raise AuthenticationError("token is malformed") from None
        return decoded.claims


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
    # str.split splits at the characters str.isspace accepts, in C, where a
    # Python loop over the few hundred characters of a token was a top cost
    # in a profile of the HTTP benchmark.
    if len(token.split(maxsplit=1)) != 1:
        return None
    return token
