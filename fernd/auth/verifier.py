"""One verifier for every token fernd accepts: its own, signed by the
installation's keys, and those of the external issuers in ``[auth]``.

The unverified ``iss`` claim only chooses the issuer, whose own keys,
algorithms and audience then decide. Every issuer's tokens need ``exp`` and
``sub``, an exact ``iss``, and ``nbf`` and ``iat`` not in the future, with the
same clock leeway.
"""

import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
import trio
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import Key

from fernd.auth.jwks import JwksSource
from fernd.auth.settings import DEFAULT_CLAIMS, IssuerSettings, load_auth_settings
from fernd.auth.signing_keys import public_jwk, timestamp_of
from fernd.auth.tokens import (
    DEFAULT_LEEWAY_SECONDS,
    AuthenticationError,
    LocalTokenIssuer,
    TokenVerifier,
    VerifiedToken,
    check_claims,
    eddsa_deprecation_silenced,
    expiry_of,
    read_unverified,
)
from fernd.config import Settings
from fernd.domain.constants import INTERNAL_ISSUER, INTERNAL_USER_PREFIX
from fernd.domain.users import User, user_from_claims

logger = logging.getLogger(__name__)

# The claim each user field is stored under for user_from_claims.
_STANDARD_CLAIM = {field: names[0] for field, names in DEFAULT_CLAIMS.items()}


