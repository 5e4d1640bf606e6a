"""Loading settings from fernd.toml, FERND_* variables and overrides."""

import logging
from pathlib import Path

import pytest

from fernd.config import (
    BindAddress,
    ConfigError,
    Settings,
    load_settings,
    parse_bind,
)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "fernd.toml"


@pytest.fixture(autouse=True)
def empty_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Keeps the repository's own fernd.toml from being picked up by default.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_config(directory: Path, text: str) -> Path:
    path = directory / "custom.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_settings_without_sources_gives_defaults() -> None:
    assert load_settings(None, {}, {}) == Settings()


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.bind == "127.0.0.1:8000"
    assert settings.data_dir == "./data"
    assert settings.hibernate_after == 30.0
    assert settings.command_batch_limit == 256
    assert settings.snapshot_interval == 200
    assert settings.sqlite_synchronous == "FULL"
    assert settings.allowed_origins == []
    assert settings.public_url == "http://localhost:8000"
    assert settings.admin_user_ids == []
    assert settings.token_lifetime == 86400
    assert settings.token_leeway == 30
    assert settings.log_level == "INFO"
    assert settings.auth == {}
    assert settings.notifications == {}


def test_load_settings_reads_fernd_toml_in_working_directory(
    empty_working_directory: Path,
) -> None:
    (empty_working_directory / "fernd.toml").write_text("snapshot_interval = 7\n")
    assert load_settings(None, {}, {}).snapshot_interval == 7


def test_load_settings_reads_explicit_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'bind = "0.0.0.0:9000"\n'
        "hibernate_after = 2.5\n"
        'allowed_origins = ["https://a.example.com"]\n'
        'admin_user_ids = ["admin-1"]\n'
        'sqlite_synchronous = "NORMAL"\n',
    )
    settings = load_settings(path, {}, {})
    assert settings.bind == "0.0.0.0:9000"
    assert settings.hibernate_after == 2.5
    assert settings.allowed_origins == ["https://a.example.com"]
    assert settings.admin_user_ids == ["admin-1"]
    assert settings.sqlite_synchronous == "NORMAL"


def test_load_settings_file_integer_accepted_for_float(tmp_path: Path) -> None:
    path = write_config(tmp_path, "hibernate_after = 1\n")
    settings = load_settings(path, {}, {})
    assert settings.hibernate_after == 1.0
    assert isinstance(settings.hibernate_after, float)


def test_load_settings_env_overrides_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'bind = "127.0.0.1:9000"\n')
    settings = load_settings(path, {"FERND_BIND": "127.0.0.1:9100"}, {})
    assert settings.bind == "127.0.0.1:9100"


def test_load_settings_override_beats_env_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'data_dir = "/from/file"\n')
    settings = load_settings(
        path, {"FERND_DATA_DIR": "/from/env"}, {"data_dir": "/from/flag"}
    )
    assert settings.data_dir == "/from/flag"


def test_load_settings_keeps_file_value_not_set_elsewhere(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'data_dir = "/from/file"\nsnapshot_interval = 9\n')
    settings = load_settings(
        path, {"FERND_DATA_DIR": "/from/env"}, {"data_dir": "/from/flag"}
    )
    assert settings.snapshot_interval == 9


def test_load_settings_none_override_means_not_given(tmp_path: Path) -> None:
    settings = load_settings(None, {"FERND_BIND": "127.0.0.1:9100"}, {"bind": None})
    assert settings.bind == "127.0.0.1:9100"


def test_load_settings_env_fractional_hibernate_after() -> None:
    settings = load_settings(None, {"FERND_HIBERNATE_AFTER": "0.5"}, {})
    assert settings.hibernate_after == 0.5


def test_load_settings_env_parses_integers() -> None:
    environ = {
        "FERND_COMMAND_BATCH_LIMIT": "512",
        "FERND_SNAPSHOT_INTERVAL": " 50 ",
        "FERND_TOKEN_LIFETIME": "600",
        "FERND_TOKEN_LEEWAY": "0",
    }
    settings = load_settings(None, environ, {})
    assert settings.command_batch_limit == 512
    assert settings.snapshot_interval == 50
    assert settings.token_lifetime == 600
    assert settings.token_leeway == 0


def test_load_settings_env_splits_lists_on_commas() -> None:
    environ = {
        "FERND_ALLOWED_ORIGINS": "https://a.example.com, https://b.example.com:8443,",
        "FERND_ADMIN_USER_IDS": "admin-1,,admin-2",
    }
    settings = load_settings(None, environ, {})
    assert settings.allowed_origins == [
        "https://a.example.com",
        "https://b.example.com:8443",
    ]
    assert settings.admin_user_ids == ["admin-1", "admin-2"]


