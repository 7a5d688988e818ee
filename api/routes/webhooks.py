"""Outbound webhooks: a tenant's endpoints, their secrets, test events and delivery log.

Owner or admin, roles read from Postgres at each request.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import RequireMember, Webhooks
from api.errors import problem_responses
from api.pages import link_page
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.principal import Principal
from switchboard.kit.text import SafeStr
from switchboard.webhooks.errors import (
    DeliveryNotFoundError,
    EndpointDisabledError,
    EndpointLimitError,
    EndpointNotFoundError,
    InvalidEndpointUrlError,
)
from switchboard.webhooks.schemas import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    AttemptRead,
    DeliveryQueued,
    EndpointCreate,
    EndpointCreated,
    EndpointRead,
    EndpointUpdate,
    SecretRotated,
)

router = APIRouter(
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    responses=problem_responses(InvalidTokenError, ForbiddenError, 503),
)

Manager = Annotated[Principal, Depends(RequireMember("owner", "admin"))]
PageSize = Annotated[
    int, Query(ge=1, le=PAGE_SIZE_MAX, description=f"Rows per page (at most {PAGE_SIZE_MAX}).")
]
Cursor = Annotated[
    SafeStr | None,
    Query(max_length=200, description='The cursor of the `Link: rel="next"` of the last page.'),
]
NOT_FOUND = problem_responses(EndpointNotFoundError)


@router.post(
    "/endpoints",
    status_code=201,
    response_model=EndpointCreated,
    responses=problem_responses(InvalidEndpointUrlError, EndpointLimitError, 413),
)
async def create_endpoint(
    body: EndpointCreate, principal: Manager, webhooks: Webhooks
) -> EndpointCreated:
    """Subscribe an endpoint to event types. The answer holds its signing secret
    (`whsec_...`), shown this once. The URL must be `https` and may not point at a loopback,
    private, link-local or cloud-metadata address (422 `webhooks.invalid_url`); a tenant has
    at most `WEBHOOKS_MAX_ENDPOINTS` endpoints (409 `webhooks.endpoint_limit`)."""
    return await webhooks.create(principal, body)


@router.get("/endpoints", response_model=list[EndpointRead])
async def list_endpoints(principal: Manager, webhooks: Webhooks) -> list[EndpointRead]:
    """The tenant's endpoints, oldest first, without their secrets."""
    return await webhooks.endpoints(principal)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointRead, responses=NOT_FOUND)
async def get_endpoint(
    endpoint_id: uuid.UUID, principal: Manager, webhooks: Webhooks
) -> EndpointRead:
    """One endpoint, without its secret."""
    return await webhooks.get(principal, endpoint_id)


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=EndpointRead,
    responses=problem_responses(EndpointNotFoundError, InvalidEndpointUrlError, 413),
)
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, principal: Manager, webhooks: Webhooks
) -> EndpointRead:
    """Change the URL, event types, description, or enable or disable the endpoint. A
    disabled endpoint gets no deliveries; enabling it again clears `disabled_reason` and
    starts a fresh failure window."""
    return await webhooks.update(principal, endpoint_id, body)


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=NOT_FOUND)
async def delete_endpoint(
    endpoint_id: uuid.UUID, principal: Manager, webhooks: Webhooks
) -> Response:
    """Delete the endpoint with its deliveries and their log; deliveries in flight stop."""
    await webhooks.delete(principal, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret", response_model=SecretRotated, responses=NOT_FOUND
)
async def rotate_secret(
    endpoint_id: uuid.UUID, principal: Manager, webhooks: Webhooks
) -> SecretRotated:
    """Replace the signing secret. For `WEBHOOKS_SECRET_OVERLAP_SECONDS` (24 h) every delivery
    carries two signatures, by the new secret and the old, so receivers can switch without
    missing one."""
    return await webhooks.rotate_secret(principal, endpoint_id)


@router.post(
    "/endpoints/{endpoint_id}/test",
    status_code=202,
    response_model=DeliveryQueued,
    responses=problem_responses(EndpointNotFoundError, EndpointDisabledError),
)
async def send_test(
    endpoint_id: uuid.UUID, principal: Manager, webhooks: Webhooks
) -> DeliveryQueued:
    """Send a `webhook.test` event to this endpoint, whatever it subscribes to; its attempts
    appear in the delivery log."""
    return await webhooks.send_test(principal, endpoint_id)


@router.get(
    "/endpoints/{endpoint_id}/deliveries", response_model=list[AttemptRead], responses=NOT_FOUND
)
async def deliveries(
    endpoint_id: uuid.UUID,
    principal: Manager,
    webhooks: Webhooks,
    request: Request,
    response: Response,
    limit: PageSize = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> list[AttemptRead]:
    """The endpoint's delivery log, newest first: every attempt with its response status,
    duration and next attempt, and the note when Switchboard disabled the endpoint. When
    more follow, `Link: <...>; rel="next"` gives the next page's URL."""
    page = await webhooks.attempts(principal, endpoint_id, limit=limit, cursor=cursor)
    return link_page(page, request, response)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryQueued,
    responses=problem_responses(DeliveryNotFoundError, EndpointDisabledError),
)
async def redeliver(
    delivery_id: uuid.UUID, principal: Manager, webhooks: Webhooks
) -> DeliveryQueued:
    """Send an attempt's event to its endpoint again (`delivery_id` is the `id` of a row of
    the delivery log): a new delivery with the same `webhook-id` and a fresh retry schedule."""
    return await webhooks.redeliver(principal, delivery_id)
