"""Ed25519 key pairs and their RFC 7638 thumbprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from switchboard.kit.encoding import b64url_decode, b64url_encode


def thumbprint(x: str) -> str:
    """RFC 7638: SHA-256 over the required members of the JWK, lexically ordered, no spaces."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class GeneratedKey:
    kid: str
    x: str
    private_bytes: bytes


def generate_key() -> GeneratedKey:
    private = Ed25519PrivateKey.generate()
    x = b64url_encode(private.public_key().public_bytes_raw())
    return GeneratedKey(kid=thumbprint(x), x=x, private_bytes=private.private_bytes_raw())


def public_key_from_x(x: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(b64url_decode(x))


def public_jwk(kid: str, x: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}
