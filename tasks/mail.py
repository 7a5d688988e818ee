"""Mail jobs on the maintenance queue: one sealed mail each, sent over SMTP."""

from __future__ import annotations

from switchboard.mail import jobs
from switchboard.mail.errors import TransientMailError
from switchboard.mail.sender import deliver
from workers.celery_app import celery_app, runtime, settings


# A server that cannot take the mail now (down, slow, 4xx) is tried again with exponential
# backoff and jitter; a refusal (5xx) or a job that cannot be opened fails at once and is
# recorded by the failure signal. The argument is sealed (switchboard/mail/sealing.py).
@celery_app.task(
    name=jobs.SEND,
    autoretry_for=(TransientMailError,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=settings.smtp.max_retries,
)
def send(sealed: str) -> None:
    """Delivers one mail (a password-reset or an invitation link)."""
    runtime.run(deliver(runtime.mailer, runtime.mail_sealer, sealed))
