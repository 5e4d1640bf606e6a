"""Accounts, refresh tokens and password reset tokens in the shared database.

Refresh and reset tokens are stored only as their SHA-256 digests, so a copy
of the database does not let anyone sign in. Every method runs its SQL with
no `await`, on the Trio thread that owns the shared connection.
"""

from datetime import datetime

import apsw
import msgspec

from fernd.domain.datetimes import sortable_datetime
from fernd.storage.sqlite import rows_as_dicts


class DuplicateEmail(Exception):
    """Another account already has this email address."""


class AccountRow(msgspec.Struct, kw_only=True):
    user_id: str
    email: str
    password_hash: str
    name: str | None
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    created_at: datetime
    updated_at: datetime


class RefreshTokenRow(msgspec.Struct, kw_only=True):
    family_id: str
    user_id: str
    expires_at: datetime
    rotated: bool
    revoked: bool


class ResetTokenRow(msgspec.Struct, kw_only=True):
    user_id: str
    expires_at: datetime
    used: bool


_ACCOUNT_COLUMNS = (
    "user_id, email, password_hash, name, first_name, last_name, phone_number,"
    " created_at, updated_at"
)
# Profile fields that PATCH /api/v1/me may change.
PROFILE_FIELDS = ("name", "first_name", "last_name", "phone_number")


def _account(row: dict[str, object]) -> AccountRow:
    return msgspec.convert(row, AccountRow, strict=False)


