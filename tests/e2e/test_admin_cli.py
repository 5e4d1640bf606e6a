"""`fernd admin projectors|effects|retry-effect|rebuild` against a real
running server, with the administrator token they sign themselves."""

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import plan_labour


def _admin(server: FerndServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "admin",
            *args,
            "--server",
            server.base_url,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def labour(fernd_server: FerndServer) -> Iterator[str]:
    with fernd_server.client(fernd_server.token("cli-mother", "Cli Mother")) as client:
        yield plan_labour(client)


def test_projectors_prints_the_checkpoints(
    fernd_server: FerndServer, labour: str
) -> None:
    result = _admin(fernd_server, "projectors", "--labour", labour)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["labour_id"] == labour
    assert report["last_sequence"] >= 1
    assert all(not p["faulted"] for p in report["projectors"])


def test_effects_prints_the_ledger(fernd_server: FerndServer, labour: str) -> None:
    everything = _admin(fernd_server, "effects", "--labour", labour)
    failed = _admin(fernd_server, "effects", "--labour", labour, "--status", "FAILED")

    assert everything.returncode == 0, everything.stderr
    assert isinstance(json.loads(everything.stdout), list)
    assert json.loads(failed.stdout) == []


def test_rebuild_runs_the_admin_command(fernd_server: FerndServer, labour: str) -> None:
    result = _admin(fernd_server, "rebuild", "--labour", labour)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Read models rebuilt"


def test_refusals_are_reported_with_the_server_message(
    fernd_server: FerndServer, labour: str
) -> None:
    unknown_effect = _admin(
        fernd_server, "retry-effect", "--labour", labour, "--effect", str(uuid.uuid4())
    )
    unknown_labour = _admin(fernd_server, "projectors", "--labour", str(uuid.uuid4()))
    bad_id = _admin(fernd_server, "projectors", "--labour", "../../etc")

    assert unknown_effect.returncode == 1
    assert unknown_effect.stderr.strip() == "fernd: error: 404: Effect not found"
    assert unknown_labour.returncode == 1
    assert unknown_labour.stderr.strip() == "fernd: error: 404: Labour not found"
    assert bad_id.returncode == 2
    assert "is not a labour id" in bad_id.stderr


def test_unreachable_server_is_reported(fernd_server: FerndServer, labour: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "admin",
            "projectors",
            "--labour",
            labour,
            "--server",
            "http://127.0.0.1:9",
            "--data-dir",
            str(fernd_server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "cannot reach fernd at http://127.0.0.1:9" in result.stderr
