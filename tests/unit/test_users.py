"""Mapping of token claims to a User."""

from typing import Any

import msgspec
import pytest

from fernd.domain.users import User, user_from_claims

BASE_CLAIMS: dict[str, Any] = {"sub": "user-1", "iss": "https://id.example.com"}


def claims(**extra: Any) -> dict[str, Any]:
    return {**BASE_CLAIMS, **extra}


def test_user_from_claims_maps_sub_and_iss() -> None:
    user = user_from_claims(BASE_CLAIMS)
    assert user.user_id == "user-1"
    assert user.issuer == "https://id.example.com"


def test_user_from_claims_without_profile_is_all_none() -> None:
    user = user_from_claims(BASE_CLAIMS)
    assert user.email is None
    assert user.phone_number is None
    assert user.first_name is None
    assert user.last_name is None
    assert user.name is None


def test_user_from_claims_copies_every_profile_claim() -> None:
    user = user_from_claims(
        claims(
            email="ann@example.com",
            phone_number="+447700900123",
            first_name="Ann",
            last_name="Lee",
            name="Annie",
        )
    )
    assert user == User(
        user_id="user-1",
        issuer="https://id.example.com",
        email="ann@example.com",
        phone_number="+447700900123",
        first_name="Ann",
        last_name="Lee",
        name="Annie",
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"email": "a@example.com"}, "a@example.com"),
        ({"email_address": "b@example.com"}, "b@example.com"),
        ({"email": "a@example.com", "email_address": "b@example.com"}, "a@example.com"),
        ({"email": 5, "email_address": "b@example.com"}, "b@example.com"),
        ({"email": None}, None),
    ],
)
def test_user_from_claims_email_fallback(extra: dict[str, Any], expected: str) -> None:
    assert user_from_claims(claims(**extra)).email == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"first_name": "Ann"}, "Ann"),
        ({"given_name": "Anna"}, "Anna"),
        ({"first_name": "Ann", "given_name": "Anna"}, "Ann"),
        ({"first_name": ["Ann"], "given_name": "Anna"}, "Anna"),
    ],
)
def test_user_from_claims_first_name_fallback(
    extra: dict[str, Any], expected: str
) -> None:
    assert user_from_claims(claims(**extra)).first_name == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"last_name": "Lee"}, "Lee"),
        ({"family_name": "Li"}, "Li"),
        ({"last_name": "Lee", "family_name": "Li"}, "Lee"),
        ({"last_name": {"x": 1}, "family_name": "Li"}, "Li"),
    ],
)
def test_user_from_claims_last_name_fallback(
    extra: dict[str, Any], expected: str
) -> None:
    assert user_from_claims(claims(**extra)).last_name == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"name": "Annie", "first_name": "Ann", "last_name": "Lee"}, "Annie"),
        ({"first_name": "Ann", "last_name": "Lee"}, "Ann Lee"),
        ({"given_name": "Anna", "family_name": "Li"}, "Anna Li"),
        ({"first_name": "Ann", "family_name": "Li"}, "Ann Li"),
        ({"first_name": "Ann"}, "Ann"),
        ({"family_name": "Li"}, "Li"),
        ({"name": 42, "first_name": "Ann", "last_name": "Lee"}, "Ann Lee"),
        ({}, None),
    ],
)
def test_user_from_claims_name_fallback(
    extra: dict[str, Any], expected: str | None
) -> None:
    assert user_from_claims(claims(**extra)).name == expected


def test_user_from_claims_non_string_phone_number_ignored() -> None:
    assert user_from_claims(claims(phone_number=447700900123)).phone_number is None


@pytest.mark.parametrize(
    "bad_claims",
    [
        {"iss": "https://id.example.com"},
        {"sub": 7, "iss": "https://id.example.com"},
        {"sub": "user-1"},
        {"sub": "user-1", "iss": None},
    ],
)
def test_user_from_claims_without_sub_or_iss_rejected(
    bad_claims: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        user_from_claims(bad_claims)


def test_user_is_frozen() -> None:
    user = user_from_claims(BASE_CLAIMS)
    with pytest.raises(AttributeError):
        user.user_id = "other"  # type: ignore[misc]


def test_user_round_trips_through_json() -> None:
    user = user_from_claims(claims(first_name="Ann"))
    assert msgspec.json.decode(msgspec.json.encode(user), type=User) == user
