"""Login lockout and the per-IP and global limits of failed sign-ins, against the test run's
real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from redis.asyncio import Redis

from switchboard.identity.settings import IdentitySettings
from switchboard.identity.throttle import (
    LOGIN_GLOBAL_KEY,
    AccountLockedError,
    LoginAttempt,
    LoginRateLimitedError,
    LoginThrottle,
)

HIGH = 1_000_000


def _settings(**overrides: int) -> IdentitySettings:
    values: dict[str, int] = {
        "lockout_threshold": 3,
        "lockout_window_seconds": 900,
        "lockout_base_seconds": 60,
        "lockout_max_seconds": 3600,
        "login_ip_max_attempts": HIGH,
        "login_ip_window_seconds": 60,
        "login_global_failures_per_minute": HIGH,
    }
    values.update(overrides)
    return IdentitySettings(**values)


def _account() -> str:
    return f"user-{uuid.uuid4().hex}@example.test"


def _ip() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}#{uuid.uuid4().hex[:8]}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def _locked_for(redis: Redis, account: str) -> int:
    """Whole seconds the account stays locked; 0 when it is not locked."""
    pttl = int(await redis.pttl(f"auth:lockout:locked:{_digest(account)}"))
    return -(-pttl // 1000) if pttl > 0 else 0


async def _window_ends(redis: Redis, key: str) -> None:
    """What the window's TTL does at its end, without waiting for it."""
    await redis.delete(key)


async def _lock_expires(redis: Redis, account: str) -> None:
    """What the lock's TTL does at its end, without waiting for it."""
    await redis.delete(f"auth:lockout:locked:{_digest(account)}")


async def test_the_attempt_that_takes_the_last_place_locks_the_account(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=5, lockout_base_seconds=60))
    account = _account()

    attempts = [await throttle.begin(account=account, ip=_ip()) for _ in range(5)]
    with pytest.raises(AccountLockedError) as caught:
        await throttle.begin(account=account, ip=_ip())

    assert [attempt.locks_for for attempt in attempts] == [None, None, None, None, 60]
    assert 59 <= await _locked_for(redis, account) <= 60
    error = caught.value
    assert error.status == 423
    assert error.code == "identity.account_locked"
    assert error.message == "Too many failed sign-ins. Try again later."
    assert 1 <= int(error.headers["Retry-After"]) <= 60


async def test_concurrent_attempts_never_exceed_the_threshold_per_lock(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=5, lockout_base_seconds=60))
    account = _account()

    results = await asyncio.gather(
        *(throttle.begin(account=account, ip=_ip()) for _ in range(20)), return_exceptions=True
    )

    admitted = [result for result in results if isinstance(result, LoginAttempt)]
    refused = [result for result in results if isinstance(result, AccountLockedError)]
    assert len(admitted) == 5
    assert len(refused) == 15
    assert sorted(attempt.locks_for or 0 for attempt in admitted) == [0, 0, 0, 0, 60]
    assert await redis.get(f"auth:lockout:level:{_digest(account)}") == b"1"


async def test_a_success_clears_the_count(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=3))
    account = _account()
    await throttle.begin(account=account, ip=_ip())
    await throttle.begin(account=account, ip=_ip())
    await throttle.succeed(await throttle.begin(account=account, ip=_ip()))

    after = [(await throttle.begin(account=account, ip=_ip())).locks_for for _ in range(3)]

    assert after == [None, None, 60]


async def test_a_success_lifts_its_own_lock_and_leaves_the_level(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1, lockout_base_seconds=10))
    account = _account()

    own = await throttle.begin(account=account, ip=_ip())
    await throttle.succeed(own)
    unlocked = await _locked_for(redis, account)
    next_lock = (await throttle.begin(account=account, ip=_ip())).locks_for

    assert own.locks_for == 10
    assert unlocked == 0
    assert next_lock == 10  # the lifted lock did not double the next one


async def test_a_right_password_does_not_succeed_once_another_attempt_locked(
    redis: Redis,
) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=2, lockout_base_seconds=60))
    account = _account()
    right = await throttle.begin(account=account, ip=_ip())
    locking = await throttle.begin(account=account, ip=_ip())

    with pytest.raises(AccountLockedError) as caught:
        await throttle.succeed(right)

    assert locking.locks_for == 60
    assert 1 <= caught.value.retry_after <= 60
    assert 59 <= await _locked_for(redis, account) <= 60


async def test_a_success_keeps_the_level_of_earlier_locks(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1, lockout_base_seconds=10))
    account = _account()
    first = await throttle.begin(account=account, ip=_ip())  # a failure: the lock stays
    await _lock_expires(redis, account)
    await throttle.succeed(await throttle.begin(account=account, ip=_ip()))

    assert first.locks_for == 10
    assert (await throttle.begin(account=account, ip=_ip())).locks_for == 20


async def test_repeated_locks_double_up_to_the_cap(redis: Redis) -> None:
    throttle = LoginThrottle(
        redis, _settings(lockout_threshold=1, lockout_base_seconds=5, lockout_max_seconds=30)
    )
    account = _account()
    locks = []
    for _ in range(5):
        locks.append((await throttle.begin(account=account, ip=_ip())).locks_for)
        await _lock_expires(redis, account)

    assert locks == [5, 10, 20, 30, 30]
    level = f"auth:lockout:level:{_digest(account)}"
    assert await redis.get(level) == b"5"
    assert 0 < await redis.ttl(level) <= 86_400


