"""Names of the agent runs' jobs, for ``tasks/runs.py`` and every enqueuer.

Part of the operations contract (queues route by them, dashboards and alerts select them).
"""

from __future__ import annotations

EXECUTE = "runs.execute"
SWEEP = "runs.sweep"
RESUME = "runs.resume"
