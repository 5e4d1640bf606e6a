"""The fernd command line: `fernd token`, `fernd serve` and help output."""

import os
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import fernd
from fernd.auth.tokens import LocalTokenIssuer, TokenVerifier, VerifiedToken
from fernd.cli import main
from fernd.config import Settings

pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning"
)

REPO_ROOT = Path(fernd.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # No FERND_* variables and no fernd.toml unless a test sets them.
    for variable in list(os.environ):
        if variable.startswith("FERND_"):
            monkeypatch.delenv(variable)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    # Stands in for fernd.server, which `fernd serve` imports when it runs.
    received: list[Settings] = []
    module = types.ModuleType("fernd.server")

    def serve(settings: Settings) -> None:
        received.append(settings)

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fernd.server", module)
    return received


def verify(data_dir: Path, token: str) -> VerifiedToken:
    return TokenVerifier(LocalTokenIssuer(data_dir)).verify(token)


def run_token(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    status = main(["token", *arguments])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out.strip()


# --- fernd token ------------------------------------------------------------


def test_token_prints_verifiable_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    token = run_token(
        capsys,
        "--data-dir",
        str(data_dir),
        "--user-id",
        "user-1",
        "--name",
        "Ann Lee",
        "--first-name",
        "Ann",
        "--last-name",
        "Lee",
        "--email",
        "ann@example.com",
        "--phone-number",
        "+447700900123",
    )
    user = verify(data_dir, token).user
    assert user.user_id == "user-1"
    assert user.name == "Ann Lee"
    assert user.first_name == "Ann"
    assert user.last_name == "Lee"
    assert user.email == "ann@example.com"
    assert user.phone_number == "+447700900123"


def test_token_prints_only_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["token", "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"]
    )
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.count("\n") == 1
    assert captured.out.count(".") == 2


def test_token_ttl_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = run_token(
        capsys,
        *("--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"),
        *("--ttl", "120"),
    )
    remaining = verify(tmp_path, token).expires_at - datetime.now(UTC)
    assert timedelta(seconds=110) < remaining <= timedelta(seconds=120)


def test_token_ttl_defaults_to_token_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = run_token(
        capsys, "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"
    )
    remaining = verify(tmp_path, token).expires_at - datetime.now(UTC)
    assert timedelta(seconds=86390) < remaining <= timedelta(seconds=86400)


def test_token_ttl_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERND_TOKEN_LIFETIME", "300")
    token = run_token(
        capsys, "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"
    )
    remaining = verify(tmp_path, token).expires_at - datetime.now(UTC)
    assert timedelta(seconds=290) < remaining <= timedelta(seconds=300)


def test_token_data_dir_from_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "configured"
    config = tmp_path / "fernd.toml"
    config.write_text(f'data_dir = "{data_dir}"\n')
    token = run_token(capsys, "--config", str(config), "--user-id", "u", "--name", "U")
    assert verify(data_dir, token).user.user_id == "u"


def test_token_data_dir_option_beats_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERND_DATA_DIR", str(tmp_path / "from-env"))
    data_dir = tmp_path / "from-flag"
    token = run_token(
        capsys, "--data-dir", str(data_dir), "--user-id", "u", "--name", "U"
    )
    assert verify(data_dir, token).user.user_id == "u"
    assert not (tmp_path / "from-env").exists()


def test_token_reuses_installation_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer = LocalTokenIssuer(tmp_path)
    token = run_token(
        capsys, "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"
    )
    assert TokenVerifier(issuer).verify(token).user.user_id == "u"


def test_token_as_subprocess(tmp_path: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("FERND_")
    }
    environment["PYTHONPATH"] = str(REPO_ROOT)
    data_dir = tmp_path / "data"
    completed = subprocess.run(
        [
            sys.executable,
            *("-m", "fernd", "token", "--data-dir", str(data_dir)),
            *("--user-id", "user-9", "--name", "Sub Process", "--ttl", "60"),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    verified = verify(data_dir, completed.stdout.strip())
    assert verified.user.user_id == "user-9"
    assert verified.user.name == "Sub Process"


def test_error_as_subprocess_prints_one_line(tmp_path: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("FERND_")
    }
    environment["PYTHONPATH"] = str(REPO_ROOT)
    environment["FERND_HIBERNATE_AFTER"] = "0"
    completed = subprocess.run(
        [sys.executable, "-m", "fernd", "token", "--user-id", "u", "--name", "U"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1
    assert "FERND_HIBERNATE_AFTER" in completed.stderr


# --- errors -----------------------------------------------------------------


def assert_one_line_error(
    status: int, capsys: pytest.CaptureFixture[str], *fragments: str
) -> None:
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith("fernd: error: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err


def test_token_missing_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.toml"
    status = main(["token", "--config", str(missing), "--user-id", "u", "--name", "U"])
    assert_one_line_error(status, capsys, str(missing), "not found")


def test_token_invalid_environment_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERND_TOKEN_LIFETIME", "forever")
    status = main(["token", "--user-id", "u", "--name", "U"])
    assert_one_line_error(status, capsys, "FERND_TOKEN_LIFETIME", "token_lifetime")


def test_token_corrupt_signing_key_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = tmp_path / "keys" / "signing-key.json"
    key_path.parent.mkdir()
    key_path.write_text("{}")
    status = main(
        ["token", "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"]
    )
    assert_one_line_error(status, capsys, str(key_path))


def test_token_unusable_data_dir_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    status = main(
        ["token", "--data-dir", str(not_a_directory), "--user-id", "u", "--name", "U"]
    )
    assert_one_line_error(status, capsys)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--user-id", "u"],
        ["--name", "U"],
        ["--user-id", "", "--name", "U"],
        ["--user-id", "u", "--name", "U", "--ttl", "0"],
        ["--user-id", "u", "--name", "U", "--ttl", "1.5"],
        ["--user-id", "u", "--name", "U", "--unknown"],
    ],
)
def test_token_usage_error_exits_2(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", *arguments]) == 2
    assert "usage: fernd" in capsys.readouterr().err


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: fernd" in capsys.readouterr().err


# --- fernd serve ------------------------------------------------------------


def test_serve_passes_settings_to_server(served: list[Settings]) -> None:
    assert main(["serve"]) == 0
    assert served == [Settings()]


def test_serve_flags_override_environment_and_file(
    tmp_path: Path, served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fernd.toml"
    config.write_text(
        'bind = "127.0.0.1:7000"\ndata_dir = "/from/file"\nsnapshot_interval = 5\n'
    )
    monkeypatch.setenv("FERND_BIND", "127.0.0.1:7100")
    monkeypatch.setenv("FERND_DATA_DIR", "/from/env")
    monkeypatch.setenv("FERND_HIBERNATE_AFTER", "0.5")
    status = main(
        [
            *("serve", "--config", str(config), "--bind", "127.0.0.1:7200"),
            *("--data-dir", "/from/flag"),
        ]
    )
    assert status == 0
    (settings,) = served
    assert settings.bind == "127.0.0.1:7200"
    assert settings.data_dir == "/from/flag"
    assert settings.hibernate_after == 0.5
    assert settings.snapshot_interval == 5


def test_serve_reads_fernd_toml_in_working_directory(
    clean_environment: Path, served: list[Settings]
) -> None:
    (clean_environment / "fernd.toml").write_text('bind = "127.0.0.1:7300"\n')
    assert main(["serve"]) == 0
    assert served[0].bind == "127.0.0.1:7300"


def test_serve_invalid_bind_exits_2(
    served: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["serve", "--bind", "localhost"])
    assert_one_line_error(status, capsys, "--bind", "HOST:PORT")
    assert served == []


def test_serve_unknown_config_key_exits_2(
    tmp_path: Path, served: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fernd.toml"
    config.write_text("port = 8000\n")
    status = main(["serve", "--config", str(config)])
    assert_one_line_error(status, capsys, "'port'", str(config))
    assert served == []


def test_serve_interrupted_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fernd.server")

    def serve(settings: Settings) -> None:
        raise KeyboardInterrupt

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fernd.server", module)
    assert main(["serve"]) == 130


# --- help -------------------------------------------------------------------


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    output = capsys.readouterr().out
    assert "serve" in output
    assert "token" in output
    assert "FERND_" in output


def test_serve_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    output = " ".join(capsys.readouterr().out.split())
    for option in ("--config PATH", "--bind HOST:PORT", "--data-dir DIR"):
        assert option in output
    assert "127.0.0.1:8000" in output
    assert "./data" in output
    assert "./fernd.toml" in output


def test_token_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--help"]) == 0
    output = " ".join(capsys.readouterr().out.split())
    for option in (
        "--data-dir DIR",
        "--user-id ID",
        "--name NAME",
        "--first-name X",
        "--last-name X",
        "--email X",
        "--phone-number X",
        "--ttl SECONDS",
        "--config PATH",
    ):
        assert option in output
    assert "in seconds" in output
    assert "86400" in output


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert fernd.__version__ in capsys.readouterr().out


def test_token_admin_option_makes_admin_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = run_token(
        capsys,
        *("--data-dir", str(tmp_path), "--user-id", "operator", "--name", "Op"),
        "--admin",
    )
    assert verify(tmp_path, token).is_admin is True


def test_token_without_admin_option_not_admin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = run_token(
        capsys, "--data-dir", str(tmp_path), "--user-id", "u", "--name", "U"
    )
    assert verify(tmp_path, token).is_admin is False


def test_token_help_describes_admin_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--help"]) == 0
    output = " ".join(capsys.readouterr().out.split())
    assert "--admin" in output
    assert "signing key can mint" in output
