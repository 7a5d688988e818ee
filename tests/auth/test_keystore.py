"""The key stores: one contract run against encrypted files and a real OpenBao, then specifics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import stat
import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from switchboard.auth.keystore import (
    FileKeyStore,
    KeyNotFoundError,
    KeyStore,
    KeyStoreError,
    KeyVersionConflictError,
    VaultKeyStore,
    create_key_store,
    validate_kid,
)
from switchboard.auth.settings import AuthSettings, KeyStoreKind
from tests.support.processes import ROOT, free_port
from tests.support.vault import VaultServer

MOUNT = "secret"
INVALID_KIDS = [
    "../etc/passwd",
    "x' OR 1=1 --",
    "",
    "A" * 44,
    "A" * 42,
    "../" + "A" * 40,
    "A" * 42 + "/",
    "A" * 42 + "=",
    "A" * 42 + "\n",
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(private_key: bytes) -> str:
    """RFC 7638 thumbprint of the Ed25519 public key that belongs to ``private_key``."""
    public = Ed25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()
    members = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(public)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(members.encode("utf-8")).digest())


def new_key() -> tuple[str, bytes]:
    private = Ed25519PrivateKey.generate().private_bytes_raw()
    return thumbprint(private), private


def test_thumbprint_matches_rfc_8037_example() -> None:
    # RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
    private = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    assert thumbprint(private) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@dataclass
class Backend:
    name: str
    store: KeyStore
    stored: Callable[[], list[str]]
    """Everything the store has written anywhere, to prove a rejected call wrote nothing."""


def _files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _vault_listing(client: hvac.Client, prefix: str) -> list[str]:
    try:
        listing = client.secrets.kv.v2.list_secrets(path=prefix, mount_point=MOUNT)
    except hvac.exceptions.InvalidPath:
        return []
    return sorted(listing["data"]["keys"])


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    return tmp_path / "sandbox"


@pytest.fixture
def file_store(file_root: Path, kek: bytes) -> FileKeyStore:
    return FileKeyStore(file_root / "keys", kek)


@pytest.fixture
def vault_prefix() -> str:
    return f"switchboard-tests/{uuid.uuid4().hex}"


@pytest.fixture
def vault_store(vault_client: hvac.Client, vault_prefix: str) -> VaultKeyStore:
    return VaultKeyStore(vault_client, mount=MOUNT, path=vault_prefix)


@pytest.fixture(params=["file", "vault"])
def backend(request: pytest.FixtureRequest, file_root: Path, vault_prefix: str) -> Backend:
    if request.param == "file":
        file_root.mkdir()
        store: FileKeyStore | VaultKeyStore = request.getfixturevalue("file_store")
        return Backend("file", store, lambda: _files_under(file_root))
    client: hvac.Client = request.getfixturevalue("vault_client")
    store = request.getfixturevalue("vault_store")
    return Backend("vault", store, lambda: _vault_listing(client, vault_prefix))


# The contract, for both stores.


async def test_put_then_get_returns_the_key(backend: Backend) -> None:
    kid, private = new_key()
    assert await backend.store.put(kid, private) == 1
    assert await backend.store.get(kid) == private
    assert await backend.store.get(kid, version=1) == private


async def test_versions_are_numbered_from_one(backend: Backend) -> None:
    kid, first = new_key()
    _, second = new_key()
    assert await backend.store.put(kid, first, cas=0) == 1
    assert await backend.store.put(kid, second, cas=1) == 2
    assert await backend.store.get(kid) == second
    assert await backend.store.get(kid, version=1) == first
    assert await backend.store.get(kid, version=2) == second


async def test_kids_are_independent(backend: Backend) -> None:
    kid_a, key_a = new_key()
    kid_b, key_b = new_key()
    await backend.store.put(kid_a, key_a)
    await backend.store.put(kid_b, key_b)
    assert await backend.store.get(kid_a) == key_a
    assert await backend.store.get(kid_b) == key_b


async def test_cas_zero_refuses_an_existing_kid(backend: Backend) -> None:
    kid, private = new_key()
    await backend.store.put(kid, private, cas=0)
    with pytest.raises(KeyVersionConflictError):
        await backend.store.put(kid, new_key()[1], cas=0)
    assert await backend.store.get(kid) == private


@pytest.mark.parametrize("stale", [1, 3])
async def test_cas_refuses_a_version_that_is_not_the_newest(backend: Backend, stale: int) -> None:
    kid, first = new_key()
    _, second = new_key()
    await backend.store.put(kid, first, cas=0)
    await backend.store.put(kid, second, cas=1)
    with pytest.raises(KeyVersionConflictError):
        await backend.store.put(kid, new_key()[1], cas=stale)
    assert await backend.store.get(kid) == second
    with pytest.raises(KeyNotFoundError):
        await backend.store.get(kid, version=3)


async def test_cas_on_a_missing_kid_must_be_zero(backend: Backend) -> None:
    kid, private = new_key()
    with pytest.raises(KeyVersionConflictError):
        await backend.store.put(kid, private, cas=1)
    with pytest.raises(KeyNotFoundError):
        await backend.store.get(kid)


async def test_cas_none_writes_unconditionally(backend: Backend) -> None:
    kid, first = new_key()
    _, second = new_key()
    assert await backend.store.put(kid, first, cas=None) == 1
    assert await backend.store.put(kid, second, cas=None) == 2
    assert await backend.store.get(kid) == second


async def test_concurrent_creations_have_one_winner(backend: Backend) -> None:
    kid = new_key()[0]
    candidates = [new_key()[1] for _ in range(5)]
    results = await asyncio.gather(
        *(backend.store.put(kid, key, cas=0) for key in candidates), return_exceptions=True
    )
    winners = [candidates[i] for i, result in enumerate(results) if result == 1]
    assert len(winners) == 1
    assert all(isinstance(r, KeyVersionConflictError) for r in results if r != 1)
    assert await backend.store.get(kid) == winners[0]


async def test_get_of_a_missing_kid_or_version(backend: Backend) -> None:
    kid, private = new_key()
    with pytest.raises(KeyNotFoundError):
        await backend.store.get(kid)
    with pytest.raises(KeyNotFoundError):
        await backend.store.get(kid, version=1)
    await backend.store.put(kid, private)
    with pytest.raises(KeyNotFoundError):
        await backend.store.get(kid, version=2)


async def test_delete_removes_every_version_and_is_idempotent(backend: Backend) -> None:
    kid, first = new_key()
    await backend.store.put(kid, first)
    await backend.store.put(kid, new_key()[1], cas=1)
    await backend.store.delete(kid)
    await backend.store.delete(kid)
    await backend.store.delete(new_key()[0])
    for version in (None, 1, 2):
        with pytest.raises(KeyNotFoundError):
            await backend.store.get(kid, version=version)
    assert backend.stored() == ([] if backend.name == "vault" else ["keys"])
    # The kid can be created afresh.
    assert await backend.store.put(kid, first, cas=0) == 1
    assert await backend.store.get(kid) == first


@pytest.mark.parametrize("kid", INVALID_KIDS)
async def test_invalid_kids_are_refused_before_anything_is_written(
    backend: Backend, kid: str
) -> None:
    private = new_key()[1]
    with pytest.raises(ValueError, match="invalid key id"):
        await backend.store.put(kid, private)
    with pytest.raises(ValueError, match="invalid key id"):
        await backend.store.put(kid, private, cas=None)
    with pytest.raises(ValueError, match="invalid key id"):
        await backend.store.get(kid)
    with pytest.raises(ValueError, match="invalid key id"):
        await backend.store.delete(kid)
    assert backend.stored() == []


@pytest.mark.parametrize("private", [b"", b"\x00" * 31, b"\x00" * 33, b"-----BEGIN PRIVATE KEY"])
async def test_only_raw_32_byte_keys_are_stored(backend: Backend, private: bytes) -> None:
    with pytest.raises(ValueError, match="32 raw bytes"):
        await backend.store.put(new_key()[0], private)
    assert backend.stored() == []


async def test_bad_cas_and_version_arguments(backend: Backend) -> None:
    kid, private = new_key()
    with pytest.raises(ValueError, match="cas"):
        await backend.store.put(kid, private, cas=-1)
    with pytest.raises(ValueError, match="version"):
        await backend.store.get(kid, version=0)
    assert backend.stored() == []


def test_validate_kid_accepts_thumbprints() -> None:
    kid = new_key()[0]
    assert validate_kid(kid) == kid
    assert validate_kid("-_" * 21 + "A") == "-_" * 21 + "A"


# The file store.


def _version_file(store: FileKeyStore, kid: str, version: int) -> Path:
    return store.directory / kid / f"{version}.key"


async def test_file_store_layout_and_permissions(file_store: FileKeyStore) -> None:
    kid, private = new_key()
    await file_store.put(kid, private)
    await file_store.put(kid, new_key()[1], cas=1)
    assert sorted(p.name for p in (file_store.directory / kid).iterdir()) == ["1.key", "2.key"]
    assert stat.S_IMODE(file_store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((file_store.directory / kid).stat().st_mode) == 0o700
    for version in (1, 2):
        assert stat.S_IMODE(_version_file(file_store, kid, version).stat().st_mode) == 0o600


async def test_file_store_permissions_ignore_the_umask(file_store: FileKeyStore) -> None:
    previous = os.umask(0o277)
    try:
        kid, private = new_key()
        await file_store.put(kid, private)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((file_store.directory / kid).stat().st_mode) == 0o700
    assert stat.S_IMODE(_version_file(file_store, kid, 1).stat().st_mode) == 0o600
    assert await file_store.get(kid) == private


async def test_file_store_encrypts(file_store: FileKeyStore) -> None:
    kid, private = new_key()
    await file_store.put(kid, private)
    await file_store.put(kid, private, cas=1)
    first = _version_file(file_store, kid, 1).read_bytes()
    second = _version_file(file_store, kid, 2).read_bytes()
    assert len(first) == 12 + 32 + 16  # nonce, ciphertext, GCM tag
    for blob in (first, second):
        assert private not in blob
        assert private.hex().encode() not in blob
        assert b64url(private).encode() not in blob
    assert first[:12] != second[:12], "every version has its own nonce"


async def test_file_store_with_the_wrong_kek_cannot_decrypt(
    file_store: FileKeyStore, kek: bytes
) -> None:
    kid, private = new_key()
    await file_store.put(kid, private)
    other = FileKeyStore(file_store.directory, os.urandom(32))
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        await other.get(kid)
    assert await FileKeyStore(file_store.directory, kek).get(kid) == private


async def test_file_store_version_copied_elsewhere_does_not_decrypt(
    file_store: FileKeyStore,
) -> None:
    kid, private = new_key()
    victim, victim_key = new_key()
    await file_store.put(kid, private)
    await file_store.put(victim, victim_key)
    await file_store.put(victim, new_key()[1], cas=1)

    # Another kid's file over the victim's newest version.
    shutil.copyfile(_version_file(file_store, kid, 1), _version_file(file_store, victim, 2))
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        await file_store.get(victim)
    # The victim's own version 1 presented as version 3.
    shutil.copyfile(_version_file(file_store, victim, 1), _version_file(file_store, victim, 3))
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        await file_store.get(victim)
    assert await file_store.get(victim, version=1) == victim_key


async def test_file_store_detects_tampering(file_store: FileKeyStore) -> None:
    kid, private = new_key()
    await file_store.put(kid, private)
    path = _version_file(file_store, kid, 1)
    blob = bytearray(path.read_bytes())
    blob[20] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        await file_store.get(kid)
    path.write_bytes(bytes(blob[:20]))
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        await file_store.get(kid)


async def test_file_store_ignores_leftover_temporary_files(file_store: FileKeyStore) -> None:
    kid, private = new_key()
    await file_store.put(kid, private)
    (file_store.directory / kid / ".tmp-deadbeef").write_bytes(b"half written")
    (file_store.directory / kid / "7.key.bak").write_bytes(b"junk")
    assert await file_store.get(kid) == private
    assert await file_store.put(kid, new_key()[1], cas=1) == 2
    await file_store.delete(kid)
    assert not (file_store.directory / kid).exists()


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_file_store_wants_a_32_byte_kek(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FileKeyStore(tmp_path, os.urandom(size))


_WRITER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path
    from switchboard.auth.keystore import FileKeyStore, KeyVersionConflictError

    directory, kek, kid = Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
    cas, count = (None if sys.argv[4] == "none" else int(sys.argv[4])), int(sys.argv[5])

    async def main() -> None:
        store = FileKeyStore(directory, kek)
        print("ready", flush=True)
        sys.stdin.readline()  # all writers start together
        written = []
        for _ in range(count):
            key = os.urandom(32)
            try:
                written.append([await store.put(kid, key, cas=cas), key.hex()])
            except KeyVersionConflictError:
                written.append(["conflict", key.hex()])
        print(json.dumps(written), flush=True)

    asyncio.run(main())
    """
)


