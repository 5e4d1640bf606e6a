"""Prometheus metrics, the readiness check and the JSON log formatter.

Counters are process-wide, so each test reads a counter before and after the
work it does and checks the difference. Runtime metrics come from the real
registry and actors with SQLite triggers injecting faults, on Trio's autojump
clock where a test waits for retries.
"""

import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trio
import trio.testing
from prometheus_client import REGISTRY as GLOBAL_REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from uuid6 import uuid7

from fernd import observability
from fernd.api.health_routes import NotReady, check_readiness, probe_data_dir
from fernd.cli import LOG_FORMAT, configure_logging
from fernd.config import ConfigError, Settings, load_settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.constants import LABOUR_NAME_MAX_LENGTH, MAX_RETRY_ATTEMPTS
from fernd.domain.enums import LabourUpdateType
from fernd.domain.users import User
from fernd.notifications.channels import AppriseChannels
from fernd.notifications.render import Renderer
from fernd.notifications.service import NotificationService
from fernd.notifications.settings import load_notification_settings
from fernd.observability import REGISTRY, JsonFormatter, render_metrics
from fernd.runtime.actor import LabourActor
from fernd.runtime.messages import CommandRequest
from fernd.runtime.metrics import Metrics
from fernd.runtime.registry import LabourRegistry
from fernd.runtime.sockets import SocketHub
from fernd.storage.shared_db import SharedDatabase

MOTHER = User(user_id="metrics-mother", issuer="fernd", name="Alex Morgan")
CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)
START = datetime(2026, 12, 1, tzinfo=UTC)
# Virtual seconds a test waits for retries: more than the catch-up backoff of
# 2 + 4 + 8 + 16 + 32 s before a projector's fifth failure.
RETRY_WAIT_SECONDS = 400.0
LABOUR_UPDATE_PROJECTOR = "LabourUpdateReadModelProjector"
LABOUR_STATUS_PROJECTOR = "LabourStatusReadModelProjector"


def _sample(name: str, **labels: str) -> float:
    """Return the current value of one sample of REGISTRY, 0 when absent."""
    value = REGISTRY.get_sample_value(name, labels)
    return value if value is not None else 0.0


def _virtual_now() -> datetime:
    return START + timedelta(seconds=trio.current_time())


def _request(command: cmd.AnyCommand) -> CommandRequest:
    return CommandRequest(command, MOTHER, CALLER, _virtual_now())


def _update(labour_id: UUID, message: str) -> cmd.PostLabourUpdate:
    return cmd.PostLabourUpdate(
        labour_id=labour_id,
        labour_update_type=LabourUpdateType.STATUS_UPDATE,
        message=message,
    )


def _plan(labour_id: UUID, labour_name: str | None = None) -> cmd.PlanLabour:
    return cmd.PlanLabour(
        labour_id=labour_id,
        mother_id=MOTHER.user_id,
        mother_name="Alex Morgan",
        first_labour=True,
        due_date=START,
        labour_name=labour_name,
    )


