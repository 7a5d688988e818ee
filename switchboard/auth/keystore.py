"""Storage of private signing keys: encrypted files or Vault/OpenBao KV v2, one interface.

Every key is addressed by its ``kid`` (an RFC 7638 thumbprint) and kept in numbered versions,
1-based. Writes use check-and-set so two processes rotating at once cannot both win: ``cas=0``
creates a kid, ``cas=N`` adds version N + 1 only while N is the newest, ``cas=None`` always
appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import weakref
from pathlib import Path
from typing import Any, Protocol

import hvac
import hvac.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switchboard.auth.settings import AuthSettings, KeyStoreKind
from switchboard.kit.encoding import b64url_decode, b64url_encode

PRIVATE_KEY_BYTES = 32
KEK_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16

_KID = re.compile(r"[A-Za-z0-9_-]{43}")
_VERSION_FILE = re.compile(r"([1-9][0-9]{0,17})\.key")
_AAD_PREFIX = b"switchboard.keystore.v1"
_VAULT_FIELD = "private_key"


class KeyStoreError(Exception):
    """The key store failed or holds something it cannot use."""


class KeyNotFoundError(KeyStoreError):
    """No such kid, or no such version of it."""


class KeyVersionConflictError(KeyStoreError):
    """Check-and-set failed: the kid's newest version is not the one the caller expected."""


class KeyStore(Protocol):
    async def put(self, kid: str, private_key: bytes, *, cas: int | None = 0) -> int:
        """Stores a new version of ``kid``'s raw 32-byte private key; returns its number.

        ``cas=0``: only if the kid does not exist yet; ``cas=N``: only if the newest version
        is N; ``cas=None``: unconditionally. A failed check raises KeyVersionConflictError.
        """
        ...

    async def get(self, kid: str, *, version: int | None = None) -> bytes:
        """The newest (or the given) version; KeyNotFoundError when missing."""
        ...

    async def delete(self, kid: str) -> None:
        """Removes every version of ``kid``; deleting a missing kid is not an error."""
        ...


def validate_kid(kid: str) -> str:
    """Returns ``kid`` if it is an RFC 7638 thumbprint (43 base64url characters, no padding).

    Called before a kid reaches any path, so it can never climb out of the key directory or
    address another Vault secret.
    """
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
        raise ValueError("invalid key id: expected an RFC 7638 thumbprint (43 base64url chars)")
    return kid


def _validate_private_key(private_key: bytes) -> None:
    if not isinstance(private_key, bytes) or len(private_key) != PRIVATE_KEY_BYTES:
        raise ValueError(f"private key must be {PRIVATE_KEY_BYTES} raw bytes")


def _validate_cas(cas: int | None) -> None:
    if cas is not None and (isinstance(cas, bool) or not isinstance(cas, int) or cas < 0):
        raise ValueError("cas must be None or a non-negative integer")


