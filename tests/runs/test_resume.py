"""Reading a Last-Event-ID: leading zeros, however many, do not change the number."""

from __future__ import annotations

import pytest

from switchboard.runs.errors import InvalidLastEventIdError
from switchboard.runs.resume import LAST_SEQ, parse_last_event_id


@pytest.mark.parametrize(
    ("raw", "seq"),
    [
        pytest.param("0001", 1, id="0001"),
        pytest.param("0" * 5000 + "1", 1, id="5000 zeros then 1"),
        pytest.param("0" * 5000, 0, id="5000 zeros"),
        pytest.param("0" * 5000 + str(LAST_SEQ), LAST_SEQ, id="5000 zeros then the last"),
    ],
)
def test_leading_zeros_are_skipped(raw: str, seq: int) -> None:
    assert parse_last_event_id(raw) == seq


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("0" * 5000 + str(LAST_SEQ + 1), id="5000 zeros then one past the last"),
        pytest.param("1" * 5000, id="5000 ones"),
        pytest.param("0" * 5000 + "-1", id="5000 zeros then -1"),
    ],
)
def test_a_long_id_beyond_the_last_event_is_refused(raw: str) -> None:
    with pytest.raises(InvalidLastEventIdError):
        parse_last_event_id(raw)