class AccountStore:
    """Reads and writes accounts on the shared database's connection."""

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection

    # Accounts

    def create(self, account: AccountRow, email_key: str) -> None:
        """Insert `account`; raise DuplicateEmail when `email_key` is taken."""
        try:
            with self._connection:
                self._connection.execute(
                    f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, email_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        account.user_id,
                        account.email,
                        account.password_hash,
                        account.name,
                        account.first_name,
                        account.last_name,
                        account.phone_number,
                        sortable_datetime(account.created_at),
                        sortable_datetime(account.updated_at),
                        email_key,
                    ),
                )
        except apsw.ConstraintError:
            raise DuplicateEmail from None

    def by_email(self, email_key: str) -> AccountRow | None:
        rows = rows_as_dicts(
            self._connection.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE email_key = ?",
                (email_key,),
            )
        )
        return _account(rows[0]) if rows else None

    def by_id(self, user_id: str) -> AccountRow | None:
        rows = rows_as_dicts(
            self._connection.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE user_id = ?",
                (user_id,),
            )
        )
        return _account(rows[0]) if rows else None

    def list(self, limit: int, after_user_id: str | None) -> list[AccountRow]:
        """Accounts ordered by user id (time-ordered UUIDs), after the given one."""
        rows = rows_as_dicts(
            self._connection.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE user_id > ?"
                " ORDER BY user_id LIMIT ?",
                (after_user_id or "", limit),
            )
        )
        return [_account(row) for row in rows]

    def count(self) -> int:
        count: int = self._connection.execute(
            "SELECT count(*) FROM accounts"
        ).fetchall()[0][0]
        return count

    def update_profile(
        self, user_id: str, changes: dict[str, str | None], now: datetime
    ) -> None:
        assignments = ", ".join(f"{field} = ?" for field in changes)
        for field in changes:
            if field not in PROFILE_FIELDS:
                raise ValueError(f"{field} is not a profile field")
        with self._connection:
            self._connection.execute(
                f"UPDATE accounts SET {assignments}, updated_at = ? WHERE user_id = ?",
                (*changes.values(), sortable_datetime(now), user_id),
            )

    def set_password(self, user_id: str, password_hash: str, now: datetime) -> None:
        """Store a new password hash and revoke every refresh token and
        unused reset token of the account, in one transaction."""
        stamp = sortable_datetime(now)
        with self._connection:
            self._connection.execute(
                "UPDATE accounts SET password_hash = ?, updated_at = ?"
                " WHERE user_id = ?",
                (password_hash, stamp, user_id),
            )
            self._revoke_user_tokens(user_id, stamp)

    def rehash_password(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Replace the hash with one made with current parameters, unless the
        password changed since `old_hash` was read."""
        with self._connection:
            self._connection.execute(
                "UPDATE accounts SET password_hash = ?"
                " WHERE user_id = ? AND password_hash = ?",
                (new_hash, user_id, old_hash),
            )

    # Refresh tokens

    def add_refresh_token(
        self,
        token_hash: str,
        family_id: str,
        user_id: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        with self._connection:
            self._insert_refresh_token(token_hash, family_id, user_id, now, expires_at)

    def _insert_refresh_token(
        self,
        token_hash: str,
        family_id: str,
        user_id: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        self._connection.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (
                token_hash,
                family_id,
                user_id,
                sortable_datetime(now),
                sortable_datetime(expires_at),
            ),
        )

    def refresh_token(self, token_hash: str) -> RefreshTokenRow | None:
        rows = self._connection.execute(
            "SELECT family_id, user_id, expires_at, rotated_at, revoked_at"
            " FROM refresh_tokens WHERE token_hash = ?",
            (token_hash,),
        ).fetchall()
        if not rows:
            return None
        family_id, user_id, expires_at, rotated_at, revoked_at = rows[0]
        return RefreshTokenRow(
            family_id=family_id,
            user_id=user_id,
            expires_at=msgspec.convert(expires_at, datetime),
            rotated=rotated_at is not None,
            revoked=revoked_at is not None,
        )

    def rotate_refresh_token(
        self,
        old_hash: str,
        new_hash: str,
        family_id: str,
        user_id: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Mark `old_hash` rotated and add `new_hash` to the same family, in
        one transaction."""
        with self._connection:
            self._connection.execute(
                "UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ?",
                (sortable_datetime(now), old_hash),
            )
            self._insert_refresh_token(new_hash, family_id, user_id, now, expires_at)

    def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every token of one login; return how many were still live."""
        with self._connection:
            self._connection.execute(
                "UPDATE refresh_tokens SET revoked_at = ?"
                " WHERE family_id = ? AND revoked_at IS NULL",
                (sortable_datetime(now), family_id),
            )
            return self._connection.changes()

    def revoke_user_tokens(self, user_id: str, now: datetime) -> None:
        with self._connection:
            self._revoke_user_tokens(user_id, sortable_datetime(now))

    def _revoke_user_tokens(self, user_id: str, stamp: str) -> None:
        self._connection.execute(
            "UPDATE refresh_tokens SET revoked_at = ?"
            " WHERE user_id = ? AND revoked_at IS NULL",
            (stamp, user_id),
        )
        self._connection.execute(
            "UPDATE password_resets SET used_at = ?"
            " WHERE user_id = ? AND used_at IS NULL",
            (stamp, user_id),
        )

    def delete_expired(self, now: datetime) -> int:
        """Delete refresh and reset tokens past their expiry; return how many."""
        stamp = sortable_datetime(now)
        with self._connection:
            self._connection.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < ?", (stamp,)
            )
            deleted = self._connection.changes()
            self._connection.execute(
                "DELETE FROM password_resets WHERE expires_at < ?", (stamp,)
            )
            return deleted + self._connection.changes()

    # Password reset tokens

    def add_reset_token(
        self, token_hash: str, user_id: str, now: datetime, expires_at: datetime
    ) -> None:
        with self._connection:
            self._connection.execute(
                "INSERT INTO password_resets (token_hash, user_id, created_at,"
                " expires_at) VALUES (?, ?, ?, ?)",
                (
                    token_hash,
                    user_id,
                    sortable_datetime(now),
                    sortable_datetime(expires_at),
                ),
            )

    def reset_token(self, token_hash: str) -> ResetTokenRow | None:
        rows = self._connection.execute(
            "SELECT user_id, expires_at, used_at FROM password_resets"
            " WHERE token_hash = ?",
            (token_hash,),
        ).fetchall()
        if not rows:
            return None
        user_id, expires_at, used_at = rows[0]
        return ResetTokenRow(
            user_id=user_id,
            expires_at=msgspec.convert(expires_at, datetime),
            used=used_at is not None,
        )
