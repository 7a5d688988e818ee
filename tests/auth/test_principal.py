"""The caller, read from verified access-token claims."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from switchboard.auth.errors import InvalidTokenError
from switchboard.auth.principal import Principal

USER, TENANT = uuid.uuid4(), uuid.uuid4()


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {"sub": str(USER), "tid": str(TENANT), "roles": ["admin"], "jti": "j1"}
    claims.update(overrides)
    return claims


def test_ids_arrive_as_uuids() -> None:
    principal = Principal.from_access_claims(_claims())

    assert (principal.subject, principal.tenant_id) == (USER, TENANT)
    assert principal.has_any_role("owner", "admin")
    assert not principal.is_operator


@pytest.mark.parametrize(
    "claims",
    [
        _claims(sub="not-a-uuid"),
        _claims(tid="42"),
        _claims(tid=None),
        _claims(sub=7),
        _claims(roles="admin"),
        _claims(roles=["admin", 1]),
    ],
)
def test_claims_that_name_no_user_or_tenant_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidTokenError):
        Principal.from_access_claims(claims)
