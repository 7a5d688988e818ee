"""Opaque single-purpose tokens: ``<prefix>_<selector>.<secret>``.

The selector finds the row; only an HMAC of the secret (keyed with a server-side pepper) is
stored, so a database leak yields no usable token and lookups stay constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from switchboard.auth.settings import AuthSettings
from switchboard.identity.settings import IdentitySettings

_SHAPE = re.compile(
    r"^(?P<prefix>[a-z]{2,4})_(?P<selector>[A-Za-z0-9_-]{22})\.(?P<secret>[A-Za-z0-9_-]{43})$"
)


@dataclass(frozen=True)
class OpaqueToken:
    prefix: str
    selector: str
    secret: str

    @property
    def value(self) -> str:
        return f"{self.prefix}_{self.selector}.{self.secret}"


def new_token(prefix: str) -> OpaqueToken:
    return OpaqueToken(prefix, secrets.token_urlsafe(16), secrets.token_urlsafe(32))


def parse_token(value: str, prefix: str) -> OpaqueToken | None:
    match = _SHAPE.match(value)
    if match is None or match["prefix"] != prefix:
        return None
    return OpaqueToken(prefix, match["selector"], match["secret"])


def secret_hash(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(pepper: bytes, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(pepper, secret), stored_hash)


def keyed_hash(salt: bytes, value: str) -> str:
    """For values kept only to correlate events (emails, IPs): not reversible without the salt."""
    return hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()


def token_pepper(settings: AuthSettings) -> bytes:
    """The key of every stored token and client-secret hash."""
    return settings.refresh_token_pepper.get_secret_value().encode()


def event_hash(settings: IdentitySettings, value: str) -> str:
    """An email or IP as login events and logs keep it."""
    return keyed_hash(settings.ip_hash_salt.get_secret_value().encode(), value)
