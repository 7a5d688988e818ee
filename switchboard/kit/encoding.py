"""base64url (RFC 4648, section 5), written without padding as JOSE and our cursors use it."""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Strict decoding: ValueError for any character outside the alphabet or a bad length.
    The ``=`` padding is optional."""
    if _B64URL.fullmatch(value) is None:
        raise ValueError("not base64url")
    unpadded = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
