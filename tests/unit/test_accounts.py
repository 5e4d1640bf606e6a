"""AccountService on a real shared database in a temp dir: races between
concurrent requests, expiry, and what is stored."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from fernd.auth.accounts import (
    AccountRefused,
    AccountService,
    Credentials,
    ProfileChanges,
    Registration,
    ResetConfirmation,
)
from fernd.auth.tokens import LocalTokenIssuer
from fernd.storage.accounts_db import AccountRow, AccountStore
from fernd.storage.shared_db import SharedDatabase

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


class Outbox:
    """Collects reset links instead of emailing them; runs sends at once."""

    def __init__(self) -> None:
        self.links: list[str] = []
        self.pending: list = []  # type: ignore[type-arg]

    async def mail(self, account: AccountRow, link: str) -> None:
        self.links.append(link)

    def spawn(self, function) -> None:  # type: ignore[no-untyped-def]
        self.pending.append(function)

    async def flush(self) -> None:
        while self.pending:
            await self.pending.pop(0)()


@pytest.fixture
def shared(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = SharedDatabase.open(tmp_path, "NORMAL")
    yield database
    database.close()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def service(tmp_path: Path, shared: SharedDatabase, outbox: Outbox) -> AccountService:
    return AccountService(
        AccountStore(shared.connection),
        LocalTokenIssuer(tmp_path),
        allow_registration=True,
        access_token_lifetime=900,
        refresh_token_lifetime=3600,
        password_reset_lifetime=600,
        public_url="https://fern.example.org/",
        reset_mailer=outbox.mail,
        spawn=outbox.spawn,
    )


async def test_concurrent_registrations_create_one_account(
    service: AccountService, shared: SharedDatabase
) -> None:
    outcomes: list[int] = []

    async def register(email: str) -> None:
        try:
            await service.register(Registration(email=email, password=PASSWORD), NOW)
            outcomes.append(201)
        except AccountRefused as error:
            outcomes.append(error.status)

    async with trio.open_nursery() as nursery:
        for email in ["race@example.org", "RACE@example.org", "Race@Example.org"]:
            nursery.start_soon(register, email)

    assert sorted(outcomes) == [201, 409, 409]
    assert AccountStore(shared.connection).count() == 1


async def test_only_the_first_of_two_refreshes_wins(service: AccountService) -> None:
    pair = await service.register(
        Registration(email="twice@example.org", password=PASSWORD), NOW
    )

    first = service.refresh(pair.refresh_token, NOW)
    with pytest.raises(AccountRefused) as second:
        service.refresh(pair.refresh_token, NOW)

    assert second.value.status == 401
    # The second use looked like theft, so the winner's token is revoked too.
    with pytest.raises(AccountRefused):
        service.refresh(first.refresh_token, NOW)


async def test_refresh_token_expires(service: AccountService) -> None:
    pair = await service.register(
        Registration(email="expiry@example.org", password=PASSWORD), NOW
    )

    later = service.refresh(pair.refresh_token, NOW + timedelta(seconds=3599))
    with pytest.raises(AccountRefused) as expired:
        service.refresh(later.refresh_token, NOW + timedelta(seconds=3599 + 3600))

    assert expired.value.status == 401


async def test_tokens_are_stored_as_digests(
    service: AccountService, shared: SharedDatabase, outbox: Outbox
) -> None:
    pair = await service.register(
        Registration(email="digest@example.org", password=PASSWORD), NOW
    )
    service.request_reset("digest@example.org", NOW)
    await outbox.flush()
    reset_token = outbox.links[0].rpartition("token=")[2]

    dump = "\n".join(
        repr(row)
        for table in ("accounts", "refresh_tokens", "password_resets")
        for row in shared.connection.execute(f"SELECT * FROM {table}")
    )

    assert pair.refresh_token not in dump
    assert reset_token not in dump
    assert PASSWORD not in dump
    assert "$argon2id$" in dump


async def test_reset_link_expires_and_works_once(
    service: AccountService, outbox: Outbox
) -> None:
    await service.register(
        Registration(email="link@example.org", password=PASSWORD), NOW
    )
    service.request_reset("LINK@example.org", NOW)
    service.request_reset("link@example.org", NOW)
    await outbox.flush()
    first, second = (link.rpartition("token=")[2] for link in outbox.links)

    with pytest.raises(AccountRefused) as expired:
        await service.confirm_reset(
            ResetConfirmation(token=first, new_password="new password 1"),
            NOW + timedelta(seconds=601),
        )
    await service.confirm_reset(
        ResetConfirmation(token=first, new_password="new password 1"), NOW
    )
    # Setting a password ends every other reset link of the account.
    with pytest.raises(AccountRefused) as used:
        await service.confirm_reset(
            ResetConfirmation(token=second, new_password="new password 2"), NOW
        )

    assert outbox.links[0].startswith("https://fern.example.org/reset-password?token=")
    assert expired.value.status == 400
    assert used.value.status == 400
    await service.login(
        Credentials(email="link@example.org", password="new password 1"), NOW
    )


async def test_unknown_address_gets_no_reset_link(
    service: AccountService, outbox: Outbox
) -> None:
    service.request_reset("nobody@example.org", NOW)
    await outbox.flush()

    assert outbox.links == []


async def test_profile_patch_leaves_unset_fields(service: AccountService) -> None:
    pair = await service.register(
        Registration(
            email="patch@example.org",
            password=PASSWORD,
            name="Sam Lee",
            phone_number="+15555550100",
        ),
        NOW,
    )

    account = service.update_profile(
        pair.user.user_id, ProfileChanges(first_name="  "), NOW
    )

    assert account.name == "Sam Lee"
    assert account.phone_number == "+15555550100"
    assert account.first_name is None


async def test_closed_registration_is_refused(
    tmp_path: Path, shared: SharedDatabase
) -> None:
    service = AccountService(
        AccountStore(shared.connection),
        LocalTokenIssuer(tmp_path),
        allow_registration=False,
        access_token_lifetime=900,
        refresh_token_lifetime=3600,
        password_reset_lifetime=600,
        public_url="https://fern.example.org",
    )

    with pytest.raises(AccountRefused) as refused:
        await service.register(
            Registration(email="closed@example.org", password=PASSWORD), NOW
        )
    row = await service.create_account(
        Registration(email="closed@example.org", password=PASSWORD), NOW
    )

    assert refused.value.status == 403
    assert row.email == "closed@example.org"
    assert service.options.password_reset is False
