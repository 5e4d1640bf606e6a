"""fernd's own user accounts: registration, login, rotating refresh tokens,
profile, password change and reset.

A login hands out a short-lived access token (a JWT signed by this
installation's key, carrying the profile claims) and an opaque refresh
token. Each refresh token works once: refreshing returns a new one of the
same login (its family) and marks the old one rotated. Presenting a rotated
token again means two parties hold the login, so every token of the family
is revoked. Logout revokes the family; a password change or reset revokes
every family of the account. Access tokens cannot be revoked and stay valid
until they expire, `access_token_lifetime` seconds after issue.

Rate limits are applied by the routes, not here.
"""

import hashlib
import logging
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

import msgspec
from uuid6 import uuid7

from fernd.auth.passwords import hash_password, needs_rehash, verify_password
from fernd.auth.tokens import LocalTokenIssuer
from fernd.domain.validation import is_e164_phone_number, is_valid_email
from fernd.storage.accounts_db import (
    PROFILE_FIELDS,
    AccountRow,
    AccountStore,
    DuplicateEmail,
)

logger = logging.getLogger(__name__)

PASSWORD_MIN_LENGTH: Final = 10
# argon2 hashes any length, but a cap keeps a request from costing more
# than a normal password.
PASSWORD_MAX_LENGTH: Final = 1024
NAME_MAX_LENGTH: Final = 100
# 32 random bytes, written in 43 URL-safe characters.
TOKEN_BYTES: Final = 32
TOKEN_TYPE: Final = "Bearer"
ZERO_WIDTH_JOINER: Final = "\u200d"

INVALID_CREDENTIALS: Final = "Invalid email or password"
INVALID_REFRESH_TOKEN: Final = "Invalid refresh token"
INVALID_RESET_TOKEN: Final = "Invalid or expired reset token"
WRONG_CURRENT_PASSWORD: Final = "Current password is incorrect"
EMAIL_TAKEN: Final = "Email already registered"
REGISTRATION_DISABLED: Final = "Registration is disabled"
RESET_DISABLED: Final = "Password reset by email is not available on this server"
ACCOUNT_NOT_FOUND: Final = "Account not found"


class AccountRefused(Exception):
    """A request about an account that fernd refuses, with its reply."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _invalid(detail: str) -> AccountRefused:
    return AccountRefused(400, "validation_error", f"Validation error: {detail}")


def _unauthenticated(message: str) -> AccountRefused:
    return AccountRefused(401, "unauthenticated", message)


# Request bodies


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str
    password: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone_number: str | None = None


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str
    password: str


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str


class ProfileChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; null clears a field."""

    name: str | msgspec.UnsetType | None = msgspec.UNSET
    first_name: str | msgspec.UnsetType | None = msgspec.UNSET
    last_name: str | msgspec.UnsetType | None = msgspec.UNSET
    phone_number: str | msgspec.UnsetType | None = msgspec.UNSET


class PasswordChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class ResetRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str


class ResetConfirmation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: str
    new_password: str


# Replies


class Account(msgspec.Struct, kw_only=True):
    user_id: str
    email: str
    name: str | None
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    created_at: datetime


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: Account


class AccountOptions(msgspec.Struct, kw_only=True):
    registration: bool
    password_reset: bool


# Rules


