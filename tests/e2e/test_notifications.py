"""Notifications, invites and contact-us against real local receivers.

Each server runs `fernd serve --config` with `[notifications]` pointing at an
aiosmtpd server and a small HTTP server on 127.0.0.1, so every email and SMS
fernd sends is caught and counted. Notification effects are retried 2, 4, 8,
16 and 32 s after the 1st to 5th failure, so the retry tests wait for real
seconds. The whole module took about 45 s on a 2-core machine.
"""

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fernd.notifications.channels import stable_message_id
from tests.e2e.helpers import (
    Member,
    ask,
    eventually,
    expect_status,
    join,
    plan_labour,
    send,
)
from tests.e2e.mail_helpers import (
    ConfiguredServer,
    JsonSink,
    MailSink,
    ReceivedMail,
    write_config,
)

PUBLIC_URL = "https://track.example.org"
ADMIN_USER_ID = "notifications-admin"
SMS_PATH = "/sms"
OPERATOR_PATH = "/operator"
# Maximum SMS text length fernd sends, in Unicode code points.
SMS_MAX_LENGTH = 320
# Delivery to a local receiver takes milliseconds; this bounds a hang.
DELIVERY_TIMEOUT_SECONDS = 10.0
# After the expected messages arrived, duplicates would arrive within this.
QUIET_PERIOD_SECONDS = 1.0
# Waits after the 1st and 2nd failure of an effect, in seconds.
FIRST_RETRY_DELAY_SECONDS = 2.0
SECOND_RETRY_DELAY_SECONDS = 4.0
# Upper bound on the time from the start of an attempt to the failure that
# schedules its retry, in seconds. A refused connection took about 0.2 s.
RETRY_SCHEDULE_SLACK_SECONDS = 1.0
# Longer than the first retry delay, so a retry would have happened by then.
NO_RETRY_WATCH_SECONDS = FIRST_RETRY_DELAY_SECONDS + 0.5
# SendLabourInvite succeeds this many times per labour in 24 hours.
INVITE_LIMIT = 10
INVITE_WINDOW_SECONDS = 86400
# Contact-us messages accepted from one client address per hour.
CONTACT_LIMIT = 5
CONTACT_WINDOW_SECONDS = 3600
FINAL_LOG_STATUSES = frozenset({"SENT", "FAILED", "SKIPPED"})

MOTHER_ID = "mother-alex"
MOTHER_CLAIMS: dict[str, Any] = {
    "name": "Alex Morgan",
    "first_name": "Alex",
    "email": "alex@example.org",
}
PAT_ID = "subscriber-pat"
PAT_CLAIMS: dict[str, Any] = {
    "name": "Pat Lee",
    "first_name": "Pat",
    "email": "pat@example.org",
    "phone_number": "+447700900123",
}
SAM_ID = "subscriber-sam"
SAM_CLAIMS: dict[str, Any] = {
    "name": "Sam Roe",
    "first_name": "Sam",
    "email": "sam@example.org",
}
KIM_ID = "subscriber-kim"
KIM_CLAIMS: dict[str, Any] = {
    "name": "Kim Ash",
    "first_name": "Kim",
    "email": "kim@example.org",
}
INVITE_ADDRESS = "friend@example.org"
ANNOUNCEMENT = "Waters have broken, off to hospital"
COMPLETION_NOTES = "Baby Jo arrived at 3 kg"
SUBSCRIBER_FIRST_NAMES = {
    PAT_CLAIMS["email"]: "Pat",
    SAM_CLAIMS["email"]: "Sam",
    KIM_CLAIMS["email"]: "Kim",
}
# Every contact detail the full labour's users carry.
CONTACT_DETAILS = (
    MOTHER_CLAIMS["email"],
    PAT_CLAIMS["email"],
    PAT_CLAIMS["phone_number"],
    SAM_CLAIMS["email"],
    KIM_CLAIMS["email"],
)
_EMAIL_ADDRESS = re.compile(r"[^\s@\"]+@[^\s@\"]+")


# Receivers and servers


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def json_sink() -> Iterator[JsonSink]:
    sink = JsonSink()
    sink.start()
    yield sink
    sink.stop()


