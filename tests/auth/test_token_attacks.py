"""Every known way to forge or misuse a token gets 401 ``auth.invalid_token`` through the API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from switchboard.auth.keys import public_jwk, thumbprint
from switchboard.auth.tokens import TokenSigner, TokenType
from switchboard.kit.encoding import b64url_decode, b64url_encode
from switchboard.settings import Settings
from tests.support.auth import MISSING, access_header, claims_for, forge

PROTECTED = "/api/v1/admin/keys"

Forger = Callable[[KeySnapshot, Settings], str]


def _key(snapshot: KeySnapshot) -> Ed25519PrivateKey:
    assert snapshot.signing_key is not None
    return snapshot.signing_key


def _kid(snapshot: KeySnapshot) -> str:
    assert snapshot.signing_kid is not None
    return snapshot.signing_kid


def _hs256_with(form: str) -> Forger:
    def forger(snapshot: KeySnapshot, settings: Settings) -> str:
        public = _key(snapshot).public_key()
        secret = {
            "raw": public.public_bytes_raw(),
            "pem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "jwk": json.dumps(
                public_jwk(_kid(snapshot), b64url_encode(public.public_bytes_raw()))
            ).encode(),
        }[form]
        header = access_header(_kid(snapshot), alg="HS256")
        unsigned = forge(header, claims_for(settings), None).rsplit(".", 1)[0]
        mac = hmac.new(secret, unsigned.encode(), hashlib.sha256)
        return unsigned + "." + b64url_encode(mac.digest())

    return forger


def _alg(alg: str) -> Forger:
    return lambda s, cfg: forge(access_header(_kid(s), alg=alg), claims_for(cfg), _key(s))


def _none(alg: str) -> Forger:
    return lambda s, cfg: forge(access_header(_kid(s), alg=alg), claims_for(cfg), None)


def _header(**changes: object) -> Forger:
    def forger(snapshot: KeySnapshot, settings: Settings) -> str:
        header = {**access_header(_kid(snapshot)), **changes}
        header = {name: value for name, value in header.items() if value is not MISSING}
        return forge(header, claims_for(settings), _key(snapshot))

    return forger


def _claims(**changes: object) -> Forger:
    return lambda s, cfg: forge(access_header(_kid(s)), claims_for(cfg, **changes), _key(s))


def _attacker_key(**header: object) -> Forger:
    """Signed by a key of the attacker's, which the header tries to make us trust."""

    def forger(snapshot: KeySnapshot, settings: Settings) -> str:
        attacker = Ed25519PrivateKey.generate()
        x = b64url_encode(attacker.public_key().public_bytes_raw())
        fields = {
            name: (public_jwk(thumbprint(x), x) if value == "JWK" else value)
            for name, value in header.items()
        }
        return forge(access_header(thumbprint(x), **fields), claims_for(settings), attacker)

    return forger


def _signature(mangle: Callable[[bytes], bytes]) -> Forger:
    def forger(snapshot: KeySnapshot, settings: Settings) -> str:
        good = forge(access_header(_kid(snapshot)), claims_for(settings), _key(snapshot))
        head, payload, signature = good.split(".")
        raw = b64url_decode(signature)
        return f"{head}.{payload}.{b64url_encode(mangle(raw))}"

    return forger


def _flip(raw: bytes) -> bytes:
    return bytes([raw[0] ^ 0x01]) + raw[1:]


def _typed(typ: TokenType) -> Forger:
    def forger(snapshot: KeySnapshot, settings: Settings) -> str:
        signer = TokenSigner(settings.auth)
        claims = {"tid": "tenant-1", "roles": ["operator"]}
        return signer.sign(snapshot, typ, "user-1", 300, claims).token

    return forger


def _jwe_shaped(snapshot: KeySnapshot, settings: Settings) -> str:
    header = b64url_encode(
        json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": _kid(snapshot)}).encode()
    )
    return ".".join(
        [
            header,
            b64url_encode(b"k" * 32),
            b64url_encode(b"i" * 12),
            b64url_encode(b"c" * 40),
            b64url_encode(b"t" * 16),
        ]
    )


def _b64_false(snapshot: KeySnapshot, settings: Settings) -> str:
    header = access_header(_kid(snapshot), b64=False, crit=["b64"])
    payload = json.dumps(claims_for(settings), separators=(",", ":"))
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    signature = _key(snapshot).sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{b64url_encode(signature)}"


def _removed_key(snapshot: KeySnapshot, settings: Settings) -> str:
    # A well-formed key that once existed but is in no key set any more.
    gone = Ed25519PrivateKey.generate()
    kid = thumbprint(b64url_encode(gone.public_key().public_bytes_raw()))
    return forge(access_header(kid), claims_for(settings), gone)


