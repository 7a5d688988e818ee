"""Password policy and the peppered bcrypt hasher (no database, no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from switchboard.identity.passwords import (
    PasswordHash,
    PasswordHasher,
    WeakPasswordError,
    check_password_policy,
    common_passwords,
)
from switchboard.identity.settings import IdentitySettings

PEPPER_1 = b"test-pepper-version-one"
PEPPER_2 = b"test-pepper-version-two"
FAST = 4  # bcrypt's minimum cost keeps the suite quick
MEASURABLE = 10  # large enough for timings to rise above scheduling noise

EMAIL = "Alice.Example@Example.com"


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher({1: PEPPER_1}, cost=FAST)


# --- hashing -------------------------------------------------------------------------------


def test_round_trip(hasher: PasswordHasher) -> None:
    result = hasher.hash("correct horse battery")
    assert isinstance(result, PasswordHash)
    assert result.pepper_version == 1
    assert result.value.startswith("$2b$04$")
    assert hasher.verify("correct horse battery", result.value, result.pepper_version)
    assert not hasher.needs_rehash(result.value, result.pepper_version)


def test_wrong_password_is_rejected(hasher: PasswordHasher) -> None:
    result = hasher.hash("correct horse battery")
    assert not hasher.verify("correct horse batterY", result.value, 1)
    assert not hasher.verify("", result.value, 1)


def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password here").value != hasher.hash("same password here").value


def test_password_hash_is_frozen(hasher: PasswordHasher) -> None:
    result = hasher.hash("some password")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pepper_version = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "password",
    [
        "p" * 200,
        "nul\x00inside\x00the password",
        "\x00" * 16,
        "emoji 🔐🦄 and accents éàü ✓",
        "lone surrogate \ud800 from JSON",
        "   spaces around   ",
    ],
    ids=["200-chars", "nul-bytes", "only-nul", "emoji", "surrogate", "spaces"],
)
def test_unusual_passwords_round_trip(hasher: PasswordHasher, password: str) -> None:
    result = hasher.hash(password)
    assert hasher.verify(password, result.value, result.pepper_version)
    assert not hasher.verify(password + "x", result.value, result.pepper_version)


def test_nul_byte_does_not_truncate(hasher: PasswordHasher) -> None:
    result = hasher.hash("prefix\x00suffix-one")
    assert not hasher.verify("prefix\x00suffix-two", result.value, 1)
    assert not hasher.verify("prefix", result.value, 1)


def test_whole_password_counts_beyond_72_bytes(hasher: PasswordHasher) -> None:
    common_prefix = "a" * 100
    result = hasher.hash(common_prefix + "first")
    assert hasher.verify(common_prefix + "first", result.value, 1)
    assert not hasher.verify(common_prefix + "second", result.value, 1)
    assert not hasher.verify(common_prefix, result.value, 1)


def test_multibyte_password_beyond_72_bytes(hasher: PasswordHasher) -> None:
    # 30 four-byte characters are 120 UTF-8 bytes; the difference is at the very end.
    result = hasher.hash("🔐" * 30 + "A")
    assert not hasher.verify("🔐" * 30 + "B", result.value, 1)


# --- peppers and cost ----------------------------------------------------------------------


def test_pepper_rotation() -> None:
    old = PasswordHasher({1: PEPPER_1}, cost=FAST)
    stored = old.hash("rotate me please")
    assert stored.pepper_version == 1

    rotated = PasswordHasher({1: PEPPER_1, 2: PEPPER_2}, cost=FAST)
    assert rotated.current_pepper_version == 2
    assert rotated.verify("rotate me please", stored.value, stored.pepper_version)
    assert rotated.needs_rehash(stored.value, stored.pepper_version)

    upgraded = rotated.hash("rotate me please")
    assert upgraded.pepper_version == 2
    assert rotated.verify("rotate me please", upgraded.value, upgraded.pepper_version)
    assert not rotated.needs_rehash(upgraded.value, upgraded.pepper_version)
    # The old hasher has no version 2 and the hashes are not interchangeable across versions.
    assert not old.verify("rotate me please", upgraded.value, upgraded.pepper_version)
    assert not rotated.verify("rotate me please", upgraded.value, 1)


def test_hasher_without_the_pepper_version_rejects() -> None:
    stored = PasswordHasher({1: PEPPER_1}, cost=FAST).hash("pepper gone away")
    only_new = PasswordHasher({2: PEPPER_2}, cost=FAST)
    assert not only_new.verify("pepper gone away", stored.value, 1)
    assert only_new.needs_rehash(stored.value, 1)


def test_different_pepper_same_version_rejects() -> None:
    stored = PasswordHasher({1: PEPPER_1}, cost=FAST).hash("pepper mismatch")
    other = PasswordHasher({1: b"some other pepper"}, cost=FAST)
    assert not other.verify("pepper mismatch", stored.value, 1)


def test_cost_change_needs_rehash() -> None:
    stored = PasswordHasher({1: PEPPER_1}, cost=FAST).hash("cost goes up")
    stronger = PasswordHasher({1: PEPPER_1}, cost=5)
    assert stronger.verify("cost goes up", stored.value, 1)
    assert stronger.needs_rehash(stored.value, 1)
    rehashed = stronger.hash("cost goes up")
    assert rehashed.value.startswith("$2b$05$")
    assert not stronger.needs_rehash(rehashed.value, 1)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a bcrypt hash",
        "$2b$04$",
        "$2b$04$tooshort",
        "$2b$xx$" + "a" * 53,
        "$9z$04$" + "a" * 53,
        "$2b$04$" + "é" * 53,
        "\x00",
    ],
)
def test_garbage_stored_hash_is_false(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.verify("anything at all", stored, 1) is False
    assert hasher.needs_rehash(stored, 1) is True


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="pepper"):
        PasswordHasher({}, cost=FAST)
    with pytest.raises(ValueError, match="cost"):
        PasswordHasher({1: PEPPER_1}, cost=3)


def test_from_settings() -> None:
    settings = IdentitySettings(
        bcrypt_cost=FAST,
        password_peppers={1: SecretStr("pepper-one"), 3: SecretStr("pepper-three")},
    )
    hasher = PasswordHasher.from_settings(settings)
    assert hasher.cost == FAST
    assert hasher.current_pepper_version == settings.current_pepper_version == 3
    stored = hasher.hash("from the settings")
    assert stored.pepper_version == 3
    same_peppers = PasswordHasher({1: b"pepper-one", 3: b"pepper-three"}, cost=FAST)
    assert same_peppers.verify("from the settings", stored.value, 3)


# --- dummy verification --------------------------------------------------------------------


def test_verify_dummy_costs_as_much_as_a_real_verify() -> None:
    hasher = PasswordHasher({1: PEPPER_1}, cost=MEASURABLE)
    stored = hasher.hash("a real user's password")
    hasher.verify_dummy("warm up")  # builds the dummy hash once

    def median_seconds(action: Callable[[], object]) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            action()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    real = median_seconds(lambda: hasher.verify("wrong guess", stored.value, 1))
    dummy = median_seconds(lambda: hasher.verify_dummy("wrong guess"))
    assert dummy >= 0.5 * real, (dummy, real)


def test_verify_dummy_returns_none(hasher: PasswordHasher) -> None:
    assert hasher.verify_dummy("whatever") is None  # type: ignore[func-returns-value]


# --- async ---------------------------------------------------------------------------------


async def test_async_variants(hasher: PasswordHasher) -> None:
    stored = await hasher.hash_async("async password")
    assert stored.pepper_version == 1
    assert await hasher.verify_async("async password", stored.value, 1)
    assert not await hasher.verify_async("wrong password", stored.value, 1)
    assert not await hasher.verify_async("async password", "garbage", 1)
    assert await hasher.verify_dummy_async("async password") is None  # type: ignore[func-returns-value]


async def test_async_hashing_does_not_block_the_loop() -> None:
    hasher = PasswordHasher({1: PEPPER_1}, cost=MEASURABLE)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        stored = await hasher.hash_async("do not block")
        after_hash = ticks
        assert await hasher.verify_async("do not block", stored.value, 1)
        await hasher.verify_dummy_async("do not block")
    finally:
        stop.set()
        await task
    assert after_hash >= 10, after_hash
    assert ticks > after_hash


# --- policy --------------------------------------------------------------------------------


def _check(
    password: str, *, email: str = EMAIL, min_length: int = 12, max_length: int = 128
) -> None:
    check_password_policy(password, email=email, min_length=min_length, max_length=max_length)


def _assert_weak(password: str, rule: str, *, min_length: int = 12, max_length: int = 128) -> None:
    with pytest.raises(WeakPasswordError) as caught:
        _check(password, min_length=min_length, max_length=max_length)
    error = caught.value
    assert error.code == "identity.weak_password"
    assert error.status == 422
    assert rule in error.message
    assert password not in error.message
    assert password not in str(error)


def test_too_short_is_rejected() -> None:
    _assert_weak("Zq8#vL2!mW4", "at least 12")


def test_exactly_min_length_is_accepted() -> None:
    _check("Zq8#vL2!mW4$")


def test_too_long_is_rejected() -> None:
    _assert_weak("Zq8#vL2!" * 16 + "x", "at most 128")


def test_exactly_max_length_is_accepted() -> None:
    _check("Zq8#vL2!" * 16)


def test_length_counts_characters_not_bytes() -> None:
    _check("🔐" * 12)  # 48 UTF-8 bytes, 12 characters
    _check("é" * 128)  # 256 UTF-8 bytes, 128 characters
    _assert_weak("🔐" * 11, "at least 12")


def test_custom_bounds() -> None:
    _check("Zq8#vL2!", min_length=8)
    _check("x7" * 256, max_length=1024)
    _assert_weak("Zq8#vL2!mW4$", "at most 8", min_length=4, max_length=8)


@pytest.mark.parametrize(
    "password",
    ["password1234", "PASSWORD1234", "QwertyUiop12", "123456789012", "iloveyou1234"],
)
def test_common_passwords_are_rejected(password: str) -> None:
    _assert_weak(password, "too common")


@pytest.mark.parametrize(
    "password",
    [
        "alice.example@example.com",
        "ALICE.EXAMPLE@EXAMPLE.COM",
        "Alice.Example@Example.com",
        "alice.example",
        "ALICE.Example",
    ],
)
def test_email_and_local_part_are_rejected(password: str) -> None:
    _assert_weak(password, "email")


def test_email_substrings_are_allowed() -> None:
    _check("alice.example plus more words")


def test_unusual_characters_are_allowed() -> None:
    _check("spaces are fine here")
    _check("nul\x00bytes\x00are\x00fine")
    _check("emoji 🔐🦄 count too")


def test_common_list_shape() -> None:
    words = common_passwords()
    assert 200 <= len(words) <= 600
    assert all(word == word.lower() and word == word.strip() for word in words)
    assert {"password1234", "qwertyuiop12", "123456789012", "iloveyou1234"} <= words
    assert common_passwords() is words  # loaded once