def _notifications(
    table: dict[str, Any], shared: SharedDatabase
) -> NotificationService:
    return NotificationService(
        Renderer("https://track.example.org"),
        AppriseChannels(load_notification_settings(table)),
        shared,
    )


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LabourRegistry]:
    """A running registry without notification channels: every notification
    effect is SKIPPED."""
    settings = Settings(data_dir=str(tmp_path), hibernate_after=1e9)
    shared = SharedDatabase.open(tmp_path, "FULL")
    registry = LabourRegistry(
        settings,
        shared,
        clock=_virtual_now,
        notification_sender=_notifications({}, shared),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield registry
        nursery.cancel_scope.cancel()
    shared.close()


async def _planned(registry: LabourRegistry) -> UUID:
    labour_id = uuid7()
    outcome = await registry.plan(_request(_plan(labour_id)))
    assert outcome.status == 204
    return labour_id


async def _actor(registry: LabourRegistry, labour_id: UUID) -> LabourActor:
    actor = await registry.query(labour_id, lambda actor: actor)
    assert actor is not None
    return actor


async def _wait_until_idle(actor: LabourActor) -> None:
    """Let the catch-up cycle and its effects finish."""
    with trio.fail_after(RETRY_WAIT_SECONDS):
        while actor.busy:
            await trio.sleep(0.01)


# Labels


def test_method_label_standard_method_kept() -> None:
    assert observability.method_label("POST") == "POST"


def test_method_label_unknown_method_is_other() -> None:
    assert observability.method_label("BREW") == observability.OTHER_METHOD


def test_route_label_unmatched_request() -> None:
    assert observability.route_label(None) == observability.UNMATCHED_ROUTE


def test_route_label_keeps_template() -> None:
    template = "/api/v1/timestamp/<labour_id>"
    assert observability.route_label(template) == template


# HTTP requests


def test_observe_http_request_counts_and_times() -> None:
    labels = {"method": "GET", "route": "/unit-test/<item>"}
    count_before = _sample("fernd_http_requests_total", status="200", **labels)
    sum_before = _sample("fernd_http_request_duration_seconds_sum", **labels)

    observability.observe_http_request("GET", "/unit-test/<item>", 200, 0.25)

    count = _sample("fernd_http_requests_total", status="200", **labels)
    assert count - count_before == 1
    duration_sum = _sample("fernd_http_request_duration_seconds_sum", **labels)
    assert duration_sum - sum_before == pytest.approx(0.25)


def test_observe_http_request_without_start_counts_only() -> None:
    labels = {"method": "GET", "route": "/unit-test/untimed"}
    timed_before = _sample("fernd_http_request_duration_seconds_count", **labels)

    observability.observe_http_request("GET", "/unit-test/untimed", 404, None)

    assert _sample("fernd_http_requests_total", status="404", **labels) >= 1
    timed = _sample("fernd_http_request_duration_seconds_count", **labels)
    assert timed == timed_before


def test_render_metrics_without_source_parses() -> None:
    observability.count_command("RenderCheck", 204)

    text = render_metrics(None).decode()

    families = {family.name for family in text_string_to_metric_families(text)}
    assert "fernd_commands" in families
    assert "fernd_command_batch_size" in families
    assert "fernd_labours_active" not in families


def test_metrics_registry_is_not_global() -> None:
    observability.count_command("GlobalCheck", 204)

    sample = GLOBAL_REGISTRY.get_sample_value(
        "fernd_commands_total", {"command": "GlobalCheck", "status": "204"}
    )
    assert sample is None


# Commands and group commit


async def test_commands_counted_by_name_and_status(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    accepted = {"command": "PostLabourUpdate", "status": "204"}
    rejected = {"command": "PostLabourUpdate", "status": "400"}
    accepted_before = _sample("fernd_commands_total", **accepted)
    rejected_before = _sample("fernd_commands_total", **rejected)

    for message in ("first", "   ", "third"):
        await registry.execute(labour_id, _request(_update(labour_id, message)))

    assert _sample("fernd_commands_total", **accepted) - accepted_before == 2
    assert _sample("fernd_commands_total", **rejected) - rejected_before == 1


async def test_command_on_unknown_labour_counted_404(
    registry: LabourRegistry,
) -> None:
    labels = {"command": "PostLabourUpdate", "status": "404"}
    before = _sample("fernd_commands_total", **labels)
    missing = uuid7()

    outcome = await registry.execute(missing, _request(_update(missing, "lost")))

    assert outcome.status == 404
    assert _sample("fernd_commands_total", **labels) - before == 1


async def test_refused_plan_counted_400(registry: LabourRegistry) -> None:
    labels = {"command": "PlanLabour", "status": "400"}
    before = _sample("fernd_commands_total", **labels)
    too_long = "x" * (LABOUR_NAME_MAX_LENGTH + 1)

    outcome = await registry.plan(_request(_plan(uuid7(), labour_name=too_long)))

    assert outcome.status == 400
    assert _sample("fernd_commands_total", **labels) - before == 1


async def test_group_commit_observed_as_one_batch(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    count_before = _sample("fernd_command_batch_size_count")
    sum_before = _sample("fernd_command_batch_size_sum")
    requests = [_request(_update(labour_id, f"update {index}")) for index in range(3)]

    actor.process_batch(requests)

    assert _sample("fernd_command_batch_size_count") - count_before == 1
    assert _sample("fernd_command_batch_size_sum") - sum_before == 3


# Catch-up retries and projector faults


async def test_failing_projector_counts_retries_then_fault(
    registry: LabourRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    await _wait_until_idle(actor)
    actor.database.connection.execute(
        "CREATE TRIGGER reject_updates BEFORE INSERT ON labour_updates"
        " BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    fault = {"scope": "labour", "projector": LABOUR_UPDATE_PROJECTOR}
    retries_before = _sample("fernd_catch_up_retries_total")
    faults_before = _sample("fernd_projector_faults_total", **fault)

    outcome = await actor.submit(_request(_update(labour_id, "posted")))
    assert outcome.status == 204
    with trio.fail_after(RETRY_WAIT_SECONDS):
        while not actor.projections.checkpoints[LABOUR_UPDATE_PROJECTOR].faulted:
            await trio.sleep(1)
    await _wait_until_idle(actor)

    # The commit's projection fails once; the cycle retries until the fifth
    # failure in a row faults the projector, and the next cycle skips it.
    assert _sample("fernd_catch_up_retries_total") - retries_before == 4
    assert _sample("fernd_projector_faults_total", **fault) - faults_before == 1


async def test_faulted_shared_projector_in_gauge(
    registry: LabourRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    await _wait_until_idle(actor)
    registry.shared.connection.execute(
        "CREATE TRIGGER reject_status BEFORE UPDATE ON labour_status"
        " BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    fault = {"scope": "shared", "projector": LABOUR_STATUS_PROJECTOR}
    faults_before = _sample("fernd_projector_faults_total", **fault)

    outcome = await actor.submit(_request(cmd.BeginLabour(labour_id=labour_id)))
    assert outcome.status == 204
    with trio.fail_after(RETRY_WAIT_SECONDS):
        while not actor.shared_checkpoints[LABOUR_STATUS_PROJECTOR].faulted:
            await trio.sleep(1)
    await _wait_until_idle(actor)

    faulted = observability.faulted_shared_projectors(registry.shared)
    assert faulted == {
        LABOUR_STATUS_PROJECTOR: 1,
        "SubscriptionStatusReadModelProjector": 0,
    }
    assert _sample("fernd_projector_faults_total", **fault) - faults_before == 1


# Effects


async def test_completed_command_effect_counted(registry: LabourRegistry) -> None:
    labels = {"effect_type": "COMMAND", "status": "COMPLETED"}
    before = _sample("fernd_effects_total", **labels)

    labour_id = await _planned(registry)
    await _wait_until_idle(await _actor(registry, labour_id))

    # The plan's only effect generates the share token.
    assert _sample("fernd_effects_total", **labels) - before == 1


async def test_notification_without_channel_counted_skipped(
    registry: LabourRegistry,
) -> None:
    labels = {"effect_type": "NOTIFICATION", "status": "SKIPPED"}
    before = _sample("fernd_effects_total", **labels)
    labour_id = await _planned(registry)
    invite = cmd.SendLabourInvite(
        labour_id=labour_id, invite_email="friend@example.org"
    )

    outcome = await registry.execute(labour_id, _request(invite))
    assert outcome.ok
    await _wait_until_idle(await _actor(registry, labour_id))

    assert _sample("fernd_effects_total", **labels) - before == 1


async def test_failing_notification_counts_retries_then_failed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # An email relay on a loopback port where nothing listens: every attempt
    # fails at once with a refused connection.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = int(probe.getsockname()[1])
    settings = Settings(data_dir=str(tmp_path), hibernate_after=1e9)
    shared = SharedDatabase.open(tmp_path, "FULL")
    table = {
        "email": {
            "host": "127.0.0.1",
            "port": closed_port,
            "tls": "none",
            "from_address": "fernd@example.org",
        }
    }
    registry = LabourRegistry(
        settings,
        shared,
        clock=_virtual_now,
        notification_sender=_notifications(table, shared),
    )
    failed = {"effect_type": "NOTIFICATION", "status": "FAILED"}
    retried = {"effect_type": "NOTIFICATION"}
    failed_before = _sample("fernd_effects_total", **failed)
    retried_before = _sample("fernd_effect_retries_total", **retried)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        labour_id = await _planned(registry)
        invite = cmd.SendLabourInvite(
            labour_id=labour_id, invite_email="friend@example.org"
        )
        assert (await registry.execute(labour_id, _request(invite))).ok
        await trio.sleep(RETRY_WAIT_SECONDS)
        nursery.cancel_scope.cancel()
    shared.close()

    assert _sample("fernd_effects_total", **failed) - failed_before == 1
    retries = _sample("fernd_effect_retries_total", **retried) - retried_before
    assert retries == MAX_RETRY_ATTEMPTS - 1


# Values read at scrape time


async def test_render_metrics_reads_labours_and_sockets(
    registry: LabourRegistry,
) -> None:
    await _planned(registry)
    metrics = Metrics(registry, SocketHub(), registry.shared)

    text = render_metrics(metrics).decode()

    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }
    assert values["fernd_labours_active"] == 1
    assert values["fernd_labours_hibernated"] == 0
    assert values["fernd_websockets_open"] == 0
    assert values["fernd_labour_activations_total"] == 1


async def test_render_metrics_has_no_user_ids(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    await registry.execute(labour_id, _request(_update(labour_id, "hello")))
    metrics = Metrics(registry, SocketHub(), registry.shared)

    text = render_metrics(metrics).decode()

    assert MOTHER.user_id not in text
    assert str(labour_id) not in text


# Readiness


async def test_readiness_healthy_data_dir_passes(tmp_path: Path) -> None:
    shared = SharedDatabase.open(tmp_path, "FULL")
    try:
        await check_readiness(tmp_path, shared)
    finally:
        shared.close()
    leftovers = [path.name for path in tmp_path.iterdir() if path.name[0] == "."]
    assert leftovers == []


async def test_readiness_data_dir_replaced_by_file_fails(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shared = SharedDatabase.open(data_dir, "FULL")
    data_dir.rename(tmp_path / "moved")
    data_dir.write_text("not a directory")
    try:
        with pytest.raises(NotReady, match="data directory is not writable"):
            await check_readiness(data_dir, shared)
    finally:
        shared.close()


async def test_readiness_closed_shared_database_fails(tmp_path: Path) -> None:
    shared = SharedDatabase.open(tmp_path, "FULL")
    shared.close()

    with pytest.raises(NotReady, match="shared database query failed"):
        await check_readiness(tmp_path, shared)


def test_probe_data_dir_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_data_dir(tmp_path / "absent")


# JSON log lines


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.LogRecord(
        name="fernd.test",
        level=logging.WARNING,
        pathname=__file__,
        lineno=1,
        msg=message,
        args=args,
        exc_info=extra.get("exc_info"),  # type: ignore[arg-type]
    )


def test_json_formatter_writes_required_keys() -> None:
    record = _record("Labour %s closed at sequence %d", "abc", 7)
    record.created = 1_764_590_400.5

    entry = json.loads(JsonFormatter().format(record))

    assert entry == {
        "time": "2025-12-01T12:00:00.500Z",
        "level": "WARNING",
        "logger": "fernd.test",
        "message": "Labour abc closed at sequence 7",
    }


def test_json_formatter_includes_exception_text() -> None:
    try:
        raise RuntimeError("disk refused")
    except RuntimeError:
        record = _record("Commit failed", exc_info=sys.exc_info())

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "Commit failed"
    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: disk refused" in entry["exception"]


def test_json_formatter_keeps_record_on_one_line() -> None:
    record = _record("first line\nsecond line")

    line = JsonFormatter().format(record)

    assert "\n" not in line
    assert json.loads(line)["message"] == "first line\nsecond line"


def test_json_formatter_keeps_non_ascii_text() -> None:
    entry = json.loads(JsonFormatter().format(_record("Geburt in Köln")))
    assert entry["message"] == "Geburt in Köln"


# configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the root handlers and the levels that a test changes."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    named = {name: logging.getLogger(name).level for name in ("hypercorn.error",)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, named_level in named.items():
        logging.getLogger(name).setLevel(named_level)


def _fernd_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h.name == "fernd-stderr"]


def test_configure_logging_json_uses_json_formatter(restore_logging: None) -> None:
    configure_logging("INFO", "json")

    (handler,) = _fernd_handlers()
    assert isinstance(handler.formatter, JsonFormatter)


def test_configure_logging_text_uses_log_format(restore_logging: None) -> None:
    configure_logging("INFO", "text")

    (handler,) = _fernd_handlers()
    assert handler.formatter is not None
    assert handler.formatter._fmt == LOG_FORMAT


def test_configure_logging_twice_keeps_one_handler(restore_logging: None) -> None:
    configure_logging("INFO", "text")
    configure_logging("DEBUG", "json")

    handlers = _fernd_handlers()
    assert len(handlers) == 1
    assert logging.getLogger().level == logging.DEBUG


def test_configure_logging_sets_logger_levels(restore_logging: None) -> None:
    configure_logging("INFO", "text", {"hypercorn.error": "WARNING"})

    assert logging.getLogger("hypercorn.error").level == logging.WARNING
    assert logging.getLogger().level == logging.INFO


# Settings


def test_log_format_from_environment() -> None:
    settings = load_settings(None, {"FERND_LOG_FORMAT": "json"}, {})
    assert settings.log_format == "json"


def test_log_format_invalid_rejected() -> None:
    with pytest.raises(ConfigError, match="log_format") as raised:
        load_settings(None, {"FERND_LOG_FORMAT": "xml"}, {})
    assert '"text" or "json"' in str(raised.value)


def test_log_levels_from_config_file(tmp_path: Path) -> None:
    path = tmp_path / "fernd.toml"
    path.write_text('[log_levels]\n"hypercorn.error" = "WARNING"\n')

    settings = load_settings(path, {}, {})

    assert settings.log_levels == {"hypercorn.error": "WARNING"}


def test_log_levels_invalid_level_rejected(tmp_path: Path) -> None:
    path = tmp_path / "fernd.toml"
    path.write_text('[log_levels]\n"hypercorn.error" = "LOUD"\n')

    with pytest.raises(ConfigError, match="Invalid setting log_levels"):
        load_settings(path, {}, {})


def test_log_levels_empty_logger_name_rejected(tmp_path: Path) -> None:
    path = tmp_path / "fernd.toml"
    path.write_text('[log_levels]\n"" = "INFO"\n')

    with pytest.raises(ConfigError, match="Invalid setting log_levels"):
        load_settings(path, {}, {})


def test_log_levels_environment_variable_ignored() -> None:
    settings = load_settings(None, {"FERND_LOG_LEVELS": "WARNING"}, {})
    assert settings.log_levels == {}
