"""Micro-benchmark of the gateway's access-token check (``gateway.security``), which
connexion runs on its event loop for every authenticated request: RS256 verification
alone, then with a list of 10,000 revocations loaded (gateway/revocations.py).

    .venv/bin/python -m bench.token_check [--checks 5000] [--revocations 10000]

Prints the median time per check over five rounds; no services needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common import tokens
from gateway import security
from gateway.revocations import RevocationList

KID = "bench-key"
ROUNDS = 5


def signed_token(private_key: rsa.RSAPrivateKey, now: float) -> str:
    claims = {
        "iss": tokens.issuer(),
        "aud": tokens.audience(),
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": round(now, 3),
        "exp": int(now) + 900,
        "scope": "read:orders write:orders",
    }
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": KID})


def microseconds_per_check(token: str, checks: int) -> float:
    for _ in range(checks // 10):  # warm-up
        security.check_access_token(token)
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(checks):
            security.check_access_token(token)
        rounds.append((time.perf_counter() - started) / checks * 1e6)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000, help="checks per round")
    parser.add_argument("--revocations", type=int, default=10000, help="revocations loaded")
    args = parser.parse_args(argv)

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    keys = security.KeyCache(lambda: {"keys": [jwk]}, refresh_interval=3600)
    keys.refresh()
    now = time.time()
    token = signed_token(private_key, now)

    security.use_key_cache(keys, None, None)
    alone = microseconds_per_check(token, args.checks)
    revoked = RevocationList(None, poll_seconds=3600)
    revoked.apply(
        [
            {
                "user_id": str(uuid.uuid4()),
                "session_id": str(uuid.uuid4()) if index % 2 else None,
                "revoked_at": now - 1,
            }
            for index in range(args.revocations)
        ],
        kept_seconds=960,
    )
    security.use_key_cache(keys, None, revoked)
    with_list = microseconds_per_check(token, args.checks)
    print(f"token check, RS256 only:                  {alone:7.1f} µs (median of {ROUNDS})")
    print(f"token check, {args.revocations:,} revocations loaded: {with_list:7.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
