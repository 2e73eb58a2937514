"""Secrets the service must read back (TOTP seeds), encrypted at rest.

AES-256-GCM with a key derived (HKDF-SHA256) from ``AUTH_KEY_PASSPHRASE``, the same
passphrase that protects the token signing keys, so there is one secret to manage.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"
_NONCE_BYTES = 12


class Sealer:
    def __init__(self, passphrase: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"bookstore-auth sealed secrets"
        ).derive(passphrase)
        self._aead = AESGCM(key)

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        return f"{_VERSION}:{base64.urlsafe_b64encode(sealed).decode()}"

    def unseal(self, sealed: str) -> str:
        version, _, payload = sealed.partition(":")
        if version != _VERSION:
            raise ValueError(f"unknown sealed format {version!r}")
        raw = base64.urlsafe_b64decode(payload.encode())
        return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode()
