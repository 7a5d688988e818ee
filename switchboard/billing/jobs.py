"""Names of the billing jobs, for ``tasks/billing.py`` and every enqueuer.

Part of the operations contract (queues route by them, dashboards and alerts select them).
"""

from __future__ import annotations

SYNC_SUBSCRIPTION = "billing.subscriptions.sync"
RESEND_SUBSCRIPTIONS = "billing.subscriptions.resend"
REPORT_USAGE = "billing.usage.report"
PROCESS_WEBHOOK = "billing.webhooks.process"
RESEND_WEBHOOKS = "billing.webhooks.resend"
