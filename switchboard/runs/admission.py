"""Plan limits, enforced in Redis for every API process at once.

A chat is admitted by one Lua call that checks and takes, atomically: the tenant's runs per
minute (GCRA: a "theoretical arrival time" per tenant, so a full minute's quota may come in a
burst and then one run per interval), a concurrency slot (the run's id in a per-tenant sorted
set, so the sweep can reconcile it with Postgres) and the month's tokens (read from Postgres
when Redis has no fresh copy). Nothing is taken unless everything passes. The slot is given
back when the run ends (the executor, the sweep), or by the unit of work's rollback when the
run's rows never committed.

Streams are limited the same way, in ``stream_slots.py``.

Redis's clock (``TIME``) is the only clock, so API processes on different hosts agree.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis

from switchboard.billing.errors import QuotaExceededError
from switchboard.billing.periods import period_of
from switchboard.billing.schemas import PlanLimits, TenantPlan
from switchboard.runs.errors import (
    ConcurrencyLimitedError,
    RunsRateLimitedError,
)
from switchboard.runs.metrics import ADMISSION_SECONDS, LIMIT_REJECTIONS
from switchboard.runs.settings import RunsSettings

log = structlog.get_logger("switchboard.runs")

MINUTE_MS = 60_000
TENANTS_KEY = "limits:tenants"
UNLIMITED = -1


def rate_key(tenant_id: uuid.UUID) -> str:
    return f"limits:tenant:{tenant_id}:rate"


def slots_key(tenant_id: uuid.UUID) -> str:
    """The tenant's admitted runs: run id -> admission time (ms, Redis clock)."""
    return f"limits:tenant:{tenant_id}:runs"


def tokens_key(tenant_id: uuid.UUID, at: datetime) -> str:
    start, _ = period_of(at)
    return f"limits:tenant:{tenant_id}:tokens:{start:%Y%m}"


def interval_ms(runs_per_minute: int) -> int:
    # Whole milliseconds; the window is runs_per_minute intervals, so a burst admits exactly
    # runs_per_minute runs.
    return MINUTE_MS // runs_per_minute


# KEYS: rate, slots, tokens, tenants. ARGV: run id, tenant id, runs per minute, concurrent
# runs, monthly tokens (-1: unlimited), tokens seed (-1: none), tokens ttl (ms).
# Returns {verdict, a, b}: 0 admitted {remaining this minute, runs in flight, reset ms};
# 1 rate {retry ms}; 2 concurrency {in flight}; 3 tokens unknown (seed and call again);
# 4 monthly tokens used up {used}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local quota = tonumber(ARGV[5])
if quota >= 0 then
  local used = redis.call('GET', KEYS[3])
  if not used then
    local seed = tonumber(ARGV[6])
    if seed < 0 then return {3, 0, 0, 0} end
    redis.call('SET', KEYS[3], seed, 'PX', ARGV[7], 'NX')
    used = redis.call('GET', KEYS[3])
  end
  if tonumber(used) >= quota then return {4, tonumber(used), 0, 0} end
end
local tat_new = 0
local interval = 0
if rate == 0 then return {1, 60000, 0, 0} end
if rate > 0 then
  interval = math.floor(60000 / rate)
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  tat_new = tat + interval
  local allow_at = tat_new - rate * interval
  if now < allow_at then return {1, allow_at - now, 0, 0} end
end
local in_flight = redis.call('ZCARD', KEYS[2])
if slots >= 0 and in_flight >= slots then return {2, 0, in_flight, 0} end
local remaining = -1
local reset = 0
if rate > 0 then
  redis.call('SET', KEYS[1], tat_new, 'PX', tat_new - now)
  remaining = math.floor((now + rate * interval - tat_new) / interval)
  reset = tat_new - now
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return {0, remaining, in_flight + 1, reset}
"""

# KEYS: rate, slots. ARGV: run id, interval ms (0: no rate to give back).
_GIVE_BACK = """
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
local interval = tonumber(ARGV[2])
if removed == 1 and interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]))
  if tat then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tat - interval > now then
      redis.call('SET', KEYS[1], tat - interval, 'PX', tat - interval - now)
    else
      redis.call('DEL', KEYS[1])
    end
  end
