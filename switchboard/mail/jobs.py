"""Names of the mail jobs, for ``tasks/mail.py`` and every enqueuer."""

from __future__ import annotations

SEND = "mail.send"