def email_key(email: str) -> str:
    """Return the form in which email addresses are compared: NFKC-normalised,
    so composed and decomposed accents match, and case-folded."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


def check_email(email: str) -> str:
    address = email.strip()
    if not is_valid_email(address):
        raise _invalid("Invalid email address")
    return address


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise _invalid(f"Password must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise _invalid(f"Password must be at most {PASSWORD_MAX_LENGTH} characters")


def _is_hidden(character: str) -> bool:
    # Control and format characters, such as NUL, ESC or right-to-left
    # override, would hide or reorder the name that family members see. The
    # zero-width joiner stays allowed because emoji sequences use it.
    category = unicodedata.category(character)
    return category == "Cc" or (category == "Cf" and character != ZERO_WIDTH_JOINER)


def _check_name(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    label = field.replace("_", " ").capitalize()
    if len(text) > NAME_MAX_LENGTH:
        raise _invalid(f"{label} must be at most {NAME_MAX_LENGTH} characters")
    if any(_is_hidden(character) for character in text):
        raise _invalid(f"{label} must not contain control or format characters")
    return text or None


def _check_phone_number(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if not is_e164_phone_number(text):
        raise _invalid(
            "Phone number must be in E.164 form, a + and 7 to 15 digits,"
            " e.g. +447700900123"
        )
    return text


def _checked_profile(fields: dict[str, str | None]) -> dict[str, str | None]:
    checked: dict[str, str | None] = {}
    for field, value in fields.items():
        if field == "phone_number":
            checked[field] = _check_phone_number(value)
        else:
            checked[field] = _check_name(field, value)
    return checked


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def public_account(row: AccountRow) -> Account:
    return Account(
        user_id=row.user_id,
        email=row.email,
        name=row.name,
        first_name=row.first_name,
        last_name=row.last_name,
        phone_number=row.phone_number,
        created_at=row.created_at,
    )


# Sends a password reset email: (account, link) -> None. Raises on failure.
ResetMailer = Callable[[AccountRow, str], Awaitable[None]]
# Runs a coroutine function in the background.
Spawner = Callable[[Callable[[], Awaitable[None]]], None]


class AccountService:
    """Account operations on the shared database. Every method that changes
    rows does its reads and writes with no `await` in between, except across
    password hashing, after which it reads the rows again."""

    def __init__(
        self,
        store: AccountStore,
        issuer: LocalTokenIssuer,
        *,
        allow_registration: bool,
        access_token_lifetime: int,
        refresh_token_lifetime: int,
        password_reset_lifetime: int,
        public_url: str,
        reset_mailer: ResetMailer | None = None,
        spawn: Spawner | None = None,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self.allow_registration = allow_registration
        self._access_lifetime = access_token_lifetime
        self._refresh_lifetime = timedelta(seconds=refresh_token_lifetime)
        self._reset_lifetime = timedelta(seconds=password_reset_lifetime)
        self._public_url = public_url.rstrip("/")
        self._reset_mailer = reset_mailer
        self._spawn = spawn

    @property
    def options(self) -> AccountOptions:
        return AccountOptions(
            registration=self.allow_registration,
            password_reset=self.password_reset_available,
        )

    @property
    def password_reset_available(self) -> bool:
        return self._reset_mailer is not None and self._spawn is not None

    # Sign-up and sign-in

    def check_registration_open(self) -> None:
        """Raise AccountRefused (403) when registration is switched off."""
        if not self.allow_registration:
            raise AccountRefused(403, "forbidden", REGISTRATION_DISABLED)

    def check_reset_available(self) -> None:
        """Raise AccountRefused (403) when no email channel sends reset links."""
        if not self.password_reset_available:
            raise AccountRefused(403, "forbidden", RESET_DISABLED)

    async def register(self, registration: Registration, now: datetime) -> TokenPair:
        """Create an account and sign it in."""
        self.check_registration_open()
        row = await self.create_account(registration, now)
        logger.info("Registered account %s", row.user_id)
        return self._sign_in(row, now)

    async def create_account(
        self, registration: Registration, now: datetime
    ) -> AccountRow:
        """Create an account even when `allow_registration` is false, as
        `fernd admin create-user` does. Raises AccountRefused for invalid
        fields (400) or a taken email address (409)."""
        email = check_email(registration.email)
        check_password(registration.password)
        profile = _checked_profile(
            {
                "name": registration.name,
                "first_name": registration.first_name,
                "last_name": registration.last_name,
                "phone_number": registration.phone_number,
            }
        )
        key = email_key(email)
        if self._store.by_email(key) is not None:
            raise AccountRefused(409, "conflict", EMAIL_TAKEN)
        password_hash = await hash_password(registration.password)
        row = AccountRow(
            user_id=str(uuid7()),
            email=email,
            password_hash=password_hash,
            name=profile["name"],
            first_name=profile["first_name"],
            last_name=profile["last_name"],
            phone_number=profile["phone_number"],
            created_at=now,
            updated_at=now,
        )
        try:
            self._store.create(row, key)
        except DuplicateEmail:
            # Registered by a concurrent request while the hash was made.
            raise AccountRefused(409, "conflict", EMAIL_TAKEN) from None
        return row

    async def login(self, credentials: Credentials, now: datetime) -> TokenPair:
        """Sign in with email and password; 401 for any mismatch, whether or
        not the account exists."""
        row = self._store.by_email(email_key(credentials.email))
        if len(credentials.password) > PASSWORD_MAX_LENGTH:
            raise _unauthenticated(INVALID_CREDENTIALS)
        stored_hash = row.password_hash if row is not None else None
        if not await verify_password(stored_hash, credentials.password):
            raise _unauthenticated(INVALID_CREDENTIALS)
        assert row is not None and stored_hash is not None
        # Read again: the account may have changed while the hash was checked.
        current = self._store.by_id(row.user_id)
        if current is None or current.password_hash != stored_hash:
            raise _unauthenticated(INVALID_CREDENTIALS)
        if needs_rehash(stored_hash):
            new_hash = await hash_password(credentials.password)
            self._store.rehash_password(row.user_id, stored_hash, new_hash)
        return self._sign_in(current, now)

    def refresh(self, refresh_token: str, now: datetime) -> TokenPair:
        """Exchange a refresh token for a new access and refresh token."""
        token_hash = _digest(refresh_token)
        stored = self._store.refresh_token(token_hash)
        if stored is None or stored.revoked or stored.expires_at <= now:
            raise _unauthenticated(INVALID_REFRESH_TOKEN)
        if stored.rotated:
            self._store.revoke_family(stored.family_id, now)
            logger.warning(
                "A rotated refresh token of account %s was used again; revoked"
                " every refresh token of that login",
                stored.user_id,
            )
            raise _unauthenticated(INVALID_REFRESH_TOKEN)
        row = self._store.by_id(stored.user_id)
        if row is None:
            raise _unauthenticated(INVALID_REFRESH_TOKEN)
        new_token = _new_token()
        self._store.rotate_refresh_token(
            token_hash,
            _digest(new_token),
            stored.family_id,
            row.user_id,
            now,
            now + self._refresh_lifetime,
        )
        return self._token_pair(row, new_token, now)

    def logout(self, refresh_token: str, now: datetime) -> None:
        """Revoke the login that `refresh_token` belongs to. An unknown token
        is ignored, so logging out twice succeeds."""
        stored = self._store.refresh_token(_digest(refresh_token))
        if stored is not None:
            self._store.revoke_family(stored.family_id, now)

    def _sign_in(self, row: AccountRow, now: datetime) -> TokenPair:
        refresh_token = _new_token()
        self._store.add_refresh_token(
            _digest(refresh_token),
            str(uuid7()),
            row.user_id,
            now,
            now + self._refresh_lifetime,
        )
        return self._token_pair(row, refresh_token, now)

    def _token_pair(
        self, row: AccountRow, refresh_token: str, now: datetime
    ) -> TokenPair:
        access_token = self._issuer.issue(
            row.user_id,
            name=row.name,
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
            phone_number=row.phone_number,
            ttl_seconds=self._access_lifetime,
            now=now,
        )
        return TokenPair(
            access_token=access_token,
            refresh_token=refresh_token,
            token_type=TOKEN_TYPE,
            expires_in=self._access_lifetime,
            user=public_account(row),
        )

    # Profile and password

    def account(self, user_id: str) -> Account:
        row = self._store.by_id(user_id)
        if row is None:
            raise AccountRefused(404, "not_found", ACCOUNT_NOT_FOUND)
        return public_account(row)

    def update_profile(
        self, user_id: str, changes: ProfileChanges, now: datetime
    ) -> Account:
        """Apply `changes`; the access token's claims follow on the next refresh."""
        if self._store.by_id(user_id) is None:
            raise AccountRefused(404, "not_found", ACCOUNT_NOT_FOUND)
        given = {
            field: getattr(changes, field)
            for field in PROFILE_FIELDS
            if getattr(changes, field) is not msgspec.UNSET
        }
        checked = _checked_profile(given)
        if checked:
            self._store.update_profile(user_id, checked, now)
        return self.account(user_id)

    async def change_password(
        self, user_id: str, change: PasswordChange, now: datetime
    ) -> None:
        """Set a new password after checking the current one, and revoke
        every refresh token of the account."""
        row = self._store.by_id(user_id)
        if row is None:
            raise AccountRefused(404, "not_found", ACCOUNT_NOT_FOUND)
        check_password(change.new_password)
        if len(change.current_password) > PASSWORD_MAX_LENGTH or not (
            await verify_password(row.password_hash, change.current_password)
        ):
            raise AccountRefused(403, "forbidden", WRONG_CURRENT_PASSWORD)
        await self._set_password(row, change.new_password, now)
        logger.info("Changed the password of account %s", user_id)

    async def _set_password(
        self, row: AccountRow, password: str, now: datetime
    ) -> None:
        new_hash = await hash_password(password)
        current = self._store.by_id(row.user_id)
        if current is None or current.password_hash != row.password_hash:
            # Another change won the race; this one would silently undo it.
            raise AccountRefused(
                409, "conflict", "The password changed meanwhile; try again"
            )
        self._store.set_password(row.user_id, new_hash, now)

    async def set_password_by_operator(
        self, email: str, password: str, now: datetime
    ) -> AccountRow:
        """Set the password of the account with `email`, as `fernd admin
        reset-password` does, and revoke its refresh tokens."""
        check_password(password)
        row = self._store.by_email(email_key(email))
        if row is None:
            raise AccountRefused(404, "not_found", ACCOUNT_NOT_FOUND)
        await self._set_password(row, password, now)
        logger.info("An operator reset the password of account %s", row.user_id)
        return row

    def list_accounts(
        self, limit: int, after_user_id: str | None
    ) -> tuple[list[AccountRow], int]:
        """Up to `limit` accounts after `after_user_id` in user id order, and
        the number of accounts in all."""
        return self._store.list(limit, after_user_id), self._store.count()

    # Password reset by email

    def request_reset(self, email: str, now: datetime) -> None:
        """Email a one-time reset link when `email` has an account. The
        reply is the same either way, and the email is sent in the
        background so the reply time does not tell either."""
        self.check_reset_available()
        address = check_email(email)
        row = self._store.by_email(email_key(address))
        if row is None:
            logger.info("Password reset requested for an address with no account")
            return
        token = _new_token()
        self._store.add_reset_token(
            _digest(token), row.user_id, now, now + self._reset_lifetime
        )
        link = f"{self._public_url}/reset-password?token={token}"
        mailer, spawn = self._reset_mailer, self._spawn
        assert mailer is not None and spawn is not None

        async def send() -> None:
            try:
                await mailer(row, link)
            except Exception as error:
                logger.warning(
                    "Password reset email for account %s failed: %s",
                    row.user_id,
                    type(error).__name__,
                )
            else:
                logger.info("Sent a password reset email for account %s", row.user_id)

        spawn(send)

    async def confirm_reset(
        self, confirmation: ResetConfirmation, now: datetime
    ) -> None:
        """Set a new password with a reset token, which then stops working,
        and revoke every refresh token of the account."""
        token_hash = _digest(confirmation.token)
        stored = self._store.reset_token(token_hash)
        if stored is None or stored.used or stored.expires_at <= now:
            raise _invalid_reset()
        check_password(confirmation.new_password)
        row = self._store.by_id(stored.user_id)
        if row is None:
            raise _invalid_reset()
        new_hash = await hash_password(confirmation.new_password)
        # Read again after the await: the token may have been used meanwhile.
        stored = self._store.reset_token(token_hash)
        if stored is None or stored.used:
            raise _invalid_reset()
        # set_password marks every reset token of the account used.
        self._store.set_password(row.user_id, new_hash, now)
        logger.info(
            "Reset the password of account %s with an emailed link", row.user_id
        )


def _invalid_reset() -> AccountRefused:
    return AccountRefused(400, "validation_error", INVALID_RESET_TOKEN)
