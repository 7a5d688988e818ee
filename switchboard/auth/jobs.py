"""Names of the signing-key jobs, for ``tasks/auth.py`` and every enqueuer.

Part of the operations contract (queues route by them, dashboards and alerts select them).
"""

from __future__ import annotations

ROTATE_KEYS = "auth.keys.rotate"
CUTOVER_KEYS = "auth.keys.cutover"

# An operator's `KeyRotationRequest.action` and the job it enqueues.
KEY_ACTIONS: dict[str, str] = {"rotate": ROTATE_KEYS, "cutover": CUTOVER_KEYS}
