"""The ``[auth]`` table of fernd.toml: the external token issuers whose
tokens fernd accepts beside its own.

Each ``[[auth.issuers]]`` entry names one identity provider::

    [[auth.issuers]]
    issuer = "https://id.example.org/"
    audience = "fernd"
    jwks_url = "https://id.example.org/.well-known/jwks.json"
    algorithms = ["RS256", "ES256"]
"""

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from fernd.auth.tokens import DEFAULT_ISSUER
from fernd.config import ConfigError
from fernd.domain.constants import INTERNAL_ISSUER

# Algorithms an issuer may list. Symmetric algorithms (HS256 and the like)
# are missing on purpose: their key is a shared secret, and a verifier that
# accepts them can be fooled into using a public key as that secret.
SUPPORTED_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "PS256",
    "EdDSA",
    "Ed25519",
)

# Claims each user field is read from when an issuer's `claims` table does
# not name one, first match wins. These are the claims of fernd's own tokens.
DEFAULT_CLAIMS: Final[Mapping[str, tuple[str, ...]]] = {
    "user_id": ("sub",),
    "email": ("email", "email_address"),
    "phone_number": ("phone_number",),
    "first_name": ("first_name", "given_name"),
    "last_name": ("last_name", "family_name"),
    "name": ("name",),
}

# One hour between background refreshes of an issuer's keys.
DEFAULT_JWKS_MAX_AGE_SECONDS: Final = 3600
# A shorter max age would refresh more often than a token with an unknown
# kid may trigger a refresh.
MIN_JWKS_MAX_AGE_SECONDS: Final = 30

_ISSUER_KEYS: Final = (
    "issuer",
    "audience",
    "jwks_url",
    "jwks_file",
    "algorithms",
    "claims",
    "jwks_max_age",
)
_AUTH_KEYS: Final = ("issuers",)
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


@dataclass(frozen=True, kw_only=True)
class IssuerSettings:
    """One external token issuer, validated."""

    # The exact `iss` claim of its tokens.
    issuer: str
    # When set, a token's `aud` must be this or a list containing it.
    audience: str | None = None
    # Exactly one of jwks_url and jwks_file is set.
    jwks_url: str | None = None
    jwks_file: str | None = None
    # The algorithms its tokens may use, in the order written.
    algorithms: tuple[str, ...]
    # Claim names by user field, for the fields the operator named.
    claims: Mapping[str, str] = field(default_factory=dict)
    # Seconds between background refreshes of the keys.
    jwks_max_age: int = DEFAULT_JWKS_MAX_AGE_SECONDS

    @property
    def jwks_source(self) -> str:
        """The JWKS URL or file, for messages."""
        return self.jwks_url or self.jwks_file or ""

    def claim_names(self, user_field: str) -> tuple[str, ...]:
        """Return the claims ``user_field`` is read from, first match wins."""
        configured = self.claims.get(user_field)
        return (configured,) if configured is not None else DEFAULT_CLAIMS[user_field]


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """The validated ``[auth]`` table."""

    issuers: tuple[IssuerSettings, ...] = ()


def _known(keys: tuple[str, ...]) -> str:
    return ", ".join(keys)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_jwks_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError("jwks_url must be a non-empty string")
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"jwks_url {url!r} is not an http or https URL with a host")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return url
    # Keys fetched over plain HTTP could be swapped on the way by anyone
    # between fernd and the provider, who could then sign any token.
    raise ValueError(
        f"jwks_url {url!r} must use https (http only for a loopback host such "
        "as 127.0.0.1)"
    )


def _check_algorithm(name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"algorithm {name!r} is not a string")
    if name in SUPPORTED_ALGORITHMS:
        return name
    allowed = _known(SUPPORTED_ALGORITHMS)
    if name.lower() == "none":
        raise ValueError(
            f"algorithm {name!r} accepts unsigned tokens and is never allowed; "
            f"use one of {allowed}"
        )
    if name.upper().startswith("HS"):
        raise ValueError(
            f"algorithm {name!r} is symmetric (a shared secret) and is not "
            f"allowed for an issuer; use one of {allowed}"
        )
    raise ValueError(f"algorithm {name!r} is not supported; use one of {allowed}")


def _check_algorithms(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            'algorithms must be a non-empty list such as ["RS256"], the '
            "algorithms the provider signs with"
        )
    algorithms = [_check_algorithm(name) for name in value]
    return tuple(dict.fromkeys(algorithms))


