"""Password hashing with argon2id (argon2-cffi).

Hashing takes tens of milliseconds of CPU and 64 MiB of memory on purpose,
so it runs in worker threads, at most HASHING_THREADS at a time, and never
on the Trio thread.
"""

import secrets
from typing import Final

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults are RFC 9106's second recommended option: argon2id,
# 3 passes over 64 MiB with 4 lanes.
_hasher: Final = PasswordHasher()
# Two concurrent hashes keep at most 128 MiB in use and leave the Trio thread
# a core on a small machine.
HASHING_THREADS: Final = 2
_limiter: trio.CapacityLimiter | None = None
# Verified against when an email address has no account, so that a login
# takes as long whether or not the account exists.
_absent_account_hash: str | None = None


def _thread_limiter() -> trio.CapacityLimiter:
    # A CapacityLimiter belongs to one Trio run, so it is made on first use.
    global _limiter
    if _limiter is None:
        _limiter = trio.CapacityLimiter(HASHING_THREADS)
    return _limiter


async def hash_password(password: str) -> str:
    """Return the argon2id hash of `password`, in PHC string form."""
    return await trio.to_thread.run_sync(
        _hasher.hash, password, limiter=_thread_limiter()
    )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Return True when `password` matches `password_hash`.

    With `password_hash` None (no such account) the password is checked
    against a hash of a random password and False is returned, taking about
    as long as a real check.
    """
    global _absent_account_hash
    if password_hash is None:
        if _absent_account_hash is None:
            _absent_account_hash = await hash_password(secrets.token_urlsafe(16))
        await trio.to_thread.run_sync(
            _verify, _absent_account_hash, password, limiter=_thread_limiter()
        )
        return False
    return await trio.to_thread.run_sync(
        _verify, password_hash, password, limiter=_thread_limiter()
    )


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
