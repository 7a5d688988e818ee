"""Login throttling: limits on failed sign-ins per IP and for everyone, and per-account lockout
with exponential backoff.

A sign-in reserves its place before the password is checked, in one Lua call that reads and
writes every counter below, so concurrent attempts from any number of API processes are
counted as if they came one at a time:

- ``auth:ratelimit:login-ip:<ip hash>``: the start of the IP's window (TTL = the window), which
  the first reservation after the last window ended sets from Redis's clock;
- ``auth:ratelimit:login-ip:<ip hash>:<start>``: attempts of that IP in that window that did not
  succeed (or are still running); at the limit, its attempts are refused before anything else;
- ``auth:ratelimit:login-global`` and ``auth:ratelimit:login-global:<start>``: the same for every
  IP together, per minute;
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
locked account. A success gives back its IP and global places in the windows it took them from
(a window that ended meanwhile is left alone, so the next one keeps all its failures) and clears
the account's count.

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

# KEYS: ip window, global window, attempts, locked, level.
# ARGV: ip limit, ip window, global limit, global window, threshold, lockout window, base lock,
# max lock, level TTL, the attempt's token.
# Returns {outcome, seconds, ...}: for _RESERVED, the seconds of the lock this attempt set (0 when
# it set none), then the ip and global counters it counts in; otherwise the seconds until the
# refusal ends.
_RESERVE_SCRIPT = """
local function window(key, seconds)
    local start = redis.call('GET', KEYS[key])
    if not start then
        local now = redis.call('TIME')
        start = now[1] .. string.format('%06d', tonumber(now[2]))
        redis.call('SET', KEYS[key], start, 'EX', seconds)
    end
    local ms = redis.call('PTTL', KEYS[key])
    if ms <= 0 then
        ms = seconds * 1000
    end
    return KEYS[key] .. ':' .. start, ms
end
local function seconds_left(key, default)
    local pttl = redis.call('PTTL', KEYS[key])
    if pttl <= 0 then
        return default
    end
    return math.max(1, math.ceil(pttl / 1000))
end
local ip, ip_ms = window(1, tonumber(ARGV[2]))
if tonumber(redis.call('GET', ip) or '0') >= tonumber(ARGV[1]) then
    return {1, math.max(1, math.ceil(ip_ms / 1000))}
end
local all, all_ms = window(2, tonumber(ARGV[4]))
if tonumber(redis.call('GET', all) or '0') >= tonumber(ARGV[3]) then
    return {2, math.max(1, math.ceil(all_ms / 1000))}
end
redis.call('INCR', ip)
redis.call('PEXPIRE', ip, ip_ms, 'NX')
redis.call('INCR', all)
redis.call('PEXPIRE', all, all_ms, 'NX')
if redis.call('PTTL', KEYS[4]) > 0 then
    return {3, seconds_left(4, 1)}
end
local attempts = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[6], 'NX')
if attempts < tonumber(ARGV[5]) then
    return {0, 0, ip, all}
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
return {0, seconds, ip, all}
"""

# KEYS: the ip and global counters the attempt counts in, attempts, locked, level. ARGV: the
# attempt's token.
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
    """A sign-in holding its place; ``locks_for`` is set when it took the account's last one.
    ``keys`` are the exact counters it counts in, windows included, so a success gives back
    there and nowhere else."""

    keys: tuple[str, str, str, str, str]
    token: str
    locks_for: int | None


class LoginThrottle:
    def __init__(self, redis: Redis, settings: IdentitySettings) -> None:
        self._settings = settings
        self._reserve = redis.register_script(_RESERVE_SCRIPT)
        self._succeed = redis.register_script(_SUCCEED_SCRIPT)

    async def begin(self, *, account: str, ip: str) -> LoginAttempt:
        """Reserve a place for one sign-in before its password is checked, or refuse it: 429
        when ``ip`` or everyone is at the limit, 423 when ``account`` is locked."""
        s = self._settings
        digest = hash_key(account)
        account_keys = (
            f"{LOCKOUT_PREFIX}attempts:{digest}",
            f"{LOCKOUT_PREFIX}locked:{digest}",
            f"{LOCKOUT_PREFIX}level:{digest}",
        )
        token = secrets.token_urlsafe(16)
        reply = await self._reserve(
            keys=[f"{LOGIN_IP_PREFIX}:{hash_key(ip)}", LOGIN_GLOBAL_KEY, *account_keys],
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
        outcome, seconds = int(reply[0]), int(reply[1])
        if outcome == _IP_LIMITED:
            raise LoginRateLimitedError(seconds, per_address=True)
        if outcome == _GLOBAL_LIMITED:
            raise LoginRateLimitedError(seconds, per_address=False)
        if outcome == _LOCKED:
            raise AccountLockedError(seconds)
        ip_counter, global_counter = (_text(key) for key in reply[2:4])
        return LoginAttempt((ip_counter, global_counter, *account_keys), token, seconds or None)

    async def succeed(self, attempt: LoginAttempt) -> None:
        """Settle a sign-in whose credentials were right: 423 if another attempt locked the
        account meanwhile. Otherwise its places are given back and the account's count cleared;
        a lock it set itself is lifted and leaves the level as it was. Earlier locks stay in the
        level for their 24 hours."""
        locked = int(await self._succeed(keys=list(attempt.keys), args=[attempt.token]))
        if locked > 0:
            raise AccountLockedError(locked)
