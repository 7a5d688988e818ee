"""Task names come from each domain's ``jobs`` module and never change by accident."""

from __future__ import annotations

from types import ModuleType

from celery import Celery

from switchboard.auth import jobs as auth_jobs
from switchboard.billing import jobs as billing_jobs
from switchboard.mail import jobs as mail_jobs
from switchboard.ops import jobs as ops_jobs
from switchboard.retention import jobs as retention_jobs
from switchboard.runs import jobs as runs_jobs
from switchboard.settings import Settings
from switchboard.webhooks import jobs as webhooks_jobs
from workers.beat import beat_schedule

# The operations contract: queues route by these names, dashboards and alerts select them.
CONTRACT = {
    "auth.keys.cutover",
    "auth.keys.rotate",
    "billing.subscriptions.resend",
    "billing.subscriptions.sync",
    "billing.usage.report",
    "billing.webhooks.process",
    "billing.webhooks.resend",
    "mail.send",
    "retention.run",
    "retention.tenant.purge",
    "runs.execute",
    "runs.resume",
    "runs.sweep",
    "system.check",
    "system.heartbeat",
    "system.ping",
    "webhooks.deliver",
    "webhooks.dispatch",
}
DOMAINS: tuple[ModuleType, ...] = (
    auth_jobs,
    billing_jobs,
    mail_jobs,
    ops_jobs,
    retention_jobs,
    runs_jobs,
    webhooks_jobs,
)


def _names(module: ModuleType) -> set[str]:
    return {
        value for name, value in vars(module).items() if name.isupper() and isinstance(value, str)
    }


def test_the_domains_name_every_task_of_the_contract(celery_app: Celery) -> None:
    celery_app.loader.import_default_modules()
    registered = {name for name in celery_app.tasks if not name.startswith(("celery.", "tests."))}

    assert set().union(*map(_names, DOMAINS)) == CONTRACT
    assert registered == CONTRACT


def test_beat_schedules_registered_tasks(celery_app: Celery, settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in beat_schedule(settings).values()}

    assert scheduled <= set(celery_app.tasks)


def test_every_key_action_has_its_task() -> None:
    assert set(auth_jobs.KEY_ACTIONS.values()) == _names(auth_jobs)
