"""Notification retries in process, on Trio's autojump clock: the real
registry, renderer and Apprise channel, aimed at a loopback port where
nothing listens, so every attempt fails without waiting on real time."""

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from uuid6 import uuid7

from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.constants import MAX_RETRY_ATTEMPTS
from fernd.domain.users import User
from fernd.notifications.channels import AppriseChannels
from fernd.notifications.render import Renderer
from fernd.notifications.service import NotificationService
from fernd.notifications.settings import load_notification_settings
from fernd.runtime.messages import CommandRequest
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import SharedDatabase

MOTHER = User(user_id="retry-mother", issuer="fernd", name="Alex Morgan")
CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)
START = datetime(2026, 12, 1, tzinfo=UTC)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _virtual_now() -> datetime:
    return START + timedelta(seconds=trio.current_time())


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LabourRegistry]:
    settings = Settings(data_dir=str(tmp_path), hibernate_after=3600.0)
    shared = SharedDatabase.open(tmp_path, "FULL")
    table = {
        "email": {
            "host": "127.0.0.1",
            "port": _closed_port(),
            "tls": "none",
            "from_address": "fernd@example.org",
        }
    }
    service = NotificationService(
        Renderer("https://track.example.org"),
        AppriseChannels(load_notification_settings(table)),
        shared,
    )
    registry = LabourRegistry(
        settings, shared, clock=_virtual_now, notification_sender=service
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield registry
        nursery.cancel_scope.cancel()
    shared.close()


async def test_invite_fails_six_times_then_marked_failed(
    registry: LabourRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    labour_id = uuid7()
    now = _virtual_now()
    plan = cmd.PlanLabour(
        labour_id=labour_id,
        mother_id=MOTHER.user_id,
        mother_name="Alex Morgan",
        first_labour=True,
        due_date=now,
    )
    assert (await registry.plan(CommandRequest(plan, MOTHER, CALLER, now))).ok
    invite = cmd.SendLabourInvite(
        labour_id=labour_id, invite_email="friend@example.org"
    )
    outcome = await registry.execute(
        labour_id, CommandRequest(invite, MOTHER, CALLER, _virtual_now())
    )
    assert outcome.ok

    # 2 + 4 + 8 + 16 + 32 s of backoff plus up to 30 s per attempt: at most
    # 242 s of virtual time, which the autojump clock skips.
    await trio.sleep(400)

    effects = await registry.query(
        labour_id, lambda actor: actor.database.effect_rows()
    )
    assert effects is not None
    notification = next(e for e in effects if e["effect_type"] == "NOTIFICATION")
    assert notification["status"] == "FAILED"
    assert notification["attempts"] == MAX_RETRY_ATTEMPTS
    assert notification["next_attempt_at"] is None
    log = registry.shared.notifications(labour_id=labour_id)
    assert [row["status"] for row in log] == ["FAILED"]
    assert log[0]["attempts"] == MAX_RETRY_ATTEMPTS
