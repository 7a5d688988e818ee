"""Why a mail was not delivered. Raised on workers only: the task retries the transient ones."""

from __future__ import annotations

from switchboard.kit.errors import AppError


class MailNotDeliveredError(AppError):
    status = 502
    code = "mail.not_delivered"
    title = "Bad gateway"


class TransientMailError(MailNotDeliveredError):
    """The server could not take the mail for now (unreachable, timed out, a 4xx reply)."""

    code = "mail.deferred"


class UndeliverableMailError(MailNotDeliveredError):
    """Sending again will not help (a 5xx reply, a job that cannot be opened)."""

    code = "mail.undeliverable"