end
return removed
"""

# KEYS: slots, tokens. ARGV: run id, tokens used by the run. The month's cached count takes the
# run's tokens at once; without a cached count the next admission reads Postgres anyway.
_RELEASE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCRBY', KEYS[2], tokens)
end
return removed
"""

# KEYS: rate. ARGV: runs per minute. Remaining runs this minute, without taking one.
_PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local interval = math.floor(60000 / rate)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
return math.floor((now + rate * interval - tat) / interval)
"""

# KEYS: slots, tenants. ARGV: tenant id, then run ids to remove. Forgets a tenant whose set
# is empty, in the same call, so a concurrent admission is never forgotten.
_RECONCILE = """
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return left
"""


@dataclass(frozen=True)
class Admitted:
    """A chat's admission: what its response tells the client about the per-minute limit,
    and how many runs the tenant has in flight with it (its dispatch priority)."""

    plan_code: str
    runs_per_minute: int | None
    remaining: int | None
    reset_seconds: int
    in_flight: int

    @property
    def priority(self) -> int:
        """0 (first) to 9: a tenant's first run in flight goes ahead of another tenant's
        tenth. kombu's Redis transport keeps the steps 0, 3, 6 and 9."""
        if self.in_flight <= 1:
            return 0
        if self.in_flight <= 3:
            return 3
        if self.in_flight <= 9:
            return 6
        return 9

    def headers(self) -> dict[str, str]:
        """IETF httpapi RateLimit-Policy and RateLimit fields for the per-minute limit."""
        if self.runs_per_minute is None or self.remaining is None:
            return {}
        return {
            "RateLimit-Policy": f'"runs";q={self.runs_per_minute};w=60',
            "RateLimit": f'"runs";r={self.remaining};t={self.reset_seconds}',
        }


PlanLoader = Callable[[uuid.UUID], Awaitable[TenantPlan]]
TokensLoader = Callable[[uuid.UUID], Awaitable[int]]


class PlanCache:
    """Each tenant's plan limits, reused by a process for ``plan_cache_seconds``: a plan
    change reaches every API process within that time."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._plans: dict[uuid.UUID, tuple[float, TenantPlan]] = {}

    async def get(self, tenant_id: uuid.UUID, load: PlanLoader) -> TenantPlan:
        now = time.monotonic()
        cached = self._plans.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        plan = await load(tenant_id)
        if len(self._plans) > 100_000:
            self._plans.clear()
        self._plans[tenant_id] = (now + self._seconds, plan)
        return plan


class RunSlots:
    """The Redis side of the runs a tenant has in flight; shared by API, workers and sweep."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)
        self._reconcile = redis.register_script(_RECONCILE)

    async def release(self, tenant_id: uuid.UUID, run_id: uuid.UUID, *, tokens: int = 0) -> bool:
        """Gives the run's slot back (and counts its tokens in the month's cached figure);
        True if it held one."""
        removed = await self._release(
            keys=[slots_key(tenant_id), tokens_key(tenant_id, datetime.now(UTC))],
            args=[str(run_id), tokens],
        )
        return bool(removed)

    async def tenants(self) -> list[uuid.UUID]:
        members = await self.redis.smembers(TENANTS_KEY)
        return [uuid.UUID(_text(raw)) for raw in members]

    async def held(self, tenant_id: uuid.UUID) -> list[tuple[uuid.UUID, float]]:
        """The tenant's slots as (run id, admitted at in Redis seconds)."""
        pairs: list[Any] = await self.redis.zrange(slots_key(tenant_id), 0, -1, withscores=True)
        return [(uuid.UUID(_text(member)), float(score) / 1000) for member, score in pairs]

    async def remove(self, tenant_id: uuid.UUID, run_ids: list[uuid.UUID]) -> int:
        """Takes these slots back; returns the slots the tenant still holds."""
        left = await self._reconcile(
            keys=[slots_key(tenant_id), TENANTS_KEY],
            args=[str(tenant_id), *(str(run_id) for run_id in run_ids)],
        )
        return int(left)

    async def redis_time(self) -> float:
        seconds, micros = await self.redis.time()
        return float(seconds) + micros / 1e6