class ExternalIssuer:
    """Verifies the tokens of one ``[[auth.issuers]]`` entry."""

    def __init__(
        self,
        settings: IssuerSettings,
        keys: JwksSource,
        *,
        leeway_seconds: int,
        admin_user_ids: frozenset[str],
    ) -> None:
        self.settings = settings
        self.keys = keys
        self._leeway_seconds = leeway_seconds
        self._admin_user_ids = admin_user_ids

    async def verify(
        self, token: str, header: dict[str, Any], timestamp: int
    ) -> VerifiedToken:
        """Verify ``token``, whose unverified header is ``header``, at
        ``timestamp`` (seconds since the epoch).

        The token is an administrator's only when its user id is in
        ``admin_user_ids``: no claim of an external token grants it.
        """
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.settings.algorithms:
            raise AuthenticationError("token algorithm is not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationError("token kid is not a string")

        keys = await self.keys.keys_for(kid, algorithm)
        if not keys:
            raise AuthenticationError("token was signed with an unknown key")
        claims = _decode(token, keys, algorithm)
        check_claims(
            claims,
            timestamp,
            issuer=self.settings.issuer,
            leeway_seconds=self._leeway_seconds,
            audience=self.settings.audience,
        )
        user = self._user(claims)
        return VerifiedToken(
            user=user,
            expires_at=expiry_of(claims),
            is_admin=user.user_id in self._admin_user_ids,
        )

    def _user(self, claims: dict[str, Any]) -> User:
        # The claims are copied under fernd's standard names, read from the
        # names this issuer uses, so the domain's mapping builds the user.
        standard: dict[str, Any] = {"iss": self.settings.issuer}
        for user_field, standard_claim in _STANDARD_CLAIM.items():
            for name in self.settings.claim_names(user_field):
                value = claims.get(name)
                if isinstance(value, str):
                    standard[standard_claim] = value
                    break
        if not standard.get("sub"):
            raise AuthenticationError("token has no user id claim")
        try:
            return user_from_claims(standard)
        except ValueError:
            raise AuthenticationError("token claims are invalid") from None


def _decode(token: str, keys: Sequence[Key], algorithm: str) -> dict[str, Any]:
    # Several keys fit only when the token names no kid; any one may match.
    for key in keys:
        try:
            with eddsa_deprecation_silenced():
                decoded = jwt.decode(token, key, algorithms=[algorithm])
        except BadSignatureError:
            continue
        except UnsupportedAlgorithmError:
            raise AuthenticationError("token algorithm is not allowed") from None
        except (JoseError, ValueError, TypeError, RecursionError):
            raise AuthenticationError("token is malformed") from None
        return decoded.claims
    raise AuthenticationError("token signature is invalid")


# Checking an EdDSA signature and the claims took 182 us per token with
# joserfc on a 2-core AMD EPYC (3,000 calls). That is about a fifth of a
# command over HTTP, and a client sends one access token for up to 15 minutes.
VERIFIED_CACHE_SIZE: Final = 4096


class _KeptToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token that passed, with what is needed to trust it again."""

    verified: VerifiedToken
    issuer: str
    kid: str | None
    algorithm: str


class MultiIssuerVerifier:
    """Verifies fernd's own tokens and those of the configured issuers."""

    def __init__(
        self,
        local_issuer: LocalTokenIssuer,
        issuers: Sequence[IssuerSettings] = (),
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        admin_user_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.local_issuer = local_issuer
        self.local = TokenVerifier(
            local_issuer, leeway_seconds=leeway_seconds, admin_user_ids=admin_user_ids
        )
        self._leeway_seconds = leeway_seconds
        # Tokens that passed, by their text, least recently used first.
        self._verified: OrderedDict[str, _KeptToken] = OrderedDict()
        self.external = {
            settings.issuer: ExternalIssuer(
                settings,
                JwksSource(settings),
                leeway_seconds=leeway_seconds,
                admin_user_ids=admin_user_ids,
            )
            for settings in issuers
        }

    async def verify(self, token: str, now: datetime | None = None) -> VerifiedToken:
        """Verify ``token`` as ``_verify`` does; an unexpected exception while
        reading a hostile token is logged by type and fails like any other.
        Raises ValueError for a naive ``now``.

        With ``now`` None, a token that passed is kept, at most
        VERIFIED_CACHE_SIZE of them, and accepted again without checking its
        signature while it is unexpired (``exp`` plus the leeway) and the key
        that signed it is still trusted.
        """
        timestamp = timestamp_of(now)
        kept = self._verified.get(token) if now is None else None
        if kept is not None:
            if self._still_valid(kept, timestamp):
                self._verified.move_to_end(token)
                return kept.verified
            del self._verified[token]
        try:
            kept = await self._verify(token, now)
        except AuthenticationError:
            raise
        except Exception as error:
            logger.warning(
                "Token verification failed with %s; rejecting the token",
                type(error).__name__,
            )
            raise AuthenticationError("token could not be read") from None
        if now is None:
            self._verified[token] = kept
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return kept.verified

    def _still_valid(self, kept: "_KeptToken", timestamp: int) -> bool:
        """Return whether a kept token is unexpired and its key still trusted:
        a local key that still verifies, or a key still in the issuer's JWKS."""
        expires = kept.verified.expires_at.timestamp() + self._leeway_seconds
        if expires <= timestamp:
            return False
        if kept.issuer == self.local_issuer.issuer:
            keys = self.local_issuer.keys
            found = keys.find(kept.kid) if kept.kid is not None else None
            return found is not None and found.verifies_at(
                timestamp, keys.max_token_lifetime
            )
        external = self.external.get(kept.issuer)
        return external is not None and external.keys.has_key(kept.kid, kept.algorithm)

    async def _verify(self, token: str, now: datetime | None) -> "_KeptToken":
        """Verify ``token`` at ``now`` (default: the current time), and return
        the result with the issuer and key that signed it.

        The token's unverified ``iss`` picks fernd's own keys or one external
        issuer; a token whose ``iss`` is neither, or is the internal issuer,
        fails. May wait for a fetch of the issuer's keys when the token names
        a kid that is not cached. Raises ``AuthenticationError`` for every
        failure, with a message that never contains the token.
        """
        timestamp = timestamp_of(now)
        header, claims = read_unverified(token)
        issuer = claims.get("iss")
        if issuer is None:
            raise AuthenticationError("token has no iss claim")
        # Internal users exist only inside fernd, and no token may claim one.
        if issuer == INTERNAL_ISSUER:
            raise AuthenticationError("token issuer is reserved for internal users")
        if issuer == self.local_issuer.issuer:
            verified = self.local.verify(token, now)
        else:
            external = self.external.get(issuer) if isinstance(issuer, str) else None
            if external is None:
                raise AuthenticationError("token issuer is not accepted")
            verified = await external.verify(token, header, timestamp)
        # Principals are resolved by user id, so a token for an internal
        # user's id would act as the process manager on its own labours.
        if verified.user.user_id.startswith(INTERNAL_USER_PREFIX):
            raise AuthenticationError("token subject is reserved for internal users")
        kid = header.get("kid")
        return _KeptToken(
            verified=verified,
            issuer=issuer,
            kid=kid if isinstance(kid, str) else None,
            algorithm=str(header.get("alg")),
        )

    def jwks(self, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Return the JWKS of fernd's own keys: the current key and every
        retired key that still verifies tokens at ``now``."""
        timestamp = timestamp_of(now) - self._leeway_seconds
        keys = self.local_issuer.keys.published_keys(timestamp)
        return {"keys": [public_jwk(key) for key in keys]}

    async def refresh_keys_periodically(self) -> None:
        """Keep every external issuer's keys fresh until cancelled."""
        async with trio.open_nursery() as nursery:
            for external in self.external.values():
                nursery.start_soon(external.keys.refresh_periodically)


def build_verifier(settings: Settings, issuer: LocalTokenIssuer) -> MultiIssuerVerifier:
    """Build the verifier for ``settings``. Raises ``ConfigError`` for an
    invalid ``[auth]`` table."""
    auth = load_auth_settings(settings.auth, local_issuer=issuer.issuer)
    for external in auth.issuers:
        logger.info(
            "Accepting tokens of issuer %s with %s",
            external.issuer,
            ", ".join(external.algorithms),
        )
    return MultiIssuerVerifier(
        issuer,
        auth.issuers,
        leeway_seconds=settings.token_leeway,
        admin_user_ids=frozenset(settings.admin_user_ids),
    )