async def _run_writers(
    store: FileKeyStore, kek: bytes, kid: str, *, writers: int, cas: int | None, count: int
) -> list[list[tuple[int | str, str]]]:
    """Starts ``writers`` processes, releases them at once, returns what each one wrote.

    Separate processes share no lock: only the exclusive link keeps their versions apart.
    """
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            str(store.directory),
            kek.hex(),
            kid,
            "none" if cas is None else str(cas),
            str(count),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(writers)
    ]
    for child in children:
        assert child.stdout is not None
        assert await child.stdout.readline() == b"ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    results = []
    for child in children:
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        results.append([(version, key) for version, key in json.loads(out)])
    return results


async def test_file_store_processes_writing_at_once_lose_nothing(
    file_store: FileKeyStore, kek: bytes
) -> None:
    kid = new_key()[0]
    writers, count = 4, 40
    results = await _run_writers(file_store, kek, kid, writers=writers, cas=None, count=count)
    written: dict[int | str, str] = {}
    for version, key in (entry for result in results for entry in result):
        assert version not in written, f"version {version} handed out twice"
        written[version] = key
    assert sorted(written, key=int) == list(range(1, writers * count + 1))
    for version, key in written.items():
        assert (await file_store.get(kid, version=int(version))).hex() == key


async def test_file_store_cas_between_processes_has_one_winner(
    file_store: FileKeyStore, kek: bytes
) -> None:
    kid = new_key()[0]
    results = await _run_writers(file_store, kek, kid, writers=6, cas=0, count=1)
    outcomes = sorted(str(result[0][0]) for result in results)
    assert outcomes == ["1"] + ["conflict"] * 5
    winner = next(result[0][1] for result in results if result[0][0] == 1)
    assert (await file_store.get(kid)).hex() == winner
    assert sorted(p.name for p in (file_store.directory / kid).iterdir()) == ["1.key"]