def test_load_settings_empty_env_list_is_empty(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'admin_user_ids = ["admin-1"]\n')
    settings = load_settings(path, {"FERND_ADMIN_USER_IDS": ""}, {})
    assert settings.admin_user_ids == []


def test_load_settings_env_string_settings() -> None:
    environ = {
        "FERND_SQLITE_SYNCHRONOUS": "NORMAL",
        "FERND_LOG_LEVEL": "DEBUG",
        "FERND_PUBLIC_URL": "https://fern.example.com",
    }
    settings = load_settings(None, environ, {})
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.log_level == "DEBUG"
    assert settings.public_url == "https://fern.example.com"


def test_load_settings_ignores_unrelated_env_vars() -> None:
    settings = load_settings(None, {"HOME": "/root", "FERNDX": "1"}, {})
    assert settings == Settings()


def test_load_settings_unknown_fernd_env_var_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fernd.config"):
        settings = load_settings(None, {"FERND_HIBERNATE_AFTR": "1"}, {})
    assert settings == Settings()
    assert "FERND_HIBERNATE_AFTR" in caplog.text


def test_load_settings_keeps_raw_tables(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "[notifications]\n"
        'email_from = "fern@example.com"\n'
        "[[auth.issuers]]\n"
        'issuer = "https://id.example.com"\n',
    )
    settings = load_settings(path, {}, {})
    assert settings.notifications == {"email_from": "fern@example.com"}
    assert settings.auth == {"issuers": [{"issuer": "https://id.example.com"}]}


def test_repository_fernd_toml_loads(tmp_path: Path) -> None:
    settings = load_settings(REPO_CONFIG, {}, {})
    assert settings.bind == "127.0.0.1:8000"
    assert settings.data_dir == "./data"


def test_repository_fernd_toml_sets_every_setting() -> None:
    text = REPO_CONFIG.read_text(encoding="utf-8")
    for name in Settings.__struct_fields__:
        if name in ("auth", "notifications"):
            assert f"[{name}]" in text
        else:
            assert f"\n{name} = " in text, name


def test_load_settings_missing_explicit_file_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="not found") as raised:
        load_settings(missing, {}, {})
    assert str(missing) in str(raised.value)


def test_load_settings_directory_as_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_settings(tmp_path, {}, {})


def test_load_settings_invalid_toml_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "bind = \n")
    with pytest.raises(ConfigError, match="Invalid TOML") as raised:
        load_settings(path, {}, {})
    assert str(path) in str(raised.value)


def test_load_settings_unknown_file_key_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "hibernate_afterr = 3\n")
    with pytest.raises(
        ConfigError, match="Unknown setting 'hibernate_afterr'"
    ) as raised:
        load_settings(path, {}, {})
    assert str(path) in str(raised.value)
    assert "hibernate_after" in str(raised.value).split("known settings:")[1]


def test_load_settings_unknown_override_rejected() -> None:
    with pytest.raises(ConfigError, match="Unknown setting 'port'"):
        load_settings(None, {}, {"port": 80})


FILE_ERRORS = [
    ('hibernate_after = "fast"', "hibernate_after", "number of seconds above 0"),
    ("hibernate_after = 0", "hibernate_after", "number of seconds above 0"),
    ("hibernate_after = -1.5", "hibernate_after", "number of seconds above 0"),
    ("hibernate_after = inf", "hibernate_after", "finite"),
    ("hibernate_after = nan", "hibernate_after", "finite"),
    ("command_batch_limit = 0", "command_batch_limit", "from 1 to 10000"),
    ("command_batch_limit = 10001", "command_batch_limit", "from 1 to 10000"),
    ("command_batch_limit = 2.5", "command_batch_limit", "from 1 to 10000"),
    ("command_batch_limit = true", "command_batch_limit", "from 1 to 10000"),
    ("snapshot_interval = 0", "snapshot_interval", "at least 1"),
    ('sqlite_synchronous = "OFF"', "sqlite_synchronous", '"FULL" or "NORMAL"'),
    ("allowed_origins = 'https://a.example.com'", "allowed_origins", "list of"),
    ('allowed_origins = ["https://a.example.com/app"]', "allowed_origins", "path"),
    ('allowed_origins = ["a.example.com"]', "allowed_origins", "no scheme"),
    ('public_url = "ftp://example.com"', "public_url", "http or https URL"),
    ('public_url = "localhost:8000"', "public_url", "http or https URL"),
    ('admin_user_ids = "admin-1"', "admin_user_ids", "list of non-empty"),
    ('admin_user_ids = ["admin-1", ""]', "admin_user_ids", "list of non-empty"),
    ("token_lifetime = 0", "token_lifetime", "at least 1"),
    ("token_leeway = -1", "token_leeway", "0 or more"),
    ('log_level = "verbose"', "log_level", '"DEBUG"'),
    ('data_dir = ""', "data_dir", "non-empty directory path"),
    ("data_dir = 5", "data_dir", "non-empty directory path"),
    ('bind = "localhost"', "bind", "HOST:PORT"),
    ("auth = 5", "auth", "TOML table"),
    ('notifications = "x"', "notifications", "TOML table"),
]


