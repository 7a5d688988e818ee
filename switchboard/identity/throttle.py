"""Login throttling: a per-IP attempt limit and per-account lockout with exponential backoff.

All state lives in Redis under hashed keys (sha256 hex of the account or IP), so plain emails
and addresses never reach Redis and every API process sees the same counters:

- ``auth:ratelimit:login-ip:<ip hash>``: login attempts of one IP in the current window;
- ``auth:lockout:failures:<account hash>``: failed logins since the first in the window;
- ``auth:lockout:locked:<account hash>``: present while the account is locked (TTL = lock);
- ``auth:lockout:level:<account hash>``: locks in the last 24 h, which doubles the next lock.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.identity.settings import IdentitySettings
from switchboard.kit.errors import AppError
from switchboard.kit.ratelimit import RateLimitedError, RateLimiter, hash_key, retry_after_headers

LOCKOUT_PREFIX = "auth:lockout:"
LOGIN_IP_PREFIX = "auth:ratelimit:login-ip"
LEVEL_TTL_SECONDS = 86_400

# KEYS: failures, locked, level. ARGV: window, threshold, base, max, level TTL.
# Returns 0 when the failure did not lock the account, else the seconds of the new lock.
_FAILURE_SCRIPT = """
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
if failures < tonumber(ARGV[2]) then
    return 0
end
redis.call('DEL', KEYS[1])
local level = tonumber(redis.call('GET', KEYS[3]) or '0')
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local seconds = cap
if level < 62 then
    seconds = math.min(base * (2 ^ level), cap)
end
seconds = math.max(1, math.floor(seconds))
redis.call('SET', KEYS[2], '1', 'EX', seconds)
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return seconds
"""


class AccountLockedError(AppError):
    status = 423
    code = "identity.account_locked"
    title = "Locked"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            "Too many failed sign-ins. Try again later.",
            headers=retry_after_headers(self.retry_after),
        )


class LoginRateLimitedError(RateLimitedError):
    code = "identity.login_rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, "Too many sign-in attempts. Try again later.")


class LoginThrottle:
    def __init__(self, redis: Redis, settings: IdentitySettings) -> None:
        self._redis = redis
        self._settings = settings
        self._ip_limiter = RateLimiter(redis, prefix=LOGIN_IP_PREFIX)
        self._failure = redis.register_script(_FAILURE_SCRIPT)

    @staticmethod
    def _keys(account: str) -> tuple[str, str, str]:
        digest = hash_key(account)
        return (
            f"{LOCKOUT_PREFIX}failures:{digest}",
            f"{LOCKOUT_PREFIX}locked:{digest}",
            f"{LOCKOUT_PREFIX}level:{digest}",
        )

    async def before_attempt(self, *, account: str, ip: str) -> None:
        """Count the attempt against ``ip``, then refuse it if ``account`` is locked."""
        retry = await self._ip_limiter.hit(
            ip,
            limit=self._settings.login_ip_max_attempts,
            window_seconds=self._settings.login_ip_window_seconds,
        )
        if retry is not None:
            raise LoginRateLimitedError(retry)
        locked = await self.locked_for(account=account)
        if locked > 0:
            raise AccountLockedError(locked)

    async def record_failure(self, *, account: str) -> int | None:
        """Count a failed login; returns the lock seconds when this failure locked the account."""
        s = self._settings
        result = await self._failure(
            keys=list(self._keys(account)),
            args=[
                s.lockout_window_seconds,
                s.lockout_threshold,
                s.lockout_base_seconds,
                s.lockout_max_seconds,
                LEVEL_TTL_SECONDS,
            ],
        )
        seconds = int(result)
        return seconds if seconds > 0 else None

    async def record_success(self, *, account: str) -> None:
        """Forget the failures counted so far; the lock level stays for its 24 hours."""
        failures, _, _ = self._keys(account)
        await self._redis.delete(failures)

    async def locked_for(self, *, account: str) -> int:
        """Whole seconds the account stays locked; 0 when it is not locked."""
        _, locked, _ = self._keys(account)
        pttl = int(await self._redis.pttl(locked))
        if pttl <= 0:
            return 0
        return -(-pttl // 1000)
