"""Login throttling: limits on failed sign-ins per IP and for everyone, and per-account lockout
with exponential backoff.

A sign-in reserves its place before the password is checked, in one Lua call that reads and
writes every counter below, so concurrent attempts from any number of API processes are
counted as if they came one at a time:

- ``auth:ratelimit:login-ip:<ip hash>``: attempts of one IP in its window that did not succeed
  (or are still running); at the limit, its attempts are refused before anything else;
- ``auth:ratelimit:login-global``: the same for every IP together, per minute;
- ``auth:lockout:attempts:<account hash>``: attempts on the account since the first in the
  window, running or failed; the one that takes the last place locks the account at once;
- ``auth:lockout:locked:<account hash>``: present while the account is locked (TTL = lock); it
  holds the token of the attempt that set it;
- ``auth:lockout:level:<account hash>``: locks in the last 24 h, which doubles the next lock.

Locking when the last place is taken, not when the last failure is known, is what bounds the
passwords tried per lock: however many guesses arrive together, at most ``lockout_threshold``
reach the password check. A sign-in whose password is right succeeds only if, when it is
settled, the account is unlocked or locked by that sign-in itself (which then lifts it): a right
password checked while another attempt locked the account is refused like any attempt on a
locked account. A success gives back its IP and global places and clears the account's count.

Hashes are sha256 hex of the IP or lower-cased email, so neither reaches Redis in clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from switchboard.identity.settings import IdentitySettings
from switchboard.kit.errors import AppError
from switchboard.kit.ratelimit import RateLimitedError, hash_key, retry_after_headers

LOCKOUT_PREFIX = "auth:lockout:"
LOGIN_IP_PREFIX = "auth:ratelimit:login-ip"
LOGIN_GLOBAL_KEY = "auth:ratelimit:login-global"
GLOBAL_WINDOW_SECONDS = 60
LEVEL_TTL_SECONDS = 86_400

_RESERVED, _IP_LIMITED, _GLOBAL_LIMITED, _LOCKED = 0, 1, 2, 3

# KEYS: ip, global, attempts, locked, level.
# ARGV: ip limit, ip window, global limit, global window, threshold, lockout window, base lock,
# max lock, level TTL, the attempt's token.
# Returns {outcome, seconds}: for _RESERVED, the seconds of the lock this attempt set (0 when it
# set none); otherwise the seconds until the refusal ends.
_RESERVE_SCRIPT = """
local function seconds_left(key, default)
    local pttl = redis.call('PTTL', KEYS[key])
    if pttl <= 0 then
        return default
    end
    return math.max(1, math.ceil(pttl / 1000))
end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
    return {1, seconds_left(1, tonumber(ARGV[2]))}
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then
    return {2, seconds_left(2, tonumber(ARGV[4]))}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')
if redis.call('PTTL', KEYS[4]) > 0 then
    return {3, seconds_left(4, 1)}
end
local attempts = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[6], 'NX')
if attempts < tonumber(ARGV[5]) then
    return {0, 0}
end
redis.call('DEL', KEYS[3])
local level = tonumber(redis.call('GET', KEYS[5]) or '0')
local base = tonumber(ARGV[7])
local cap = tonumber(ARGV[8])
local seconds = cap
if level < 62 then
    seconds = math.min(base * (2 ^ level), cap)
end
seconds = math.max(1, math.floor(seconds))
redis.call('SET', KEYS[4], ARGV[10], 'EX', seconds)
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], ARGV[9])
return {0, seconds}
"""

# KEYS: ip, global, attempts, locked, level. ARGV: the attempt's token.
# Returns 0 when the sign-in may succeed (its places given back, the account's count cleared),
# else the seconds left of a lock another attempt set.
_SUCCEED_SCRIPT = """
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[1] then
    return math.max(1, math.ceil(redis.call('PTTL', KEYS[4]) / 1000))
end
if holder then
    redis.call('DEL', KEYS[4])
    if tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then
        redis.call('DECR', KEYS[5])
    end
end
redis.call('DEL', KEYS[3])
for i = 1, 2 do
    if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
        redis.call('DECR', KEYS[i])
    end
end
return 0
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

    def __init__(self, retry_after: int, *, per_address: bool = True) -> None:
        source = "from this address" if per_address else "right now"
        super().__init__(retry_after, f"Too many failed sign-ins {source}. Try again later.")


@dataclass(frozen=True)
class LoginAttempt:
    """A sign-in holding its place; ``locks_for`` is set when it took the account's last one."""

    keys: tuple[str, str, str, str, str]
    token: str
    locks_for: int | None


class LoginThrottle:
    def __init__(self, redis: Redis, settings: IdentitySettings) -> None:
        self._redis = redis
        self._settings = settings
        self._reserve = redis.register_script(_RESERVE_SCRIPT)
        self._succeed = redis.register_script(_SUCCEED_SCRIPT)

    @staticmethod
    def _keys(account: str, ip: str) -> tuple[str, str, str, str, str]:
        digest = hash_key(account)
        return (
            f"{LOGIN_IP_PREFIX}:{hash_key(ip)}",
            LOGIN_GLOBAL_KEY,
            f"{LOCKOUT_PREFIX}attempts:{digest}",
            f"{LOCKOUT_PREFIX}locked:{digest}",
            f"{LOCKOUT_PREFIX}level:{digest}",
        )

    async def begin(self, *, account: str, ip: str) -> LoginAttempt:
        """Reserve a place for one sign-in before its password is checked, or refuse it: 429
        when ``ip`` or everyone is at the limit, 423 when ``account`` is locked."""
        s = self._settings
        keys = self._keys(account, ip)
        token = secrets.token_urlsafe(16)
        outcome, seconds = await self._reserve(
            keys=list(keys),
            args=[
                s.login_ip_max_attempts,
                s.login_ip_window_seconds,
                s.login_global_failures_per_minute,
                GLOBAL_WINDOW_SECONDS,
                s.lockout_threshold,
                s.lockout_window_seconds,
                s.lockout_base_seconds,
                s.lockout_max_seconds,
                LEVEL_TTL_SECONDS,
                token,
            ],
        )
        outcome, seconds = int(outcome), int(seconds)
        if outcome == _IP_LIMITED:
            raise LoginRateLimitedError(seconds, per_address=True)
        if outcome == _GLOBAL_LIMITED:
            raise LoginRateLimitedError(seconds, per_address=False)
        if outcome == _LOCKED:
            raise AccountLockedError(seconds)
        return LoginAttempt(keys, token, seconds or None)

    async def succeed(self, attempt: LoginAttempt) -> None:
        """Settle a sign-in whose credentials were right: 423 if another attempt locked the
        account meanwhile. Otherwise its places are given back and the account's count cleared;
        a lock it set itself is lifted and leaves the level as it was. Earlier locks stay in the
        level for their 24 hours."""
        locked = int(await self._succeed(keys=list(attempt.keys), args=[attempt.token]))
        if locked > 0:
            raise AccountLockedError(locked)

    async def locked_for(self, *, account: str) -> int:
        """Whole seconds the account stays locked; 0 when it is not locked."""
        locked = f"{LOCKOUT_PREFIX}locked:{hash_key(account)}"
        pttl = int(await self._redis.pttl(locked))
        if pttl <= 0:
            return 0
        return -(-pttl // 1000)
