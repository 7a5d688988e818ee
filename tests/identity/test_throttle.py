"""Login lockout and per-IP limit against the test run's real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from redis.asyncio import Redis

from switchboard.identity.settings import IdentitySettings
from switchboard.identity.throttle import AccountLockedError, LoginRateLimitedError, LoginThrottle


def _settings(**overrides: int) -> IdentitySettings:
    values: dict[str, int] = {
        "lockout_threshold": 3,
        "lockout_window_seconds": 900,
        "lockout_base_seconds": 60,
        "lockout_max_seconds": 3600,
        "login_ip_max_attempts": 1000,
        "login_ip_window_seconds": 60,
    }
    values.update(overrides)
    return IdentitySettings(**values)


def _account() -> str:
    return f"user-{uuid.uuid4().hex}@example.test"


def _ip() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}#{uuid.uuid4().hex[:8]}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_failures_below_threshold_do_not_lock(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=5))
    account = _account()
    for _ in range(4):
        assert await throttle.record_failure(account=account) is None
    assert await throttle.locked_for(account=account) == 0
    await throttle.before_attempt(account=account, ip=_ip())


async def test_threshold_locks_and_before_attempt_raises_423(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=5, lockout_base_seconds=60))
    account = _account()
    results = [await throttle.record_failure(account=account) for _ in range(5)]
    assert results == [None, None, None, None, 60]
    assert 59 <= await throttle.locked_for(account=account) <= 60
    with pytest.raises(AccountLockedError) as caught:
        await throttle.before_attempt(account=account, ip=_ip())
    error = caught.value
    assert error.status == 423
    assert error.code == "identity.account_locked"
    assert error.message == "Too many failed sign-ins. Try again later."
    assert 1 <= int(error.headers["Retry-After"]) <= 60


async def test_success_clears_failures(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=3))
    account = _account()
    await throttle.record_failure(account=account)
    await throttle.record_failure(account=account)
    await throttle.record_success(account=account)
    assert await throttle.record_failure(account=account) is None
    assert await throttle.record_failure(account=account) is None
    assert await throttle.record_failure(account=account) == 60


async def test_success_keeps_the_lock_level(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1, lockout_base_seconds=10))
    account = _account()
    assert await throttle.record_failure(account=account) == 10
    await throttle.record_success(account=account)
    assert await throttle.record_failure(account=account) == 20


async def test_repeat_lock_doubles_after_expiry(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=2, lockout_base_seconds=1))
    account = _account()
    assert await throttle.record_failure(account=account) is None
    assert await throttle.record_failure(account=account) == 1
    await asyncio.sleep(1.1)
    assert await throttle.locked_for(account=account) == 0
    await throttle.before_attempt(account=account, ip=_ip())
    assert await throttle.record_failure(account=account) is None
    assert await throttle.record_failure(account=account) == 2
    assert 1 <= await throttle.locked_for(account=account) <= 2


async def test_lock_is_capped_at_max(redis: Redis) -> None:
    throttle = LoginThrottle(
        redis, _settings(lockout_threshold=1, lockout_base_seconds=5, lockout_max_seconds=30)
    )
    account = _account()
    locks = [await throttle.record_failure(account=account) for _ in range(5)]
    assert locks == [5, 10, 20, 30, 30]
    level = await redis.get(f"auth:lockout:level:{_digest(account)}")
    assert level == b"5"
    assert 0 < await redis.ttl(f"auth:lockout:level:{_digest(account)}") <= 86_400


async def test_ip_limit_raises_429_after_max_attempts(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(login_ip_max_attempts=3, login_ip_window_seconds=60))
    ip = _ip()
    for _ in range(3):
        await throttle.before_attempt(account=_account(), ip=ip)
    with pytest.raises(LoginRateLimitedError) as caught:
        await throttle.before_attempt(account=_account(), ip=ip)
    error = caught.value
    assert error.status == 429
    assert error.code == "identity.login_rate_limited"
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    await throttle.before_attempt(account=_account(), ip=_ip())


async def test_ip_is_counted_before_the_lock(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1, login_ip_max_attempts=2))
    account, ip = _account(), _ip()
    await throttle.record_failure(account=account)
    for _ in range(2):
        with pytest.raises(AccountLockedError):
            await throttle.before_attempt(account=account, ip=ip)
    with pytest.raises(LoginRateLimitedError):
        await throttle.before_attempt(account=account, ip=ip)


async def test_concurrent_failures_lock_exactly_once_per_threshold(redis: Redis) -> None:
    throttle = LoginThrottle(
        redis, _settings(lockout_threshold=5, lockout_base_seconds=60, lockout_max_seconds=3600)
    )
    account = _account()
    results = await asyncio.gather(*(throttle.record_failure(account=account) for _ in range(20)))
    locks = sorted(result for result in results if result is not None)
    assert len(locks) == 4
    assert locks == [60, 120, 240, 480]
    assert await redis.get(f"auth:lockout:level:{_digest(account)}") == b"4"
    assert await redis.get(f"auth:lockout:failures:{_digest(account)}") is None


async def test_plain_account_and_ip_never_reach_redis(redis: Redis) -> None:
    throttle = LoginThrottle(redis, _settings(lockout_threshold=1))
    account, ip = _account(), _ip()
    await throttle.before_attempt(account=account, ip=ip)
    await throttle.record_failure(account=account)
    keys = [k async for k in redis.scan_iter(match="auth:*", count=1000)]
    assert f"auth:ratelimit:login-ip:{_digest(ip)}".encode() in keys
    assert f"auth:lockout:locked:{_digest(account)}".encode() in keys
    for key in keys:
        assert account.encode() not in key
        assert ip.encode() not in key
