"""Names of the retention jobs, for ``tasks/retention.py`` and every enqueuer.

Part of the operations contract (queues route by them, dashboards and alerts select them).
"""

from __future__ import annotations

RUN = "retention.run"
PURGE_TENANT = "retention.tenant.purge"
