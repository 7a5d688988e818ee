from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError, NotFoundError
from switchboard.kit.ratelimit import RateLimitedError


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


class PublicRateLimitedError(RateLimitedError):
    """An unauthenticated endpoint refused: too many requests from one address, or from
    everyone at once. Each endpoint has its own code."""

    def __init__(self, retry_after: int, *, per_address: bool) -> None:
        source = "from this address" if per_address else "right now"
        super().__init__(retry_after, f"Too many of these requests {source}. Try again later.")


class AcceptInvitationRateLimitedError(PublicRateLimitedError):
    code = "identity.invitation_accept_rate_limited"


class RegisterRateLimitedError(PublicRateLimitedError):
    code = "identity.register_rate_limited"


class ForgotPasswordRateLimitedError(PublicRateLimitedError):
    code = "identity.password_forgot_rate_limited"


class ResetPasswordRateLimitedError(PublicRateLimitedError):
    code = "identity.password_reset_rate_limited"


class RefreshRateLimitedError(PublicRateLimitedError):
    code = "identity.refresh_rate_limited"


class InvalidClientError(AppError):
    status = 401
    code = "identity.invalid_client"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("The client credentials are not valid.")


class EmailTakenError(ConflictError):
    code = "identity.email_taken"


class InvalidInvitationError(AppError):
    """Malformed, unknown, forged, used, revoked or expired: said the same way for each."""

    status = 401
    code = "identity.invalid_invitation"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("The invitation link is invalid, used, revoked or expired.")


class PasswordRequiredError(AppError):
    status = 422
    code = "identity.password_required"
    title = "Unprocessable content"

    def __init__(self) -> None:
        super().__init__("This email has no account yet: choose a password to create it.")


class NoSeatFreeError(ConflictError):
    code = "identity.no_seat_free"


class AlreadyMemberError(ConflictError):
    code = "identity.already_member"


class LastOwnerError(ConflictError):
    code = "identity.last_owner"


class MemberNotFoundError(NotFoundError):
    code = "identity.member_not_found"


class InvitationNotFoundError(NotFoundError):
    code = "identity.invitation_not_found"
