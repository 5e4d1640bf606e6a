"""The user behind a verified token, built from the token's claims."""

from collections.abc import Mapping
from typing import Any

import msgspec


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A caller's identity (``sub`` and ``iss``) and profile claims."""

    user_id: str
    issuer: str
    email: str | None = None
    phone_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None


def _string_claim(claims: Mapping[str, Any], *names: str) -> str | None:
    # The first of `names` whose value is a string; other values count as absent.
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            return value
    return None


def _display_name(
    name: str | None, first_name: str | None, last_name: str | None
) -> str | None:
    if name is not None:
        return name
    if first_name is not None and last_name is not None:
        return f"{first_name} {last_name}"
    return first_name if first_name is not None else last_name


def user_from_claims(claims: Mapping[str, Any]) -> User:
    """Build the user from verified token claims.

    ``user_id`` is ``sub`` and ``issuer`` is ``iss``. ``email`` falls back to
    ``email_address``, ``first_name`` to ``given_name`` and ``last_name`` to
    ``family_name``. ``name`` is the ``name`` claim, else first and last name
    joined by a space when both exist, else whichever exists, else None. A
    claim whose value is not a string counts as absent. Raises ``ValueError``
    when ``sub`` or ``iss`` is absent.
    """
    user_id = _string_claim(claims, "sub")
    if user_id is None:
        raise ValueError("token claim 'sub' is missing or not a string")
    issuer = _string_claim(claims, "iss")
    if issuer is None:
        raise ValueError("token claim 'iss' is missing or not a string")

    first_name = _string_claim(claims, "first_name", "given_name")
    last_name = _string_claim(claims, "last_name", "family_name")
    return User(
        user_id=user_id,
        issuer=issuer,
        email=_string_claim(claims, "email", "email_address"),
        phone_number=_string_claim(claims, "phone_number"),
        first_name=first_name,
        last_name=last_name,
        name=_display_name(_string_claim(claims, "name"), first_name, last_name),
    )
