"""Sign and verify throughput of our token signer and verifier against raw Ed25519, in one run.

Baselines measured in the same process on the same inputs:
- raw ``cryptography`` Ed25519 sign and verify of a token's signing input (the ceiling);
- plain ``jwt.decode`` with the same key and options (what PyJWT alone costs).
Ours adds the header checks, key lookup by kid, typ and claim checks, and metrics. It is
measured on tokens it has not seen (the target's figure) and on one it verified before, which
it recognises without checking the signature again.

    uv run python bench/jwt_bench.py [--seconds 20] [--rounds 20]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.auth.keyring import KeyRecord, KeySnapshot, render_jwks
from switchboard.auth.keys import generate_key, public_key_from_x
from switchboard.auth.tokens import (
    RECENT_TOKENS,
    REQUIRED_CLAIMS,
    TokenSigner,
    TokenType,
    TokenVerifier,
)
from switchboard.models import KeyState
from switchboard.settings import load_settings


def measure(work: dict[str, Callable[[], object]], seconds: float, rounds: int) -> dict[str, float]:
    """Operations per second of each callable: the median over rounds that alternate between
    them, so drift in the machine's speed hits every figure alike."""
    samples: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, call in work.items():
            count, started = 0, time.perf_counter()
            deadline = started + seconds / rounds / len(work)
            while True:
                for _ in range(100):
                    call()
                count += 100
                now = time.perf_counter()
                if now >= deadline:
                    break
            samples[name].append(count / (now - started))
    return {name: statistics.median(values) for name, values in samples.items()}


def snapshot() -> KeySnapshot:
    now = datetime.now(UTC)
    generated = [generate_key() for _ in range(3)]
    states = (KeyState.active, KeyState.next, KeyState.retired)
    records = tuple(
        KeyRecord(key.kid, state, key.x, 1, now, None, None, None)
        for key, state in zip(generated, states, strict=True)
    )
    return KeySnapshot(
        records=records,
        signing_kid=generated[0].kid,
        signing_key=Ed25519PrivateKey.from_private_bytes(generated[0].private_bytes),
        verification_keys={key.kid: public_key_from_x(key.x) for key in generated},
        jwks=render_jwks(records, "bench"),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    auth = load_settings().auth
    keys = snapshot()
    signer, verifier = TokenSigner(auth), TokenVerifier(auth)
    claims = {"tid": "tenant-1", "roles": ["owner", "billing"]}
    token = signer.sign(keys, TokenType.access, "user-1", 900, claims).token
    # More distinct tokens than the verifier remembers, taken in turn: each one is new to it.
    # Plain jwt.decode takes the same ones, so both pay for reading them from memory.
    tokens = [
        signer.sign(keys, TokenType.access, f"user-{n}", 900, claims).token
        for n in range(RECENT_TOKENS + 1000)
    ]
    fresh, fresh_for_pyjwt = itertools.cycle(tokens), itertools.cycle(tokens)
    signing_input = token.rsplit(".", 1)[0].encode()
    assert keys.signing_key is not None
    assert keys.signing_kid is not None
    private, public = keys.signing_key, keys.verification_keys[keys.signing_kid]
    signature = private.sign(signing_input)
    options = {"require": list(REQUIRED_CLAIMS)}

    def pyjwt_decode() -> object:
        return jwt.decode(
            next(fresh_for_pyjwt),
            public,
            algorithms=["EdDSA"],
            audience=auth.audience,
            issuer=auth.issuer,
            leeway=auth.leeway_seconds,
            options=options,  # type: ignore[arg-type]
        )

    work: dict[str, Callable[[], object]] = {
        "raw Ed25519 sign": lambda: private.sign(signing_input),
        "our signer": lambda: signer.sign(keys, TokenType.access, "user-1", 900, claims),
        "raw Ed25519 verify": lambda: public.verify(signature, signing_input),
        "plain jwt.decode": pyjwt_decode,
        "our verifier": lambda: verifier.verify(next(fresh), keys, TokenType.access),
        "our verifier, seen": lambda: verifier.verify(token, keys, TokenType.access),
    }
    figures = measure(work, args.seconds, args.rounds)
    print(
        f"EdDSA access token, {len(token)} bytes; median of {args.rounds} interleaved rounds,"
        f" {args.seconds:.0f} s in all"
    )
    for name, ops in figures.items():
        print(f"  {name:<20} {ops:>9,.0f} ops/s")
    sign_ratio = figures["our signer"] / figures["raw Ed25519 sign"]
    verify_ratio = figures["our verifier"] / figures["raw Ed25519 verify"]
    pyjwt_ratio = figures["plain jwt.decode"] / figures["raw Ed25519 verify"]
    print(f"  signer   = {sign_ratio:.0%} of raw sign")
    print(
        f"  verifier = {verify_ratio:.0%} of raw verify (plain jwt.decode: {pyjwt_ratio:.0%});"
        f" target >= 60%: {'met' if verify_ratio >= 0.60 else 'NOT met'}"
    )
    seen = figures["our verifier, seen"] / figures["our verifier"]
    print(f"  a token verified before (a client's next request): {seen:.0f}x a new one")


if __name__ == "__main__":
    main()
