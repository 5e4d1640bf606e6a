"""Parsing and validation of the [auth] table."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fernd.auth.settings import (
    DEFAULT_JWKS_MAX_AGE_SECONDS,
    IssuerSettings,
    load_auth_settings,
)
from fernd.config import ConfigError, load_settings

ISSUER = "https://id.example.org/"
JWKS_URL = "https://id.example.org/.well-known/jwks.json"


def entry(**changes: Any) -> dict[str, Any]:
    """Return a valid [[auth.issuers]] entry with `changes`; None removes a key."""
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "jwks_url": JWKS_URL,
        "algorithms": ["RS256", "ES256"],
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def parse_one(**changes: Any) -> IssuerSettings:
    [issuer] = load_auth_settings({"issuers": [entry(**changes)]}).issuers
    return issuer


def rejection(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_auth_settings(table)
    return str(raised.value)


def issuer_rejection(**changes: Any) -> str:
    return rejection({"issuers": [entry(**changes)]})


# --- valid tables -------------------------------------------------------------


def test_empty_table_has_no_issuers() -> None:
    assert load_auth_settings({}).issuers == ()


def test_minimal_issuer_parsed() -> None:
    issuer = parse_one()
    assert issuer.issuer == ISSUER
    assert issuer.jwks_url == JWKS_URL
    assert issuer.jwks_file is None
    assert issuer.audience is None
    assert issuer.algorithms == ("RS256", "ES256")
    assert issuer.jwks_max_age == DEFAULT_JWKS_MAX_AGE_SECONDS


def test_full_issuer_parsed() -> None:
    issuer = parse_one(
        jwks_url=None,
        jwks_file="/etc/fernd/jwks.json",
        audience="fernd",
        algorithms=["EdDSA", "Ed25519", "PS256", "RS384", "RS512", "ES384"],
        claims={"user_id": "oid", "email": "mail"},
        jwks_max_age=600,
    )
    assert issuer.jwks_file == "/etc/fernd/jwks.json"
    assert issuer.audience == "fernd"
    assert issuer.algorithms == ("EdDSA", "Ed25519", "PS256", "RS384", "RS512", "ES384")
    assert issuer.jwks_max_age == 600


def test_claim_names_default_to_domain_claims() -> None:
    issuer = parse_one()
    assert issuer.claim_names("user_id") == ("sub",)
    assert issuer.claim_names("email") == ("email", "email_address")
    assert issuer.claim_names("first_name") == ("first_name", "given_name")
    assert issuer.claim_names("last_name") == ("last_name", "family_name")


def test_claim_names_configured_replace_defaults() -> None:
    issuer = parse_one(claims={"email": "mail"})
    assert issuer.claim_names("email") == ("mail",)
    assert issuer.claim_names("name") == ("name",)


def test_http_loopback_jwks_url_accepted() -> None:
    url = "http://127.0.0.1:8080/jwks.json"
    assert parse_one(jwks_url=url).jwks_url == url


def test_duplicate_algorithms_kept_once() -> None:
    assert parse_one(algorithms=["ES256", "ES256"]).algorithms == ("ES256",)


def test_several_issuers_parsed() -> None:
    second = entry(issuer="https://other.example.org/")
    settings = load_auth_settings({"issuers": [entry(), second]})
    assert [issuer.issuer for issuer in settings.issuers] == [
        ISSUER,
        "https://other.example.org/",
    ]


# --- invalid tables -----------------------------------------------------------


def test_unknown_auth_key_rejected() -> None:
    message = rejection({"issuer": []})
    assert "unknown key 'issuer'" in message
    assert "known keys: issuers" in message


def test_issuers_not_list_rejected() -> None:
    assert "list of [[auth.issuers]]" in rejection({"issuers": {"issuer": ISSUER}})


def test_issuer_entry_not_table_rejected() -> None:
    assert "expected a table" in rejection({"issuers": ["https://x/"]})


def test_unknown_issuer_key_rejected() -> None:
    message = issuer_rejection(jwks="https://x/")
    assert "entry 1" in message
    assert ISSUER in message
    assert "unknown key 'jwks'" in message
    assert "jwks_url" in message


def test_missing_issuer_rejected() -> None:
    message = issuer_rejection(issuer=None)
    assert "entry 1" in message
    assert "issuer is missing" in message


def test_empty_issuer_rejected() -> None:
    assert "non-empty string" in issuer_rejection(issuer="")


def test_neither_jwks_source_rejected() -> None:
    message = issuer_rejection(jwks_url=None)
    assert "exactly one of jwks_url and jwks_file, not neither" in message


def test_both_jwks_sources_rejected() -> None:
    message = issuer_rejection(jwks_file="/etc/fernd/jwks.json")
    assert "exactly one of jwks_url and jwks_file, not both" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://id.example.org/jwks.json",
        "ftp://id.example.org/jwks.json",
        "id.example.org/jwks.json",
        "https:///jwks.json",
    ],
)
def test_jwks_url_rejected(url: str) -> None:
    assert "jwks_url" in issuer_rejection(jwks_url=url)


def test_empty_jwks_file_rejected() -> None:
    assert "jwks_file" in issuer_rejection(jwks_url=None, jwks_file="")


def test_missing_algorithms_rejected() -> None:
    assert "algorithms is missing" in issuer_rejection(algorithms=None)


def test_empty_algorithms_rejected() -> None:
    assert "non-empty list" in issuer_rejection(algorithms=[])


@pytest.mark.parametrize("name", ["none", "None", "NONE"])
def test_algorithm_none_rejected(name: str) -> None:
    message = issuer_rejection(algorithms=["RS256", name])
    assert f"algorithm {name!r} accepts unsigned tokens" in message


@pytest.mark.parametrize("name", ["HS256", "HS384", "HS512", "hs256"])
def test_symmetric_algorithm_rejected(name: str) -> None:
    assert "symmetric" in issuer_rejection(algorithms=[name])


@pytest.mark.parametrize("name", ["ES512", "PS512", "ES256K", "RSA-OAEP", "Ed448"])
def test_unsupported_algorithm_rejected(name: str) -> None:
    message = issuer_rejection(algorithms=[name])
    assert f"algorithm {name!r} is not supported" in message
    assert "RS256" in message


def test_non_string_algorithm_rejected() -> None:
    assert "not a string" in issuer_rejection(algorithms=[256])


def test_internal_issuer_rejected() -> None:
    message = issuer_rejection(issuer="internal")
    assert "reserved for fernd's internal users" in message


def test_own_issuer_rejected() -> None:
    assert "fernd's own issuer" in issuer_rejection(issuer="fernd")


def test_own_issuer_follows_local_issuer_name() -> None:
    table = {"issuers": [entry(issuer="https://fern.example.com")]}
    with pytest.raises(ConfigError, match="fernd's own issuer"):
        load_auth_settings(table, local_issuer="https://fern.example.com")


def test_duplicate_issuer_rejected() -> None:
    message = rejection({"issuers": [entry(), entry()]})
    assert "entry 2" in message
    assert "listed twice" in message


@pytest.mark.parametrize("audience", ["", 5, ["fernd"]])
def test_invalid_audience_rejected(audience: Any) -> None:
    assert "audience" in issuer_rejection(audience=audience)


def test_unknown_claim_field_rejected() -> None:
    message = issuer_rejection(claims={"nickname": "nick"})
    assert "unknown field 'nickname'" in message
    assert "user_id" in message


def test_empty_claim_name_rejected() -> None:
    assert "claims.email" in issuer_rejection(claims={"email": ""})


def test_claims_not_table_rejected() -> None:
    assert "claims must be a table" in issuer_rejection(claims="sub")


@pytest.mark.parametrize("max_age", [0, 29, 60.5, True, "3600", float("inf")])
def test_invalid_jwks_max_age_rejected(max_age: Any) -> None:
    assert "jwks_max_age" in issuer_rejection(jwks_max_age=max_age)


# --- from fernd.toml to `fernd serve` -----------------------------------------


def test_auth_table_read_from_config_file(tmp_path: Path) -> None:
    path = tmp_path / "fernd.toml"
    path.write_text(
        "[[auth.issuers]]\n"
        f'issuer = "{ISSUER}"\n'
        f'jwks_url = "{JWKS_URL}"\n'
        'algorithms = ["ES256"]\n'
        'claims = { email = "mail" }\n',
        encoding="utf-8",
    )
    settings = load_settings(path, {}, {})
    [issuer] = load_auth_settings(settings.auth).issuers
    assert issuer.algorithms == ("ES256",)
    assert issuer.claim_names("email") == ("mail",)


def test_serve_refuses_invalid_auth_table(tmp_path: Path) -> None:
    path = tmp_path / "fernd.toml"
    path.write_text(
        f'[[auth.issuers]]\nissuer = "{ISSUER}"\njwks_url = "{JWKS_URL}"\n'
        'algorithms = ["HS256"]\n',
        encoding="utf-8",
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "serve",
            "--config",
            str(path),
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert "fernd: error: Invalid [[auth.issuers]] entry 1" in completed.stderr
    assert "'HS256' is symmetric" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "data" / "fernd.db").exists()
