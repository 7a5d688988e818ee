"""Mail jobs travel sealed: the broker, Flower and the task-failure table see ciphertext.

A mail job carries a reset or invitation link, a credential. Sealed with Fernet (AES-128-CBC
and HMAC-SHA256), the job's argument reveals neither the link nor the address to whoever reads
the broker, a failure record or a monitoring screen, and cannot be altered unnoticed. The key
is derived (HKDF-SHA256, its own label) from ``AUTH_REFRESH_TOKEN_PEPPER``, a secret every API
and worker process already holds and production already requires; changing that pepper leaves
mails still queued unreadable, which the worker records as a failure without retrying.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from switchboard.mail.errors import UndeliverableMailError
from switchboard.mail.messages import Mail
from switchboard.settings import Settings

_LABEL = b"switchboard mail job v1"
# A queued mail is useless after its link expires; a day covers every retry.
MAX_AGE_SECONDS = 86_400


class MailSealer:
    def __init__(self, secret: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    @classmethod
    def for_settings(cls, settings: Settings) -> MailSealer:
        return cls(settings.auth.refresh_token_pepper.get_secret_value().encode())

    def seal(self, mail: Mail) -> str:
        return self._fernet.encrypt(mail.model_dump_json().encode()).decode("ascii")

    def open(self, sealed: str) -> Mail:
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"), ttl=MAX_AGE_SECONDS)
        except (InvalidToken, UnicodeEncodeError):
            raise UndeliverableMailError(
                "The mail job cannot be opened (wrong key or too old)."
            ) from None
        return Mail.model_validate_json(plain)
