"""Names of the worker fleet's own jobs, for ``tasks/system.py`` and every enqueuer.

Part of the operations contract (queues route by them, dashboards and alerts select them).
"""

from __future__ import annotations

PING = "system.ping"
CHECK = "system.check"
HEARTBEAT = "system.heartbeat"
