"""Password policy and hashing: peppered HMAC-SHA256 pre-hash, then bcrypt.

The pre-hash is ``base64(HMAC-SHA256(pepper, utf8(password)))``: 44 ASCII bytes, so bcrypt's
72-byte limit and its NUL-terminated input never truncate a password, and a database leak alone
(without the pepper) is not enough to run a dictionary attack. Peppers are versioned; each stored
hash records the version it was made with, and ``needs_rehash`` tells the caller to upgrade it
after a successful login.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib.resources import files

import bcrypt

from switchboard.identity.settings import IdentitySettings
from switchboard.kit.errors import AppError

__all__ = [
    "PasswordHash",
    "PasswordHasher",
    "WeakPasswordError",
    "check_password_policy",
    "common_passwords",
]

# Modular crypt format: variant, two-digit cost, then 22 salt and 31 hash characters.
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d{2})\$[./A-Za-z0-9]{53}", re.ASCII)


class WeakPasswordError(AppError):
    """The password breaks the policy; the message names the rule, never the password."""

    status = 422
    code = "identity.weak_password"
    title = "Weak password"


@cache
def common_passwords() -> frozenset[str]:
    """The built-in list of common passwords (lower-case), read once from the package data."""
    text = files("switchboard.identity").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, email: str, min_length: int, max_length: int) -> None:
    """Raise ``WeakPasswordError`` unless ``password`` is acceptable for the account ``email``.

    Length counts characters (code points), not bytes; any Unicode is allowed, including spaces
    and NUL. The common-password check is an exact match on the lower-cased password. The
    password may equal neither the email nor its local part, case-insensitively.
    """
    length = len(password)
    if length < min_length:
        raise WeakPasswordError(f"Password must be at least {min_length} characters long.")
    if length > max_length:
        raise WeakPasswordError(f"Password must be at most {max_length} characters long.")
    if password.lower() in common_passwords():
        raise WeakPasswordError("Password is too common; choose a less predictable one.")
    folded = password.casefold()
    address = email.strip().casefold()
    local_part = address.rpartition("@")[0]
    if folded == address or (local_part and folded == local_part):
        raise WeakPasswordError("Password must not be the same as the email address.")


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A bcrypt hash string and the pepper version its pre-hash used."""

    value: str
    pepper_version: int


class PasswordHasher:
    """Hashes and verifies passwords; the sync methods are CPU-bound (~0.2 s at cost 12)."""

    def __init__(self, peppers: Mapping[int, bytes], *, cost: int) -> None:
        if not peppers:
            raise ValueError("at least one pepper is needed")
        if not 4 <= cost <= 31:
            raise ValueError("bcrypt cost must be between 4 and 31")
        self._peppers: dict[int, bytes] = dict(peppers)
        self._cost = cost
        self._current_version = max(self._peppers)

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> PasswordHasher:
        peppers = {
            version: secret.get_secret_value().encode("utf-8")
            for version, secret in settings.password_peppers.items()
        }
        return cls(peppers, cost=settings.bcrypt_cost)

    @property
    def cost(self) -> int:
        return self._cost

    @property
    def current_pepper_version(self) -> int:
        return self._current_version

    def hash(self, password: str) -> PasswordHash:
        prehash = _prehash(password, self._peppers[self._current_version])
        value = bcrypt.hashpw(prehash, bcrypt.gensalt(rounds=self._cost)).decode("ascii")
        return PasswordHash(value=value, pepper_version=self._current_version)

    def verify(self, password: str, stored: str, pepper_version: int) -> bool:
        pepper = self._peppers.get(pepper_version)
        if pepper is None:
            return False
        return _checkpw(_prehash(password, pepper), stored)

    def needs_rehash(self, stored: str, pepper_version: int) -> bool:
        if pepper_version != self._current_version:
            return True
        return _bcrypt_cost(stored) != self._cost

    def verify_dummy(self, password: str) -> None:
        """Spend the time of one real verification, for a login whose account does not exist."""
        _checkpw(_prehash(password, self._peppers[self._current_version]), self._dummy_hash)

    async def hash_async(self, password: str) -> PasswordHash:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password: str, stored: str, pepper_version: int) -> bool:
        return await asyncio.to_thread(self.verify, password, stored, pepper_version)

    async def verify_dummy_async(self, password: str) -> None:
        await asyncio.to_thread(self.verify_dummy, password)

    @cached_property
    def _dummy_hash(self) -> str:
        # Made on first use so constructing a hasher stays cheap; a race only computes it twice.
        return self.hash("switchboard-dummy-password").value


def _prehash(password: str, pepper: bytes) -> bytes:
    # surrogatepass: a lone surrogate (valid in JSON strings) must hash, not raise.
    message = password.encode("utf-8", errors="surrogatepass")
    return base64.b64encode(hmac.new(pepper, message, hashlib.sha256).digest())


def _checkpw(prehash: bytes, stored: str) -> bool:
    try:
        return bcrypt.checkpw(prehash, stored.encode("ascii"))
    except ValueError:  # malformed or non-ASCII stored hash (UnicodeEncodeError included)
        return False


def _bcrypt_cost(stored: str) -> int | None:
    """The cost field of a well-formed ``$2b$12$...`` hash, or None for anything else."""
    match = _BCRYPT_HASH.fullmatch(stored)
    return int(match.group(1)) if match else None