@pytest.mark.parametrize(("line", "setting", "form"), FILE_ERRORS)
def test_load_settings_invalid_file_value_rejected(
    tmp_path: Path, line: str, setting: str, form: str
) -> None:
    path = write_config(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, {}, {})
    message = str(raised.value)
    assert f"Invalid setting {setting} " in message
    assert f"from {path}" in message
    assert form in message


ENV_ERRORS = [
    ("FERND_HIBERNATE_AFTER", "0", "number of seconds above 0"),
    ("FERND_HIBERNATE_AFTER", "soon", "number of seconds above 0"),
    ("FERND_HIBERNATE_AFTER", "", "number of seconds above 0"),
    ("FERND_HIBERNATE_AFTER", "inf", "finite"),
    ("FERND_COMMAND_BATCH_LIMIT", "10001", "from 1 to 10000"),
    ("FERND_COMMAND_BATCH_LIMIT", "many", "from 1 to 10000"),
    ("FERND_SNAPSHOT_INTERVAL", "-3", "at least 1"),
    ("FERND_SQLITE_SYNCHRONOUS", "OFF", '"FULL" or "NORMAL"'),
    ("FERND_TOKEN_LIFETIME", "1.5e", "at least 1"),
    ("FERND_TOKEN_LEEWAY", "-1", "0 or more"),
    ("FERND_LOG_LEVEL", "LOUD", '"DEBUG"'),
    ("FERND_BIND", "127.0.0.1:99999", "above 65535"),
    ("FERND_BIND", "127.0.0.1:http", "not a number"),
    ("FERND_BIND", ":8000", "HOST:PORT"),
    ("FERND_ALLOWED_ORIGINS", "https://a.example.com,b.example.com", "no scheme"),
    ("FERND_PUBLIC_URL", "example.com", "http or https URL"),
]


@pytest.mark.parametrize(("variable", "value", "form"), ENV_ERRORS)
def test_load_settings_invalid_env_value_rejected(
    variable: str, value: str, form: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {variable: value}, {})
    message = str(raised.value)
    setting = variable.removeprefix("FERND_").lower()
    assert f"Invalid setting {setting} " in message
    assert f"from environment variable {variable}" in message
    assert form in message


def test_load_settings_invalid_override_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {}, {"bind": "nowhere"})
    message = str(raised.value)
    assert "Invalid setting bind " in message
    assert "from command-line option --bind" in message
    assert "HOST:PORT" in message


def test_load_settings_override_wrong_type_rejected() -> None:
    with pytest.raises(ConfigError, match="command-line option --data-dir"):
        load_settings(None, {}, {"data_dir": 5})


def test_load_settings_env_table_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fernd.config"):
        settings = load_settings(None, {"FERND_AUTH": "x"}, {})
    assert settings.auth == {}
    assert "FERND_AUTH" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8000", BindAddress("127.0.0.1", 8000)),
        ("0.0.0.0:0", BindAddress("0.0.0.0", 0)),
        ("localhost:65535", BindAddress("localhost", 65535)),
        ("[::1]:8080", BindAddress("::1", 8080)),
    ],
)
def test_parse_bind_valid(value: str, expected: BindAddress) -> None:
    assert parse_bind(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "8000",
        "localhost",
        ":8000",
        "localhost:",
        "localhost:65536",
        "localhost:-1",
        "localhost:80a",
        "localhost:٣",
        "::1:8000",
        "[::1:8000",
        "[]:8000",
    ],
)
def test_parse_bind_malformed_rejected(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_bind(value)


def test_settings_bind_address_property() -> None:
    settings = load_settings(None, {"FERND_BIND": "0.0.0.0:9000"}, {})
    assert settings.bind_address == BindAddress("0.0.0.0", 9000)


def test_settings_bind_address_malformed_rejected() -> None:
    settings = Settings(bind="no-port")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        _ = settings.bind_address