# The Vault store, against the real OpenBao dev server.


async def test_vault_store_writes_kv_v2(
    vault_store: VaultKeyStore, vault_client: hvac.Client, vault_prefix: str
) -> None:
    kid, first = new_key()
    _, second = new_key()
    assert await vault_store.put(kid, first) == 1
    assert await vault_store.put(kid, second, cas=1) == 2

    kv = vault_client.secrets.kv.v2
    latest = kv.read_secret_version(
        path=f"{vault_prefix}/{kid}", mount_point=MOUNT, raise_on_deleted_version=True
    )["data"]
    assert latest["data"] == {"private_key": b64url(second)}
    assert latest["metadata"]["version"] == 2
    old = kv.read_secret_version(
        path=f"{vault_prefix}/{kid}", version=1, mount_point=MOUNT, raise_on_deleted_version=True
    )["data"]
    assert old["data"] == {"private_key": b64url(first)}
    metadata = kv.read_secret_metadata(path=f"{vault_prefix}/{kid}", mount_point=MOUNT)["data"]
    assert metadata["current_version"] == 2
    assert sorted(metadata["versions"]) == ["1", "2"]

    assert await vault_store.get(kid) == second
    assert await vault_store.get(kid, version=1) == first


async def test_vault_store_reads_what_vault_holds(
    vault_store: VaultKeyStore, vault_client: hvac.Client, vault_prefix: str
) -> None:
    kid, private = new_key()
    vault_client.secrets.kv.v2.create_or_update_secret(
        path=f"{vault_prefix}/{kid}", secret={"private_key": b64url(private)}, mount_point=MOUNT
    )
    assert await vault_store.get(kid) == private
    # Written outside the store, version 2 now exists: check-and-set follows Vault's count.
    with pytest.raises(KeyVersionConflictError):
        await vault_store.put(kid, new_key()[1], cas=0)
    assert await vault_store.put(kid, new_key()[1], cas=1) == 2