def _validate_version(version: int | None) -> None:
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ValueError("version must be None or a positive integer")


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileKeyStore:
    """Keys as ``<directory>/<kid>/<version>.key``: a 12-byte nonce, then AES-256-GCM.

    The associated data binds each ciphertext to its kid and version, so a file copied or
    renamed to another place does not decrypt. A new version is written to a temporary file,
    fsynced, then hard-linked to its final name: the link is atomic and, unlike a rename, fails
    when that version already exists, which settles races between processes.
    """

    def __init__(self, directory: Path, key_encryption_key: bytes) -> None:
        if not isinstance(key_encryption_key, bytes) or len(key_encryption_key) != KEK_BYTES:
            raise ValueError(f"the key encryption key must be {KEK_BYTES} bytes")
        self._directory = Path(directory)
        self._aead = AESGCM(key_encryption_key)
        # One lock per event loop: a worker may run several loops over its life.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def directory(self) -> Path:
        return self._directory

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def _kid_dir(self, kid: str) -> Path:
        return self._directory / validate_kid(kid)

    @staticmethod
    def _aad(kid: str, version: int) -> bytes:
        return b"|".join((_AAD_PREFIX, kid.encode("ascii"), str(version).encode("ascii")))

    @staticmethod
    def _versions(kid_dir: Path) -> list[int]:
        try:
            names = os.listdir(kid_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyStoreError(f"cannot list {kid_dir}: {exc}") from exc
        found = (_VERSION_FILE.fullmatch(name) for name in names)
        return sorted(int(match.group(1)) for match in found if match is not None)

    def _ensure_dir(self, path: Path) -> None:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir() or path.is_symlink():
                raise KeyStoreError(f"{path} is not a directory") from None
            return
        path.chmod(0o700)  # mkdir's mode is masked by the umask
        _fsync_directory(path.parent)

    async def put(self, kid: str, private_key: bytes, *, cas: int | None = 0) -> int:
        kid_dir = self._kid_dir(kid)
        _validate_private_key(private_key)
        _validate_cas(cas)
        async with self._lock():
            while True:
                versions = self._versions(kid_dir)
                current = versions[-1] if versions else 0
                if cas is not None and cas != current:
                    raise KeyVersionConflictError(
                        f"check-and-set failed for {kid}: expected version {cas},"
                        f" newest is {current}"
                    )
                version = current + 1
                try:
                    self._directory.parent.mkdir(parents=True, exist_ok=True)
                    self._ensure_dir(self._directory)
                    self._ensure_dir(kid_dir)
                    written = self._write_new(kid_dir, kid, version, private_key)
                except OSError as exc:
                    raise KeyStoreError(f"cannot write key {kid}: {exc}") from exc
                if written:
                    return version
                if cas is not None:
                    raise KeyVersionConflictError(
                        f"check-and-set failed for {kid}: version {version} was written"
                        " concurrently"
                    )

    def _write_new(self, kid_dir: Path, kid: str, version: int, private_key: bytes) -> bool:
        """Creates ``<version>.key`` unless it exists (then returns False)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, private_key, self._aad(kid, version))
        temporary = kid_dir / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, kid_dir / f"{version}.key")
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        _fsync_directory(kid_dir)
        return True

    async def get(self, kid: str, *, version: int | None = None) -> bytes:
        kid_dir = self._kid_dir(kid)
        _validate_version(version)
        if version is None:
            versions = self._versions(kid_dir)
            if not versions:
                raise KeyNotFoundError(f"no key {kid}")
            version = versions[-1]
        path = kid_dir / f"{version}.key"
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeyNotFoundError(f"no version {version} of key {kid}") from None
        except OSError as exc:
            raise KeyStoreError(f"cannot read version {version} of key {kid}: {exc}") from exc
        with os.fdopen(fd, "rb") as file:
            blob = file.read()
        if len(blob) < NONCE_BYTES + _TAG_BYTES:
            raise KeyStoreError(f"cannot decrypt version {version} of key {kid}: file truncated")
        try:
            plain = self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(kid, version)
            )
        except InvalidTag:
            raise KeyStoreError(
                f"cannot decrypt version {version} of key {kid}: wrong key encryption key,"
                " or the file was altered or moved"
            ) from None
        if len(plain) != PRIVATE_KEY_BYTES:
            raise KeyStoreError(f"version {version} of key {kid} is not a private key")
        return plain

    async def delete(self, kid: str) -> None:
        kid_dir = self._kid_dir(kid)
        async with self._lock():
            # Renamed away first, so readers see every version vanish at once. The tombstone's
            # leading dot keeps it apart from kids, which never contain one.
            tombstone = self._directory / f".deleted-{kid}-{secrets.token_hex(4)}"
            try:
                os.rename(kid_dir, tombstone)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise KeyStoreError(f"cannot delete key {kid}: {exc}") from exc
            try:
                shutil.rmtree(tombstone)
                _fsync_directory(self._directory)
            except OSError as exc:
                raise KeyStoreError(f"key {kid} deleted, but not its files: {exc}") from exc


class VaultKeyStore:
    """Keys in a KV v2 engine of Vault or OpenBao, one secret per kid at ``<path>/<kid>``.

    KV v2 keeps the versions and implements check-and-set itself. hvac is synchronous, so
    every call runs in a worker thread.
    """

    def __init__(self, client: hvac.Client, *, mount: str, path: str) -> None:
        self._client = client
        self._mount = mount.strip("/")
        self._path = path.strip("/")
        if not self._mount:
            raise ValueError("the Vault mount point must not be empty")

    def _secret_path(self, kid: str) -> str:
        validate_kid(kid)
        return f"{self._path}/{kid}" if self._path else kid

    @property
    def _kv(self) -> Any:
        return self._client.secrets.kv.v2

    async def put(self, kid: str, private_key: bytes, *, cas: int | None = 0) -> int:
        path = self._secret_path(kid)
        _validate_private_key(private_key)
        _validate_cas(cas)
        options: dict[str, Any] = {} if cas is None else {"cas": cas}
        try:
            response = await asyncio.to_thread(
                self._kv.create_or_update_secret,
                path=path,
                secret={_VAULT_FIELD: b64url_encode(private_key)},
                mount_point=self._mount,
                **options,
            )
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise KeyVersionConflictError(
                    f"check-and-set failed for {kid}: expected version {cas}"
                ) from exc
            raise KeyStoreError(f"Vault refused key {kid}: {exc}") from exc
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise KeyStoreError(f"cannot write key {kid} to Vault: {exc}") from exc
        version = _dig(response, "data", "version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise KeyStoreError(f"Vault answered no version for key {kid}")
        return version

    async def get(self, kid: str, *, version: int | None = None) -> bytes:
        path = self._secret_path(kid)
        _validate_version(version)
        try:
            response = await asyncio.to_thread(
                self._kv.read_secret_version,
                path=path,
                version=version,
                mount_point=self._mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            which = "key" if version is None else f"version {version} of key"
            raise KeyNotFoundError(f"no {which} {kid}") from None
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise KeyStoreError(f"cannot read key {kid} from Vault: {exc}") from exc
        encoded = _dig(response, "data", "data", _VAULT_FIELD)
        try:
            if not isinstance(encoded, str):
                raise ValueError("missing")
            plain = b64url_decode(encoded)
        except ValueError:
            raise KeyStoreError(f"Vault secret of key {kid} holds no private key") from None
        if len(plain) != PRIVATE_KEY_BYTES:
            raise KeyStoreError(f"Vault secret of key {kid} is not a private key")
        return plain

    async def delete(self, kid: str) -> None:
        path = self._secret_path(kid)
        try:
            await asyncio.to_thread(
                self._kv.delete_metadata_and_all_versions, path=path, mount_point=self._mount
            )
        except hvac.exceptions.InvalidPath:
            return
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise KeyStoreError(f"cannot delete key {kid} from Vault: {exc}") from exc


def _dig(document: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def create_key_store(settings: AuthSettings) -> KeyStore:
    """The key store ``AUTH_KEY_STORE`` selects, configured from the other ``AUTH_*``."""
    if settings.key_store is KeyStoreKind.vault:
        client = hvac.Client(
            url=str(settings.vault_url).rstrip("/"),
            token=settings.vault_token.get_secret_value(),
            namespace=settings.vault_namespace,
        )
        return VaultKeyStore(client, mount=settings.vault_mount, path=settings.vault_path)
    try:
        kek = b64url_decode(settings.key_encryption_key.get_secret_value())
    except ValueError:
        raise ValueError("AUTH_KEY_ENCRYPTION_KEY must be base64url") from None
    return FileKeyStore(Path(settings.key_dir), kek)
