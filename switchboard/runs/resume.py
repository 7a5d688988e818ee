"""Where a resumed stream starts: the ``Last-Event-ID`` a client sends, read strictly."""

from __future__ import annotations

import re

from switchboard.runs.errors import InvalidLastEventIdError

# The largest number an event of a run can have. Events are numbered by the publishing Lua
# script (events.py), and Redis's Lua writes numbers with 14 significant digits: from 10**14
# on, an event's entry id and its `seq` would come out in exponent form. No event is numbered
# above this, so a larger id names nothing (and one past 2**64 would fail Redis's XRANGE).
LAST_SEQ = 10**14 - 1

# ASCII digits only: int() would also take a sign, surrounding spaces, underscores ("1_000")
# and the digits of other scripts ("١٢"). Leading zeros are skipped, not converted: int()
# refuses a string of more than 4300 digits with a ValueError of its own.
_SEQUENCE = re.compile(rf"0*([0-9]{{1,{len(str(LAST_SEQ))}}})")


def parse_last_event_id(raw: str | None) -> int:
    """The number of the last event the client processed; 0 (start at the first) without one.
    Anything but a whole number from 0 to ``LAST_SEQ`` is 422 ``run.invalid_last_event_id``."""
    if raw is None or raw == "":
        return 0
    matched = _SEQUENCE.fullmatch(raw)
    if matched is None or int(matched[1]) > LAST_SEQ:
        raise InvalidLastEventIdError(
            f"Last-Event-ID must be a whole number from 0 to {LAST_SEQ}, in the digits 0-9."
        )
    return int(matched[1])
