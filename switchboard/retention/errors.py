from __future__ import annotations

from switchboard.kit.errors import AppError, NotFoundError


class DeletionNotFoundError(NotFoundError):
    code = "tenant.deletion_not_found"


class ConfirmationMismatchError(AppError):
    status = 422
    code = "tenant.confirmation_mismatch"
    title = "Unprocessable content"


class UnclassifiedTableError(Exception):
    """A table holds tenant rows but TENANT_TABLES does not say what to do with them."""
