"""Operator routes against a real server: /healthz, /readyz, /metrics, and
JSON log lines with FERND_LOG_FORMAT=json."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FerndServer
from tests.e2e.helpers import expect_status, plan_labour, send, unique_user
from tests.e2e.ws_helpers import async_client, open_session

# Commands one test sends before it reads /metrics.
UPDATE_COUNT = 5


# A sample's name and labels.
SampleKey = tuple[str, frozenset[tuple[str, str]]]


def _metric_values(text: str) -> dict[SampleKey, float]:
    """Parse Prometheus text into {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(values: dict[SampleKey, float], name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


def _scrape(server: FerndServer) -> tuple[str, dict[SampleKey, float]]:
    """Return the text of `GET /metrics` and its parsed samples."""
    with server.client() as client:
        reply = expect_status(client.get("/metrics"), 200)
    return reply.text, _metric_values(reply.text)


def test_healthz_returns_ok(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_readyz_returns_ready(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready"}


def test_metrics_needs_no_token(fernd_server: FerndServer) -> None:
    with fernd_server.client() as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metrics_count_commands_and_requests(fernd_server: FerndServer) -> None:
    user_id = unique_user("metrics-mother")
    email = f"{user_id}@example.org"
    token = fernd_server.token(user_id, name="Alex Morgan", email=email)
    _, before = _scrape(fernd_server)

    with fernd_server.client(token) as client:
        labour_id = plan_labour(client)
        for index in range(UPDATE_COUNT):
            reply = send(
                client,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=labour_id,
                labour_update_type="STATUS_UPDATE",
                message=f"update {index}",
            )
            expect_status(reply, 204)
        empty = send(
            client,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=labour_id,
            labour_update_type="STATUS_UPDATE",
            message="   ",
        )
        expect_status(empty, 400)
    text, after = _scrape(fernd_server)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    update = "PostLabourUpdate"
    assert delta("fernd_commands_total", command=update, status="204") == UPDATE_COUNT
    assert delta("fernd_commands_total", command=update, status="400") == 1
    assert delta("fernd_commands_total", command="PlanLabour", status="204") == 1
    command_route = {"method": "POST", "route": "/api/v1/command"}
    assert (
        delta("fernd_http_requests_total", status="204", **command_route)
        == UPDATE_COUNT
    )
    assert (
        delta("fernd_http_request_duration_seconds_count", **command_route)
        == UPDATE_COUNT + 1
    )
    # Every accepted command was committed in some batch, one or more at once.
    assert delta("fernd_command_batch_size_sum") >= UPDATE_COUNT + 1
    assert _value(after, "fernd_labours_active") >= 1
    assert user_id not in text
    assert email not in text
    assert token not in text
    assert labour_id not in text


async def test_metrics_count_open_websocket(fernd_server: FerndServer) -> None:
    user_id = unique_user("socket-mother")
    token = fernd_server.token(user_id, name="Alex Morgan")
    with fernd_server.client(token) as client:
        labour_id = plan_labour(client)

    async with (
        open_session(fernd_server, labour_id, token),
        async_client(fernd_server, None) as client,
    ):
        reply = expect_status(await client.get("/metrics"), 200)

    values = _metric_values(reply.text)
    assert _value(values, "fernd_websockets_open") >= 1
    assert _value(values, "fernd_websockets_opened_total") >= 1


def test_metrics_unmatched_path_not_a_label(fernd_server: FerndServer) -> None:
    probe_path = f"/{unique_user('probe')}"
    with fernd_server.client() as client:
        assert client.get(probe_path).status_code == 404
    text, values = _scrape(fernd_server)

    assert probe_path not in text
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert _value(values, "fernd_http_requests_total", **unmatched) >= 1


def test_readyz_unavailable_while_data_dir_is_a_file(
    fresh_server: FerndServer,
) -> None:
    # Root ignores permission bits, so the data dir is swapped for a regular
    # file: the server keeps its open databases, but no new file can be made.
    fresh_server.start()
    data_dir = fresh_server.data_dir
    moved = data_dir.with_name("data-moved")
    data_dir.rename(moved)
    data_dir.write_text("not a directory")
    try:
        with fresh_server.client() as client:
            reply = client.get("/readyz")
    finally:
        data_dir.unlink()
        moved.rename(data_dir)

    assert reply.status_code == 503
    assert reply.json()["code"] == "internal_error"
    assert "data directory is not writable" in reply.json()["message"]
    with fresh_server.client() as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").status_code == 200


@pytest.fixture
def json_log_server(tmp_path: Path) -> Iterator[FerndServer]:
    server = FerndServer(tmp_path / "data", {"FERND_LOG_FORMAT": "json"})
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def test_json_log_format_lines_parse(json_log_server: FerndServer) -> None:
    json_log_server.start()
    with json_log_server.client() as client:
        expect_status(client.get("/healthz"), 200)
    assert json_log_server.stop() == 0

    lines = json_log_server.log().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries, "the server wrote no log lines"
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    messages = [entry["message"] for entry in entries]
    assert any(message.startswith("fernd serving on ") for message in messages)
    assert any(message == "fernd stopped" for message in messages)


def test_readyz_reports_missing_data_dir(fresh_server: FerndServer) -> None:
    fresh_server.start()
    moved = fresh_server.data_dir.with_name("data-gone")
    fresh_server.data_dir.rename(moved)
    try:
        with fresh_server.client() as client:
            reply = client.get("/readyz")
    finally:
        moved.rename(fresh_server.data_dir)

    assert reply.status_code == 503
    assert "No such file or directory" in reply.json()["message"]
