"""Who is calling: taken from a verified token only, never from headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.auth.errors import InvalidTokenError

OPERATOR_ROLE = "operator"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    roles: frozenset[str]
    token_id: str

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles

    def has_any_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    @classmethod
    def from_access_claims(cls, claims: Mapping[str, Any]) -> Principal:
        tenant_id, roles = claims.get("tid"), claims.get("roles")
        if not isinstance(tenant_id, str) or not isinstance(roles, list):
            raise InvalidTokenError("claims")
        if not all(isinstance(role, str) for role in roles):
            raise InvalidTokenError("claims")
        return cls(
            subject=claims["sub"],
            tenant_id=tenant_id,
            roles=frozenset(roles),
            token_id=claims["jti"],
        )
