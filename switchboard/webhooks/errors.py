from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError, NotFoundError


class EndpointNotFoundError(NotFoundError):
    code = "webhooks.endpoint_not_found"


class DeliveryNotFoundError(NotFoundError):
    code = "webhooks.delivery_not_found"


class EndpointDisabledError(ConflictError):
    code = "webhooks.endpoint_disabled"


class EndpointLimitError(ConflictError):
    code = "webhooks.endpoint_limit"


class InvalidEndpointUrlError(AppError):
    status = 422
    code = "webhooks.invalid_url"
    title = "Unprocessable content"

    def __init__(self, message: str) -> None:
        super().__init__(
            message, errors=[{"loc": ["body", "url"], "msg": message, "type": "url_refused"}]
        )