class Admission:
    """Admits chats against the tenant's plan; one per API process."""

    def __init__(self, redis: Redis, settings: RunsSettings) -> None:
        self.settings = settings
        self.slots = RunSlots(redis)
        self.plans = PlanCache(settings.plan_cache_seconds)
        self._admit = redis.register_script(_ADMIT)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._peek = redis.register_script(_PEEK)

    async def plan(self, tenant_id: uuid.UUID, load: PlanLoader) -> TenantPlan:
        return await self.plans.get(tenant_id, load)

    async def admit(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        *,
        load_plan: PlanLoader,
        load_tokens: TokensLoader,
    ) -> Admitted:
        """Takes a slot and a unit of the per-minute rate for the run, or raises 402/429
        having taken nothing."""
        started = time.perf_counter()
        plan = await self.plans.get(tenant_id, load_plan)
        limits = plan.limits
        now = datetime.now(UTC)
        keys = [rate_key(tenant_id), slots_key(tenant_id), tokens_key(tenant_id, now), TENANTS_KEY]
        args: list[str | int] = [
            str(run_id),
            str(tenant_id),
            or_unlimited(limits.runs_per_minute),
            or_unlimited(limits.concurrent_runs),
            or_unlimited(limits.monthly_tokens),
            UNLIMITED,
            int(self.settings.usage_cache_seconds * 1000),
        ]
        verdict, first, second, third = await self._admit(keys=keys, args=args)
        if verdict == 3:
            args[5] = await load_tokens(tenant_id)
            verdict, first, second, third = await self._admit(keys=keys, args=args)
        ADMISSION_SECONDS.observe(time.perf_counter() - started)
        if verdict == 0:
            return Admitted(
                plan_code=plan.plan_code,
                runs_per_minute=limits.runs_per_minute,
                remaining=None if limits.runs_per_minute is None else int(first),
                reset_seconds=math.ceil(int(third) / 1000),
                in_flight=int(second),
            )
        raise self._refusal(plan, int(verdict), int(first), now)

    def _refusal(
        self, plan: TenantPlan, verdict: int, first: int, now: datetime
    ) -> QuotaExceededError | RunsRateLimitedError | ConcurrencyLimitedError:
        limits = plan.limits
        if verdict == 4:
            LIMIT_REJECTIONS.labels("monthly_tokens", plan.plan_code).inc()
            _, end = period_of(now)
            return QuotaExceededError(
                f"The tenant used its plan's {limits.monthly_tokens} tokens this month.",
                headers=retry_after(math.ceil((end - now).total_seconds())),
            )
        if verdict == 1:
            LIMIT_REJECTIONS.labels("runs_per_minute", plan.plan_code).inc()
            rate = limits.runs_per_minute or 0
            return RunsRateLimitedError(
                f"The plan allows {rate} runs per minute.",
                headers={
                    **retry_after(math.ceil(first / 1000)),
                    "RateLimit-Policy": f'"runs";q={rate};w=60',
                    "RateLimit": f'"runs";r=0;t={math.ceil(first / 1000)}',
                },
            )
        LIMIT_REJECTIONS.labels("concurrent_runs", plan.plan_code).inc()
        return ConcurrencyLimitedError(
            f"The plan allows {limits.concurrent_runs} runs in flight at once.",
            headers=retry_after(self.settings.concurrency_retry_seconds),
        )

    async def give_back(self, tenant_id: uuid.UUID, run_id: uuid.UUID, admitted: Admitted) -> None:
        """Undoes an admission whose run was never stored: its slot and its unit of rate."""
        interval = interval_ms(admitted.runs_per_minute) if admitted.runs_per_minute else 0
        await self._give_back(
            keys=[rate_key(tenant_id), slots_key(tenant_id)], args=[str(run_id), interval]
        )
        log.info("runs.admission_given_back", run_id=str(run_id))

    async def remaining_this_minute(self, tenant_id: uuid.UUID, limits: PlanLimits) -> int | None:
        """Runs the tenant may still start now (None: unlimited)."""
        rate = limits.runs_per_minute
        if rate is None:
            return None
        if rate <= 0:
            return 0
        return int(await self._peek(keys=[rate_key(tenant_id)], args=[rate]))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def or_unlimited(value: int | None) -> int:
    return UNLIMITED if value is None else value


def retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, seconds))}
