from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError


class InvalidCredentialsError(AppError):
    """Wrong email or password, said the same way for both so no account is revealed."""

    status = 401
    code = "identity.invalid_credentials"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("The email or password is incorrect.")


class InvalidRefreshTokenError(AppError):
    status = 401
    code = "auth.invalid_token"
    title = "Unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__("The refresh token is not valid.")
        self.reason = reason


class InvalidResetTokenError(AppError):
    status = 400
    code = "identity.invalid_reset_token"
    title = "Bad request"

    def __init__(self) -> None:
        super().__init__("The password reset link is invalid, used or expired.")


class InvalidClientError(AppError):
    status = 401
    code = "identity.invalid_client"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("The client credentials are not valid.")


class EmailTakenError(ConflictError):
    code = "identity.email_taken"
