"""Who is calling: taken from a verified token only, never from headers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.auth.errors import InvalidTokenError

OPERATOR_ROLE = "operator"


@dataclass(frozen=True)
class Principal:
    subject: uuid.UUID
    tenant_id: uuid.UUID
    roles: frozenset[str]
    token_id: str

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles

    def has_any_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    @classmethod
    def from_access_claims(cls, claims: Mapping[str, Any]) -> Principal:
        subject, tenant_id, roles = claims.get("sub"), claims.get("tid"), claims.get("roles")
        if not isinstance(subject, str) or not isinstance(tenant_id, str):
            raise InvalidTokenError("claims")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidTokenError("claims")
        try:
            return cls(
                subject=uuid.UUID(subject),
                tenant_id=uuid.UUID(tenant_id),
                roles=frozenset(roles),
                token_id=claims["jti"],
            )
        except ValueError:
            raise InvalidTokenError("claims") from None