async def test_vault_store_check_and_set_conflict(
    vault_store: VaultKeyStore, vault_client: hvac.Client, vault_prefix: str
) -> None:
    kid, private = new_key()
    await vault_store.put(kid, private, cas=0)
    with pytest.raises(KeyVersionConflictError):
        await vault_store.put(kid, new_key()[1], cas=0)
    with pytest.raises(KeyVersionConflictError):
        await vault_store.put(kid, new_key()[1], cas=2)
    metadata = vault_client.secrets.kv.v2.read_secret_metadata(
        path=f"{vault_prefix}/{kid}", mount_point=MOUNT
    )["data"]
    assert metadata["current_version"] == 1


async def test_vault_store_soft_deleted_version_is_not_found(
    vault_store: VaultKeyStore, vault_client: hvac.Client, vault_prefix: str
) -> None:
    kid, private = new_key()
    await vault_store.put(kid, private)
    await vault_store.put(kid, new_key()[1], cas=1)
    vault_client.secrets.kv.v2.delete_secret_versions(
        path=f"{vault_prefix}/{kid}", versions=[1], mount_point=MOUNT
    )
    with pytest.raises(KeyNotFoundError):
        await vault_store.get(kid, version=1)


async def test_vault_store_refuses_a_secret_without_a_key(
    vault_store: VaultKeyStore, vault_client: hvac.Client, vault_prefix: str
) -> None:
    kid = new_key()[0]
    for secret in ({"other": "x"}, {"private_key": "!!"}, {"private_key": b64url(b"short")}):
        vault_client.secrets.kv.v2.create_or_update_secret(
            path=f"{vault_prefix}/{kid}", secret=secret, mount_point=MOUNT
        )
        with pytest.raises(KeyStoreError, match="private key"):
            await vault_store.get(kid)