def _start_server(
    directory: Path,
    *,
    smtp_port: int | None = None,
    sms: JsonSink | None = None,
    operator: JsonSink | None = None,
) -> ConfiguredServer:
    config = write_config(
        directory / "fernd.toml",
        public_url=PUBLIC_URL,
        admin_user_ids=[ADMIN_USER_ID],
        smtp_port=smtp_port,
        sms_url=sms.url(SMS_PATH + "?:to={to}") if sms else None,
        operator_urls=[operator.url(OPERATOR_PATH)] if operator else None,
    )
    server = ConfiguredServer(directory / "data", config)
    server.start()
    return server


def _stop(server: ConfiguredServer) -> None:
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def notifying_server(
    tmp_path: Path, mail_sink: MailSink, json_sink: JsonSink
) -> Iterator[ConfiguredServer]:
    """A server that sends email to `mail_sink`, and SMS and operator
    messages to `json_sink`."""
    server = _start_server(
        tmp_path, smtp_port=mail_sink.port, sms=json_sink, operator=json_sink
    )
    yield server
    _stop(server)


# Requests and waits


def _mother(server: ConfiguredServer) -> httpx.Client:
    return server.client(server.token(MOTHER_ID, **MOTHER_CLAIMS))


def _admin(server: ConfiguredServer) -> httpx.Client:
    return server.client(server.token(ADMIN_USER_ID, name="Operator"))


def _set_contact_methods(
    server: ConfiguredServer, labour_id: str, member: Member, methods: list[str]
) -> None:
    with server.client(member.token) as client:
        reply = send(
            client,
            "Subscriber",
            "UpdateNotificationMethods",
            labour_id=labour_id,
            subscription_id=member.subscription_id,
            notification_methods=methods,
        )
        expect_status(reply, 204)


def _announce(mother: httpx.Client, labour_id: str, message: str) -> None:
    reply = send(
        mother,
        "LabourUpdate",
        "PostLabourUpdate",
        labour_id=labour_id,
        labour_update_type="ANNOUNCEMENT",
        message=message,
    )
    expect_status(reply, 204)


def _invite(mother: httpx.Client, labour_id: str) -> httpx.Response:
    return send(
        mother,
        "Labour",
        "SendLabourInvite",
        labour_id=labour_id,
        invite_email=INVITE_ADDRESS,
    )


def _notification_log(
    server: ConfiguredServer, labour_id: str, **filters: str
) -> list[dict[str, Any]]:
    """Return the labour's notification log rows from the admin route."""
    with _admin(server) as admin:
        reply = admin.get(
            "/api/v1/admin/notifications",
            params={"labour_id": labour_id, "limit": "100", **filters},
        )
    rows: list[dict[str, Any]] = expect_status(reply, 200).json()
    return rows


def _wait_for_log(
    server: ConfiguredServer,
    labour_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = DELIVERY_TIMEOUT_SECONDS,
) -> list[dict[str, Any]]:
    return eventually(lambda: _notification_log(server, labour_id), done, timeout)