now = int(time.time())
CASES: dict[str, Forger] = {
    "alg none": _none("none"),
    "alg None": _none("None"),
    "alg NONE": _none("NONE"),
    "alg nOnE": _none("nOnE"),
    "HS256 with raw public key": _hs256_with("raw"),
    "HS256 with PEM public key": _hs256_with("pem"),
    "HS256 with JWK public key": _hs256_with("jwk"),
    "alg RS256": _alg("RS256"),
    "alg ES256": _alg("ES256"),
    "alg Ed25519": _alg("Ed25519"),
    "alg eddsa lower case": _alg("eddsa"),
    "unknown kid": _header(kid="not-a-key-we-know-xxxxxxxxxxxxxxxxxxxxxxxxx"),
    "kid path traversal": _header(kid="../../../../etc/passwd"),
    "kid sql": _header(kid="' OR '1'='1' --"),
    "kid not a string": _header(kid=["a", "b"]),
    "kid missing": _header(kid=MISSING),
    "unknown crit": _header(crit=["exp"]),
    "crit with unknown extension": _header(crit=["urn:example:x"], **{"urn:example:x": 1}),
    "typ JWT": _header(typ="JWT"),
    "typ missing": _header(typ=MISSING),
    "iss missing": _claims(iss=MISSING),
    "aud missing": _claims(aud=MISSING),
    "sub missing": _claims(sub=MISSING),
    "exp missing": _claims(exp=MISSING),
    "nbf missing": _claims(nbf=MISSING),
    "iat missing": _claims(iat=MISSING),
    "jti missing": _claims(jti=MISSING),
    "tid missing": _claims(tid=MISSING),
    "roles missing": _claims(roles=MISSING),
    "roles not a list": _claims(roles="operator"),
    "exp past": _claims(iat=now - 4000, nbf=now - 4000, exp=now - 3600),
    "nbf future": _claims(nbf=now + 3600),
    "iat future beyond leeway": _claims(iat=now + 3600),
    "sub not a string": _claims(sub=42),
    "iss prefix of ours": lambda s, cfg: forge(
        access_header(_kid(s)), claims_for(cfg, iss=cfg.auth.issuer[:-1]), _key(s)
    ),
    "iss extending ours": lambda s, cfg: forge(
        access_header(_kid(s)), claims_for(cfg, iss=cfg.auth.issuer + ".evil"), _key(s)
    ),
    "wrong aud": _claims(aud="someone-else"),
    "aud list": lambda s, cfg: forge(
        access_header(_kid(s)), claims_for(cfg, aud=[cfg.auth.audience, "other"]), _key(s)
    ),
    "empty signature": _signature(lambda raw: b""),
    "truncated signature": _signature(lambda raw: raw[:32]),
    "flipped signature": _signature(_flip),
    "JWE-shaped 5 parts": _jwe_shaped,
    "b64 false": _b64_false,
    "signed by a removed key": _removed_key,
    "embedded jwk": _attacker_key(jwk="JWK"),
    "service-account token as access token": _typed(TokenType.service),
    "stream ticket as access token": _typed(TokenType.stream_ticket),
    "opaque refresh token": lambda s, cfg: "rt_" + "A" * 43,
    "garbage": lambda s, cfg: "not.a.token",
    "oversized": lambda s, cfg: "a" * 9000,
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_forged_or_misused_token_is_rejected(
    case: str, client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    token = CASES[case](committed_keys, settings)

    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "auth.invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")


class _FetchRecorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def key_url_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FetchRecorder)
    _FetchRecorder.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keys"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_key_url_headers_are_never_fetched(
    header: str,
    client: AsyncClient,
    committed_keys: KeySnapshot,
    settings: Settings,
    key_url_server: str,
) -> None:
    attacker = _attacker_key(**{header: key_url_server})(committed_keys, settings)
    ours_with_url = forge(
        access_header(_kid(committed_keys), **{header: key_url_server}),
        claims_for(settings),
        _key(committed_keys),
    )

    rejected = await client.get(PROTECTED, headers={"Authorization": f"Bearer {attacker}"})
    # A token we signed stays valid whatever URL it names; the URL is simply ignored.
    accepted = await client.get(PROTECTED, headers={"Authorization": f"Bearer {ours_with_url}"})

    assert rejected.status_code == 401
    assert accepted.status_code == 200
    assert _FetchRecorder.hits == []


async def test_x5c_header_does_not_bring_its_own_key(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    attacker = _attacker_key(x5c=["MIIBdummy"])(committed_keys, settings)
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {attacker}"})
    assert response.status_code == 401


async def test_valid_operator_token_is_accepted(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    token = forge(access_header(_kid(committed_keys)), claims_for(settings), _key(committed_keys))
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    states = {key["state"] for key in response.json()["keys"]}
    assert {"active", "next"} <= states
    assert "private" not in response.text


async def test_token_within_leeway_is_accepted(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    skew = settings.auth.leeway_seconds // 2
    token = forge(
        access_header(_kid(committed_keys)),
        claims_for(settings, iat=now + skew, nbf=now + skew),
        _key(committed_keys),
    )
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_missing_token_is_401_and_non_operator_is_403(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    member = forge(
        access_header(_kid(committed_keys)),
        claims_for(settings, roles=["member"]),
        _key(committed_keys),
    )

    missing = await client.get(PROTECTED)
    forbidden = await client.get(PROTECTED, headers={"Authorization": f"Bearer {member}"})

    assert missing.status_code == 401
    assert missing.json()["code"] == "auth.invalid_token"
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "auth.forbidden"