def _check_claims(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(
            'claims must be a table such as { user_id = "sub", email = "email" }'
        )
    fields = tuple(DEFAULT_CLAIMS)
    claims: dict[str, str] = {}
    for user_field, claim in value.items():
        if user_field not in DEFAULT_CLAIMS:
            raise ValueError(
                f"claims has unknown field {user_field!r}; known fields: "
                f"{_known(fields)}"
            )
        if not isinstance(claim, str) or not claim:
            raise ValueError(f"claims.{user_field} must be a non-empty claim name")
        claims[user_field] = claim
    return claims


def _check_max_age(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < MIN_JWKS_MAX_AGE_SECONDS
        or value != int(value)
    ):
        raise ValueError(
            f"jwks_max_age must be a whole number of seconds, at least "
            f"{MIN_JWKS_MAX_AGE_SECONDS}, got {value!r}"
        )
    return int(value)


def _check_issuer_name(value: object, local_issuer: str) -> str:
    if value is None:
        raise ValueError(
            "issuer is missing; set it to the exact iss claim of the provider's tokens"
        )
    if not isinstance(value, str) or not value:
        raise ValueError("issuer must be a non-empty string, the exact iss claim")
    if value == INTERNAL_ISSUER:
        raise ValueError(
            f"issuer {value!r} is reserved for fernd's internal users; no token "
            "may claim it"
        )
    if value == local_issuer:
        raise ValueError(
            f"issuer {value!r} is fernd's own issuer, whose tokens fernd "
            "verifies with its own keys; remove this entry"
        )
    return value


def _parse_issuer(entry: Mapping[str, Any], local_issuer: str) -> IssuerSettings:
    for key in entry:
        if key not in _ISSUER_KEYS:
            raise ValueError(f"unknown key {key!r}; known keys: {_known(_ISSUER_KEYS)}")
    issuer = _check_issuer_name(entry.get("issuer"), local_issuer)

    audience = entry.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        raise ValueError("audience must be a non-empty string")

    jwks_url = entry.get("jwks_url")
    jwks_file = entry.get("jwks_file")
    if (jwks_url is None) == (jwks_file is None):
        both_or_neither = "both" if jwks_url is not None else "neither"
        raise ValueError(
            f"set exactly one of jwks_url and jwks_file, not {both_or_neither}: where "
            "the provider's public keys (a JWKS) are read from"
        )
    if jwks_url is not None:
        jwks_url = _check_jwks_url(jwks_url)
    if jwks_file is not None and (not isinstance(jwks_file, str) or not jwks_file):
        raise ValueError("jwks_file must be a non-empty path")

    if "algorithms" not in entry:
        raise ValueError(
            "algorithms is missing; list the algorithms the provider signs "
            f'with, e.g. ["RS256"], from {_known(SUPPORTED_ALGORITHMS)}'
        )
    return IssuerSettings(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        algorithms=_check_algorithms(entry["algorithms"]),
        claims=_check_claims(entry.get("claims", {})),
        jwks_max_age=_check_max_age(
            entry.get("jwks_max_age", DEFAULT_JWKS_MAX_AGE_SECONDS)
        ),
    )


def load_auth_settings(
    table: Mapping[str, Any], *, local_issuer: str = DEFAULT_ISSUER
) -> AuthSettings:
    """Validate the raw ``[auth]`` table of the config file.

    ``local_issuer`` is the ``iss`` of fernd's own tokens, which no entry may
    use. Raises ``ConfigError`` naming the entry and the key at fault, for
    example an unknown key, a missing issuer, both or neither of jwks_url and
    jwks_file, an algorithm outside ``SUPPORTED_ALGORITHMS`` or a reserved
    issuer.
    """
    for key in table:
        if key not in _AUTH_KEYS:
            raise ConfigError(
                f"Invalid [auth] table: unknown key {key!r}; known keys: "
                f"{_known(_AUTH_KEYS)}"
            )
    entries = table.get("issuers", [])
    if not isinstance(entries, list):
        raise ConfigError(
            "Invalid [auth] table: issuers must be a list of [[auth.issuers]] tables"
        )

    issuers: list[IssuerSettings] = []
    for number, entry in enumerate(entries, start=1):
        where = f"Invalid [[auth.issuers]] entry {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table, got {entry!r}")
        name = entry.get("issuer")
        if isinstance(name, str):
            where += f" (issuer {name!r})"
        try:
            parsed = _parse_issuer(entry, local_issuer)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
        if any(other.issuer == parsed.issuer for other in issuers):
            raise ConfigError(f"{where}: the issuer is listed twice")
        issuers.append(parsed)
    return AuthSettings(issuers=tuple(issuers))