def _all_final(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    """Return a check that the log has `count` rows, each SENT, FAILED or
    SKIPPED."""

    def done(rows: list[dict[str, Any]]) -> bool:
        return len(rows) == count and all(
            row["status"] in FINAL_LOG_STATUSES for row in rows
        )

    return done


def _newest_sent(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and rows[0]["status"] == "SENT"


def _notification_effects(
    server: ConfiguredServer, labour_id: str
) -> list[dict[str, Any]]:
    return [
        row for row in server.effects(labour_id) if row["effect_type"] == "NOTIFICATION"
    ]


def _ledger_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _mail_to(messages: list[ReceivedMail], address: str) -> list[ReceivedMail]:
    return [mail for mail in messages if mail.envelope_recipients == (address,)]


def _run_admin_cli(
    server: ConfiguredServer, command: str, *arguments: str
) -> list[dict[str, Any]]:
    """Run `fernd admin <command> --data-dir DIR` and return its JSON lines."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "admin",
            command,
            "--config",
            str(server.config_path),
            "--data-dir",
            str(server.data_dir),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=server.data_dir.parent,
        env=server.env,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"fernd admin {command} exited with {completed.returncode}:"
            f" {completed.stderr}"
        )
    return [json.loads(line) for line in completed.stdout.splitlines()]


# A full labour: requests, approvals, begin, announcement, completion


@dataclass(frozen=True)
class FullLabour:
    """The outcome of one labour from plan to completion, with what the
    receivers caught once every notification reached its final status."""

    server: ConfiguredServer
    labour_id: str
    mail: list[ReceivedMail]
    sms: list[dict[str, Any]]
    log: list[dict[str, Any]]
    log_text: str


# Emails of the full labour: (recipient, subject), each exactly once.
FULL_LABOUR_EMAILS = Counter(
    [
        ("alex@example.org", "Pat Lee would like to follow your labour"),
        ("alex@example.org", "Sam Roe would like to follow your labour"),
        ("alex@example.org", "Kim Ash would like to follow your labour"),
        ("pat@example.org", "Alex Morgan approved your request"),
        ("sam@example.org", "Alex Morgan approved your request"),
        ("kim@example.org", "Alex Morgan approved your request"),
        ("pat@example.org", "Alex Morgan has gone into labour"),
        ("sam@example.org", "Alex Morgan has gone into labour"),
        ("kim@example.org", "Alex Morgan has gone into labour"),
        ("pat@example.org", "New update from Alex Morgan"),
        ("sam@example.org", "New update from Alex Morgan"),
        ("kim@example.org", "New update from Alex Morgan"),
        ("pat@example.org", "Alex's baby has arrived"),
    ]
)
# Texts of the SMS sent to Pat, in order.
FULL_LABOUR_SMS = [
    f"Hi Pat, Alex has gone into labour. Follow along: {PUBLIC_URL}",
    f"Hi Pat, Alex shared an update: {ANNOUNCEMENT}",
    f"Hi Pat, Alex's baby has arrived! They wrote: {COMPLETION_NOTES}",
]
FULL_LABOUR_NOTIFICATIONS = sum(FULL_LABOUR_EMAILS.values()) + len(FULL_LABOUR_SMS)


@pytest.fixture(scope="module")
def full_labour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullLabour]:
    """Run one labour with three subscribers to completion.

    Pat follows by email and SMS, Sam and Kim by email. After the
    announcement the mother removes Sam and Kim unsubscribes, so only Pat
    hears of the completion.
    """
    mail = MailSink()
    mail.start()
    json_sink = JsonSink()
    json_sink.start()
    server = _start_server(
        tmp_path_factory.mktemp("full-labour"), smtp_port=mail.port, sms=json_sink
    )
    try:
        with _mother(server) as mother:
            labour_id = plan_labour(mother)
            pat = join(server, mother, labour_id, PAT_ID, **PAT_CLAIMS)
            sam = join(server, mother, labour_id, SAM_ID, **SAM_CLAIMS)
            kim = join(server, mother, labour_id, KIM_ID, **KIM_CLAIMS)
            _set_contact_methods(server, labour_id, pat, ["EMAIL", "SMS"])
            _set_contact_methods(server, labour_id, sam, ["EMAIL"])
            _set_contact_methods(server, labour_id, kim, ["EMAIL"])
            expect_status(
                send(mother, "Labour", "BeginLabour", labour_id=labour_id), 204
            )
            _announce(mother, labour_id, ANNOUNCEMENT)

            reply = send(
                mother,
                "Subscription",
                "RemoveSubscriber",
                labour_id=labour_id,
                subscription_id=sam.subscription_id,
            )
            expect_status(reply, 204)
            with server.client(kim.token) as client:
                reply = send(
                    client,
                    "Subscriber",
                    "Unsubscribe",
                    labour_id=labour_id,
                    subscription_id=kim.subscription_id,
                )
                expect_status(reply, 204)
            reply = send(
                mother,
                "Labour",
                "CompleteLabour",
                labour_id=labour_id,
                notes=COMPLETION_NOTES,
            )
            expect_status(reply, 204)

        _wait_for_log(server, labour_id, _all_final(FULL_LABOUR_NOTIFICATIONS))
        mail.wait_for(sum(FULL_LABOUR_EMAILS.values()), DELIVERY_TIMEOUT_SECONDS)
        json_sink.wait_for(SMS_PATH, len(FULL_LABOUR_SMS), DELIVERY_TIMEOUT_SECONDS)
        time.sleep(QUIET_PERIOD_SECONDS)
        with _admin(server) as admin:
            reply = admin.get(
                "/api/v1/admin/notifications",
                params={"labour_id": labour_id, "limit": "100"},
            )
        expect_status(reply, 200)
        yield FullLabour(
            server=server,
            labour_id=labour_id,
            mail=mail.messages,
            sms=[post.body for post in json_sink.posts(SMS_PATH)],
            log=reply.json(),
            log_text=reply.text,
        )
    finally:
        _stop(server)
        mail.stop()
        json_sink.stop()


def test_full_labour_emails_once_each(full_labour: FullLabour) -> None:
    received = Counter(
        (mail.envelope_recipients[0], mail.subject) for mail in full_labour.mail
    )
    assert received == FULL_LABOUR_EMAILS


def test_full_labour_emails_have_text_and_html(full_labour: FullLabour) -> None:
    for mail in full_labour.mail:
        text = mail.part("plain")
        html = mail.part("html")
        assert text is not None, f"{mail.subject!r} has no text part"
        assert html is not None, f"{mail.subject!r} has no HTML part"
        assert text.rstrip().endswith(PUBLIC_URL), f"{mail.subject!r}: {text!r}"
        assert PUBLIC_URL in html, f"{mail.subject!r} HTML lacks the link"


def test_full_labour_emails_addressed_to_recipient(full_labour: FullLabour) -> None:
    for mail in full_labour.mail:
        assert mail.message["To"] == mail.envelope_recipients[0]
        assert mail.message["From"] == "fernd <fernd@example.org>"


def test_full_labour_entity_ref_id_from_key(full_labour: FullLabour) -> None:
    expected = sorted(
        stable_message_id(row["idempotency_key"])
        for row in full_labour.log
        if row["channel"] == "EMAIL"
    )
    received = sorted(str(mail.entity_ref_id) for mail in full_labour.mail)
    assert None not in [mail.entity_ref_id for mail in full_labour.mail]
    assert received == expected


def _template_field_values(mail: ReceivedMail) -> list[str]:
    """Return the values of the fields of the template behind `mail`."""
    subject = mail.subject
    if subject.endswith(" would like to follow your labour"):
        requester = subject.removesuffix(" would like to follow your labour")
        return ["Alex", requester, PUBLIC_URL]
    subscriber = SUBSCRIBER_FIRST_NAMES[mail.envelope_recipients[0]]
    values = [subscriber, "Alex Morgan", PUBLIC_URL]
    if subject != "Alex Morgan approved your request":
        values.append("Alex")
    if subject == "New update from Alex Morgan":
        values.append(ANNOUNCEMENT)
    if subject == "Alex's baby has arrived":
        values.append(COMPLETION_NOTES)
    return values


def test_full_labour_email_bodies_hold_every_field(
    full_labour: FullLabour,
) -> None:
    for mail in full_labour.mail:
        text = str(mail.part("plain"))
        html = str(mail.part("html"))
        for value in _template_field_values(mail):
            assert value in text, f"{mail.subject!r} text lacks {value!r}"
            assert value in html, f"{mail.subject!r} HTML lacks {value!r}"


def test_full_labour_sms_texts(full_labour: FullLabour) -> None:
    assert [post["message"] for post in full_labour.sms] == FULL_LABOUR_SMS


def test_full_labour_sms_addressed_to_phone(full_labour: FullLabour) -> None:
    assert [post["to"] for post in full_labour.sms] == [
        PAT_CLAIMS["phone_number"]
    ] * len(FULL_LABOUR_SMS)


def test_full_labour_sms_within_length_limit(full_labour: FullLabour) -> None:
    for post in full_labour.sms:
        assert len(post["message"]) <= SMS_MAX_LENGTH


def test_removed_and_unsubscribed_get_nothing_after(full_labour: FullLabour) -> None:
    for address in ("sam@example.org", "kim@example.org"):
        subjects = [mail.subject for mail in _mail_to(full_labour.mail, address)]
        assert "Alex's baby has arrived" not in subjects, address


def test_full_labour_log_all_sent(full_labour: FullLabour) -> None:
    assert len(full_labour.log) == FULL_LABOUR_NOTIFICATIONS
    assert {row["status"] for row in full_labour.log} == {"SENT"}
    assert {row["attempts"] for row in full_labour.log} == {1}


def test_full_labour_log_channels_and_templates(full_labour: FullLabour) -> None:
    pairs = Counter((row["channel"], row["template"]) for row in full_labour.log)
    assert pairs == Counter(
        {
            ("EMAIL", "SubscriberRequestedData"): 3,
            ("EMAIL", "SubscriberApprovedData"): 3,
            ("EMAIL", "LabourBegunData"): 3,
            ("EMAIL", "LabourAnnouncementData"): 3,
            ("EMAIL", "LabourCompletedWithNoteData"): 1,
            ("SMS", "LabourBegunData"): 1,
            ("SMS", "LabourAnnouncementData"): 1,
            ("SMS", "LabourCompletedWithNoteData"): 1,
        }
    )


def test_full_labour_log_holds_no_contact_details(full_labour: FullLabour) -> None:
    for detail in CONTACT_DETAILS:
        assert detail not in full_labour.log_text
    assert _EMAIL_ADDRESS.findall(full_labour.log_text) == []
    assert PAT_CLAIMS["phone_number"].lstrip("+") not in full_labour.log_text


def test_full_labour_server_log_holds_no_contact_details(
    full_labour: FullLabour,
) -> None:
    server_log = full_labour.server.log()
    for detail in CONTACT_DETAILS:
        assert detail not in server_log


def test_admin_cli_lists_notification_log(full_labour: FullLabour) -> None:
    rows = _run_admin_cli(
        full_labour.server,
        "notifications",
        "--labour-id",
        full_labour.labour_id,
    )
    assert sorted(row["idempotency_key"] for row in rows) == sorted(
        row["idempotency_key"] for row in full_labour.log
    )
    assert {row["status"] for row in rows} == {"SENT"}


def test_admin_cli_filters_by_channel_and_status(full_labour: FullLabour) -> None:
    labour = ("--labour-id", full_labour.labour_id)
    sms = _run_admin_cli(
        full_labour.server, "notifications", *labour, "--channel", "SMS"
    )
    failed = _run_admin_cli(
        full_labour.server, "notifications", *labour, "--status", "FAILED"
    )
    assert len(sms) == len(FULL_LABOUR_SMS)
    assert {row["channel"] for row in sms} == {"SMS"}
    assert failed == []


# Failures and retries


def test_email_retried_until_smtp_returns(tmp_path: Path) -> None:
    """SMTP is down for the first two attempts and up for the third."""
    mail = MailSink()
    server = _start_server(tmp_path, smtp_port=mail.port)
    try:
        with _mother(server) as mother:
            labour_id = plan_labour(mother)
            expect_status(_invite(mother, labour_id), 204)

        observed: list[tuple[str, int]] = []
        delays: dict[int, float] = {}

        def sample() -> list[dict[str, Any]]:
            rows = _notification_log(server, labour_id)
            if rows:
                observed.append((rows[0]["status"], rows[0]["attempts"]))
            for effect in _notification_effects(server, labour_id):
                if effect["next_attempt_at"] is not None:
                    wait = _ledger_time(effect["next_attempt_at"]) - _ledger_time(
                        effect["last_attempt_at"]
                    )
                    delays[effect["attempts"]] = wait.total_seconds()
            return rows

        eventually(
            sample,
            lambda rows: (
                bool(rows)
                and rows[0]["status"] == "FAILED"
                and rows[0]["attempts"] == 2
                and 2 in delays
            ),
            timeout=FIRST_RETRY_DELAY_SECONDS + DELIVERY_TIMEOUT_SECONDS,
        )
        mail.start()
        try:
            rows = _wait_for_log(
                server,
                labour_id,
                _newest_sent,
                SECOND_RETRY_DELAY_SECONDS + DELIVERY_TIMEOUT_SECONDS,
            )
            time.sleep(QUIET_PERIOD_SECONDS)
            received = mail.messages
        finally:
            mail.stop()
        effects = _notification_effects(server, labour_id)
        server_log = server.log()
    finally:
        _stop(server)

    assert ("FAILED", 1) in observed
    assert ("FAILED", 2) in observed
    assert (
        FIRST_RETRY_DELAY_SECONDS
        <= delays[1]
        < (FIRST_RETRY_DELAY_SECONDS + RETRY_SCHEDULE_SLACK_SECONDS)
    )
    assert (
        SECOND_RETRY_DELAY_SECONDS
        <= delays[2]
        < (SECOND_RETRY_DELAY_SECONDS + RETRY_SCHEDULE_SLACK_SECONDS)
    )
    assert len(received) == 1
    assert received[0].envelope_recipients == (INVITE_ADDRESS,)
    assert rows[0]["status"] == "SENT"
    assert rows[0]["attempts"] == 3
    assert rows[0]["last_error"] is None
    assert effects[0]["status"] == "COMPLETED"
    assert effects[0]["attempts"] == 3
    assert "retrying in 2 s" in server_log
    assert INVITE_ADDRESS not in server_log


def test_email_retry_keeps_entity_ref_id(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    """The relay rejects the first attempt with 451 and accepts the retry."""
    mail_sink.reject_next(1)
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        expect_status(_invite(mother, labour_id), 204)
    accepted = mail_sink.wait_for(
        1, FIRST_RETRY_DELAY_SECONDS + DELIVERY_TIMEOUT_SECONDS
    )
    rows = _wait_for_log(notifying_server, labour_id, _newest_sent)
    rejected = mail_sink.rejected

    assert len(rejected) == 1
    assert len(accepted) == 1
    assert rejected[0].entity_ref_id is not None
    assert accepted[0].entity_ref_id == rejected[0].entity_ref_id
    # The header comes from the ledger's key; the log hides the invite address.
    ledger_keys = [
        effect["idempotency_key"]
        for effect in _notification_effects(notifying_server, labour_id)
    ]
    assert accepted[0].entity_ref_id in {stable_message_id(key) for key in ledger_keys}
    assert "@" not in rows[0]["idempotency_key"]
    assert rows[0]["attempts"] == 2


def test_missing_email_fails_without_retry(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    """A subscriber whose token has no email claim follows by EMAIL."""
    subscriber_id = "subscriber-no-email"
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        member = join(
            notifying_server, mother, labour_id, subscriber_id, name="Robin Vale"
        )
        _set_contact_methods(notifying_server, labour_id, member, ["EMAIL"])
        expect_status(send(mother, "Labour", "BeginLabour", labour_id=labour_id), 204)
    # The mother's request email, the approval and the labour-begun email.
    _wait_for_log(notifying_server, labour_id, _all_final(3))
    time.sleep(NO_RETRY_WATCH_SECONDS)
    rows = _notification_log(notifying_server, labour_id)
    failed_rows = [row for row in rows if row["recipient_id"] == subscriber_id]
    failed_effects = [
        effect
        for effect in _notification_effects(notifying_server, labour_id)
        if f":notify:{subscriber_id}:" in effect["idempotency_key"]
    ]
    expected_error = f"user {subscriber_id} has no email"

    assert len(failed_rows) == 2
    assert {row["status"] for row in failed_rows} == {"FAILED"}
    assert {row["attempts"] for row in failed_rows} == {1}
    assert {row["last_error"] for row in failed_rows} == {expected_error}
    assert len(failed_effects) == 2
    assert {effect["status"] for effect in failed_effects} == {"FAILED"}
    assert {effect["attempts"] for effect in failed_effects} == {1}
    assert {effect["last_error"] for effect in failed_effects} == {expected_error}
    assert {effect["next_attempt_at"] for effect in failed_effects} == {None}
    assert _mail_to(mail_sink.messages, "alex@example.org") != []


def test_unconfigured_channels_skip_notifications(tmp_path: Path) -> None:
    server = _start_server(tmp_path)
    try:
        with _mother(server) as mother:
            labour_id = plan_labour(mother)
            join(server, mother, labour_id, PAT_ID, **PAT_CLAIMS)
        # The mother's request email and Pat's approval email.
        rows = _wait_for_log(server, labour_id, _all_final(2))
        time.sleep(QUIET_PERIOD_SECONDS)
        sent = _notification_log(server, labour_id, status="SENT")
        effects = _notification_effects(server, labour_id)
        server_log = server.log()
    finally:
        _stop(server)

    assert "Notifications are disabled" in server_log
    assert [row["status"] for row in rows] == ["SKIPPED", "SKIPPED"]
    assert [effect["status"] for effect in effects] == ["SKIPPED", "SKIPPED"]
    assert sent == []


def test_unconfigured_sms_channel_skipped(tmp_path: Path, mail_sink: MailSink) -> None:
    """Email is configured and SMS is not; Pat follows by both."""
    server = _start_server(tmp_path, smtp_port=mail_sink.port)
    try:
        with _mother(server) as mother:
            labour_id = plan_labour(mother)
            member = join(server, mother, labour_id, PAT_ID, **PAT_CLAIMS)
            _set_contact_methods(server, labour_id, member, ["EMAIL", "SMS"])
            expect_status(
                send(mother, "Labour", "BeginLabour", labour_id=labour_id), 204
            )
        # Request, approval, and labour begun by email and by SMS.
        rows = _wait_for_log(server, labour_id, _all_final(4))
        server_log = server.log()
    finally:
        _stop(server)
    statuses = Counter((row["channel"], row["status"]) for row in rows)

    assert "Notifications are disabled" not in server_log
    assert statuses == Counter({("EMAIL", "SENT"): 3, ("SMS", "SKIPPED"): 1})
    assert len(mail_sink.messages) == 3


def test_sent_email_not_resent_after_kill(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        expect_status(_invite(mother, labour_id), 204)
    effects = eventually(
        lambda: _notification_effects(notifying_server, labour_id),
        lambda rows: [row["status"] for row in rows] == ["COMPLETED"],
        DELIVERY_TIMEOUT_SECONDS,
    )
    assert [row["status"] for row in effects] == ["COMPLETED"]
    notifying_server.kill()

    notifying_server.start()
    with _mother(notifying_server) as mother:
        reply = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
        expect_status(reply, 200)
    time.sleep(FIRST_RETRY_DELAY_SECONDS + QUIET_PERIOD_SECONDS)
    rows = _notification_log(notifying_server, labour_id)

    assert len(mail_sink.messages) == 1
    assert [(row["status"], row["attempts"]) for row in rows] == [("SENT", 1)]


# Invites


def test_invite_email_sent_to_address(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        expect_status(_invite(mother, labour_id), 204)
    received = mail_sink.wait_for(1, DELIVERY_TIMEOUT_SECONDS)
    rows = _wait_for_log(notifying_server, labour_id, _all_final(1))

    assert len(received) == 1
    assert received[0].envelope_recipients == (INVITE_ADDRESS,)
    assert received[0].subject == "Alex Morgan invites you to follow their labour"
    assert str(received[0].part("plain")).rstrip().endswith(PUBLIC_URL)
    assert rows[0]["template"] == "LabourInviteData"
    assert rows[0]["status"] == "SENT"
    assert rows[0]["recipient_id"] != INVITE_ADDRESS


def test_invite_log_holds_no_address(notifying_server: ConfiguredServer) -> None:
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        expect_status(_invite(mother, labour_id), 204)
    _wait_for_log(notifying_server, labour_id, _all_final(1))
    with _admin(notifying_server) as admin:
        reply = admin.get(
            "/api/v1/admin/notifications", params={"labour_id": labour_id}
        )

    assert INVITE_ADDRESS not in expect_status(reply, 200).text


def test_eleventh_invite_rate_limited(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        statuses = [_invite(mother, labour_id).status_code for _ in range(INVITE_LIMIT)]
        over_limit = _invite(mother, labour_id)
    received = mail_sink.wait_for(INVITE_LIMIT, DELIVERY_TIMEOUT_SECONDS)

    assert statuses == [204] * INVITE_LIMIT
    assert over_limit.status_code == 429
    assert 0 < int(over_limit.headers["Retry-After"]) <= INVITE_WINDOW_SECONDS
    assert len(received) == INVITE_LIMIT


# Contact-us


def _contact_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Jamie Doe",
        "email": "jamie@example.org",
        "category": "question",
        "message": "How do I export my contractions?",
    }
    body.update(changes)
    return body


def test_contact_message_stored_and_forwarded(
    notifying_server: ConfiguredServer, json_sink: JsonSink
) -> None:
    with notifying_server.client() as client:
        reply = client.post("/api/v1/contact-us", json=_contact_body())
    message_id = expect_status(reply, 200).json()["id"]
    forwarded = json_sink.wait_for(OPERATOR_PATH, 1, DELIVERY_TIMEOUT_SECONDS)

    def stored() -> list[dict[str, Any]]:
        with _admin(notifying_server) as admin:
            listing = admin.get("/api/v1/admin/contact-messages")
        rows: list[dict[str, Any]] = expect_status(listing, 200).json()
        return [row for row in rows if row["id"] == message_id]

    rows = eventually(stored, lambda rows: bool(rows) and rows[0]["forwarded"] == 1)

    assert len(rows) == 1
    assert rows[0]["email"] == "jamie@example.org"
    assert rows[0]["category"] == "question"
    assert rows[0]["message"] == "How do I export my contractions?"
    assert rows[0]["forwarded"] == 1
    assert len(forwarded) == 1
    assert forwarded[0].body["title"] == "fernd contact: question"
    assert "How do I export my contractions?" in forwarded[0].body["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": " "},
        {"name": "x" * 256},
        {"email": "jamie.example.org"},
        {"category": "complaint"},
        {"message": "  "},
        {"message": "x" * 5001},
    ],
    ids=[
        "blank-name",
        "long-name",
        "invalid-email",
        "unknown-category",
        "blank-message",
        "long-message",
    ],
)
def test_contact_invalid_field_rejected(
    notifying_server: ConfiguredServer, changes: dict[str, Any]
) -> None:
    with notifying_server.client() as client:
        reply = client.post("/api/v1/contact-us", json=_contact_body(**changes))

    assert reply.status_code == 400
    assert reply.json()["code"] == "validation_error"


def test_sixth_contact_message_rate_limited(
    notifying_server: ConfiguredServer,
) -> None:
    with notifying_server.client() as client:
        statuses = [
            client.post("/api/v1/contact-us", json=_contact_body()).status_code
            for _ in range(CONTACT_LIMIT)
        ]
        over_limit = client.post("/api/v1/contact-us", json=_contact_body())

    assert statuses == [200] * CONTACT_LIMIT
    assert over_limit.status_code == 429
    assert 0 < int(over_limit.headers["Retry-After"]) <= CONTACT_WINDOW_SECONDS


@pytest.mark.parametrize(
    "route", ["/api/v1/admin/notifications", "/api/v1/admin/contact-messages"]
)
def test_admin_route_forbidden_to_non_admin(
    notifying_server: ConfiguredServer, route: str
) -> None:
    token = notifying_server.token(MOTHER_ID, **MOTHER_CLAIMS)
    with notifying_server.client(token) as client:
        reply = client.get(route)

    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"


# Rendering


def test_announcement_html_escapes_script(
    notifying_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        member = join(notifying_server, mother, labour_id, SAM_ID, **SAM_CLAIMS)
        _set_contact_methods(notifying_server, labour_id, member, ["EMAIL"])
        _announce(mother, labour_id, "<script>alert(1)</script>")
    # The mother's request email, the approval and the announcement.
    received = mail_sink.wait_for(3, DELIVERY_TIMEOUT_SECONDS)
    announcement = [
        mail for mail in received if mail.subject == "New update from Alex Morgan"
    ]
    assert len(announcement) == 1
    html = str(announcement[0].part("html"))

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_long_announcement_sms_cut_to_limit(
    notifying_server: ConfiguredServer, json_sink: JsonSink
) -> None:
    message = "Contractions are strong and regular now. " * 24
    with _mother(notifying_server) as mother:
        labour_id = plan_labour(mother)
        member = join(notifying_server, mother, labour_id, PAT_ID, **PAT_CLAIMS)
        _set_contact_methods(notifying_server, labour_id, member, ["SMS"])
        _announce(mother, labour_id, message.strip())
    posts = json_sink.wait_for(SMS_PATH, 1, DELIVERY_TIMEOUT_SECONDS)

    assert len(posts) == 1
    text = posts[0].body["message"]
    assert len(text) <= SMS_MAX_LENGTH
    assert text.startswith("Hi Pat, Alex shared an update: Contractions are strong")
    assert text.endswith("…")