async def test_vault_store_with_a_bad_token(vault_server: VaultServer) -> None:
    client = hvac.Client(url=vault_server.url, token="not-a-token")
    store = VaultKeyStore(client, mount=MOUNT, path="switchboard-tests")
    kid, private = new_key()
    try:
        with pytest.raises(KeyStoreError) as put_error:
            await store.put(kid, private)
        with pytest.raises(KeyStoreError) as get_error:
            await store.get(kid)
    finally:
        client.adapter.close()
    assert not isinstance(put_error.value, KeyVersionConflictError)
    assert not isinstance(get_error.value, KeyNotFoundError)


async def test_vault_store_unreachable() -> None:
    client = hvac.Client(url=f"http://127.0.0.1:{free_port()}", token="t", timeout=2)
    store = VaultKeyStore(client, mount=MOUNT, path="switchboard-tests")
    try:
        with pytest.raises(KeyStoreError, match="Vault"):
            await store.get(new_key()[0])
    finally:
        client.adapter.close()


# The factory.


@pytest.mark.parametrize("padded", [False, True])
async def test_create_key_store_file(tmp_path: Path, padded: bool) -> None:
    kek = os.urandom(32)
    encoded = base64.urlsafe_b64encode(kek).decode()
    settings = AuthSettings(
        key_store=KeyStoreKind.file,
        key_dir=str(tmp_path / "keys"),
        key_encryption_key=SecretStr(encoded if padded else encoded.rstrip("=")),
    )
    store = create_key_store(settings)
    assert isinstance(store, FileKeyStore)
    kid, private = new_key()
    await store.put(kid, private)
    assert await FileKeyStore(tmp_path / "keys", kek).get(kid) == private


async def test_create_key_store_file_with_the_default_kek(tmp_path: Path) -> None:
    store = create_key_store(AuthSettings(key_dir=str(tmp_path)))
    kid, private = new_key()
    await store.put(kid, private)
    assert await store.get(kid) == private


@pytest.mark.parametrize(
    "kek", [b64url(bytes(range(16))), b64url(bytes(range(33))), "not base64!", "a+b/" * 11]
)
def test_create_key_store_refuses_a_bad_kek(tmp_path: Path, kek: str) -> None:
    settings = AuthSettings(key_dir=str(tmp_path), key_encryption_key=SecretStr(kek))
    with pytest.raises(ValueError, match=r"base64url|32 bytes"):
        create_key_store(settings)


async def test_create_key_store_vault(
    vault_server: VaultServer, vault_client: hvac.Client, vault_prefix: str
) -> None:
    settings = AuthSettings.model_validate(
        {
            "key_store": "vault",
            "vault_url": vault_server.url,
            "vault_token": vault_server.token,
            "vault_mount": "secret/",
            "vault_path": f"/{vault_prefix}/",
        }
    )
    store = create_key_store(settings)
    assert isinstance(store, VaultKeyStore)
    kid, private = new_key()
    try:
        assert await store.put(kid, private) == 1
        assert await store.get(kid) == private
    finally:
        store._client.adapter.close()
    stored = vault_client.secrets.kv.v2.read_secret_version(
        path=f"{vault_prefix}/{kid}", mount_point=MOUNT, raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"private_key": b64url(private)}
