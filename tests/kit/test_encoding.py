"""base64url: unpadded out, strict in."""

from __future__ import annotations

import os

import pytest

from switchboard.kit.encoding import b64url_decode, b64url_encode


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33])
def test_round_trip_without_padding(size: int) -> None:
    data = os.urandom(size)
    encoded = b64url_encode(data)

    assert "=" not in encoded
    assert b64url_decode(encoded) == data


def test_padding_is_optional_and_the_alphabet_is_urlsafe() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b64url_decode("-_8=") == b"\xfb\xff"


@pytest.mark.parametrize("text", ["+/8", "a b", "AAAA\n", "A", "AAAAA", "AA===", "=AA", "é"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(text)