async def test_the_ip_limit_counts_failures_not_successes(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(login_ip_max_attempts=3, lockout_threshold=HIGH))
    ip = _ip()
    for _ in range(10):
        await throttle.succeed(await throttle.begin(account=_account(), ip=ip))
    for _ in range(3):
        await throttle.begin(account=_account(), ip=ip)  # three failures

    with pytest.raises(LoginRateLimitedError) as caught:
        await throttle.begin(account=_account(), ip=ip)
    await throttle.begin(account=_account(), ip=_ip())  # another address has its own count

    error = caught.value
    assert error.status == 429
    assert error.code == "identity.login_rate_limited"
    assert "from this address" in error.message
    assert 1 <= int(error.headers["Retry-After"]) <= 60


async def test_the_global_limit_counts_failures_from_every_address(redis: Redis) -> None:
    await redis.delete(LOGIN_GLOBAL_KEY)  # shared with the rest of the run
    throttle = LoginThrottle(redis, _settings(login_global_failures_per_minute=3))
    await throttle.succeed(await throttle.begin(account=_account(), ip=_ip()))
    for _ in range(3):
        await throttle.begin(account=_account(), ip=_ip())

    with pytest.raises(LoginRateLimitedError) as caught:
        await throttle.begin(account=_account(), ip=_ip())

    assert "right now" in caught.value.message
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60


async def test_a_success_gives_back_its_address_place_only_in_its_own_window(
    redis: Redis,
) -> None:
    throttle = LoginThrottle(redis, _settings(login_ip_max_attempts=2, lockout_threshold=HIGH))
    ip = _ip()
    right = await throttle.begin(account=_account(), ip=ip)
    await _window_ends(redis, f"auth:ratelimit:login-ip:{_digest(ip)}")  # while checking
    for _ in range(2):
        await throttle.begin(account=_account(), ip=ip)  # failures in the next window

    await throttle.succeed(right)

    with pytest.raises(LoginRateLimitedError, match="from this address"):
        await throttle.begin(account=_account(), ip=ip)


async def test_a_success_gives_back_its_global_place_only_in_its_own_window(
    redis: Redis,
) -> None:
    await redis.delete(LOGIN_GLOBAL_KEY)
    throttle = LoginThrottle(redis, _settings(login_global_failures_per_minute=2))
    right = await throttle.begin(account=_account(), ip=_ip())
    await _window_ends(redis, LOGIN_GLOBAL_KEY)
    for _ in range(2):
        await throttle.begin(account=_account(), ip=_ip())

    await throttle.succeed(right)

    with pytest.raises(LoginRateLimitedError, match="right now"):
        await throttle.begin(account=_account(), ip=_ip())


async def test_the_counts_of_a_window_end_with_it(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(login_ip_window_seconds=30))
    ip = _ip()
    window = f"auth:ratelimit:login-ip:{_digest(ip)}"

    attempt = await throttle.begin(account=_account(), ip=ip)

    start = (await redis.get(window)).decode()
    assert attempt.keys[0] == f"{window}:{start}"
    assert attempt.keys[1].startswith(f"{LOGIN_GLOBAL_KEY}:")
    window_left = await redis.pttl(window)
    assert 0 < await redis.pttl(attempt.keys[0]) <= window_left <= 30_000
    assert 0 < await redis.pttl(attempt.keys[1]) <= 60_000


async def test_an_address_over_its_limit_spends_none_of_the_global_budget(redis: Redis) -> None:
    await redis.delete(LOGIN_GLOBAL_KEY)
    throttle = LoginThrottle(
        redis, _settings(login_ip_max_attempts=1, login_global_failures_per_minute=3)
    )
    noisy = _ip()
    await throttle.begin(account=_account(), ip=noisy)
    for _ in range(5):
        with pytest.raises(LoginRateLimitedError, match="from this address"):
            await throttle.begin(account=_account(), ip=noisy)

    await throttle.begin(account=_account(), ip=_ip())
    await throttle.begin(account=_account(), ip=_ip())
    with pytest.raises(LoginRateLimitedError, match="right now"):
        await throttle.begin(account=_account(), ip=_ip())


async def test_attempts_on_a_locked_account_count_against_the_address(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1, login_ip_max_attempts=2))
    account, ip = _account(), _ip()
    await throttle.begin(account=account, ip=ip)  # locks

    with pytest.raises(AccountLockedError):
        await throttle.begin(account=account, ip=ip)
    with pytest.raises(LoginRateLimitedError):
        await throttle.begin(account=account, ip=ip)


async def test_plain_account_and_ip_never_reach_redis(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1))
    account, ip = _account(), _ip()
    await throttle.begin(account=account, ip=ip)

    keys = [key async for key in redis.scan_iter(match="auth:*", count=1000)]

    assert f"auth:ratelimit:login-ip:{_digest(ip)}".encode() in keys
    assert f"auth:lockout:locked:{_digest(account)}".encode() in keys
    for key in keys:
        assert account.encode() not in key
        assert ip.encode() not in key
