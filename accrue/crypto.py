"""Encryption of CRM credentials at rest (requirement S1).

This is the only module that touches key material. Secrets are sealed with
AES-256-GCM under the primary key of a key ring, so keys can be rotated without
downtime: new writes use the primary key, older tokens stay readable while
their key is still listed, and `rotate` re-seals them under the primary.

Token format: ``v1.<kid>.<base64url(nonce || ciphertext+tag)>``. The key id
is in clear so a failure can say *which* key is missing. The caller's
associated data (e.g. tenant and connection id) is authenticated together
with the token header, so a token copied into another row, or with its key id
edited, fails to decrypt instead of yielding another tenant's credentials.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accrue import config

logger = logging.getLogger(__name__)

TOKEN_VERSION = "v1"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit nonce, the size GCM is designed for
TAG_BYTES = 16
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

GENERATE_HINT = (
    "Generate one with `accrue keys generate` and export it as "
    f"{config.SECRET_KEYS_ENV}=<kid>:<key> (newest key first, comma-separated)"
)

DecryptionReason = Literal["unknown_key", "invalid", "malformed"]


class CryptoError(Exception):
    """Base class; messages never contain plaintext or key material."""


class KeyringError(CryptoError):
    """The key ring is missing or malformed: an operator must fix the configuration."""


class DecryptionError(CryptoError):
    """A token could not be opened.

    `reason` tells the operator what to do: ``unknown_key`` (the key was removed
    from the ring: restore it), ``invalid`` (the ciphertext was altered or is
    bound to another record: re-enter the credentials), ``malformed`` (not a token).
    """

    def __init__(self, message: str, *, reason: DecryptionReason, kid: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.kid = kid


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url: a typo must fail loudly rather than decode to a different key."""
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


_warned_key_files: set[str] = set()


def _warn_key_file(path: Path) -> None:
    """Say once per process that the demo key file is in use (it sits next to the data)."""
    logger.warning(
        "%s is not set: using the key file %s. This is for the local demo only; "
        "in production set %s from a secret manager.",
        config.SECRET_KEYS_ENV,
        path,
        config.SECRET_KEYS_ENV,
    )
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("key file %s is readable by other users: chmod 600 it", path)


def generate_key(kid: str | None = None) -> str:
    """A new `kid:base64urlkey` entry, ready to be put first in ACCRUE_SECRET_KEYS.

    The default id starts with the date so operators can tell keys apart by age;
    the random suffix keeps two keys made the same day distinct.
    """
    if kid is None:
        kid = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    if not KID_PATTERN.match(kid):
        raise ValueError("key id must be 1-32 characters of letters, digits, '_' or '-'")
    return f"{kid}:{_b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8))}"


class Keyring:
    """Ordered AES keys, primary (used for new encryptions) first."""

    __slots__ = ("_keys", "_order", "source")

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, source: str = "keyring"):
        if not keys:
            raise KeyringError(f"{source} holds no key. {GENERATE_HINT}")
        self._keys: dict[str, AESGCM] = {}
        self._order: tuple[str, ...] = tuple(kid for kid, _ in keys)
        self.source = source
        for kid, key in keys:
            if not KID_PATTERN.match(kid):
                raise KeyringError(
                    f"{source}: key id {kid!r} must be 1-32 letters, digits, '_' or '-'"
                )
            if kid in self._keys:
                raise KeyringError(f"{source}: key id {kid!r} is listed twice")
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"{source}: key {kid!r} must decode to {KEY_BYTES} bytes (AES-256). "
                    + GENERATE_HINT
                )
            self._keys[kid] = AESGCM(key)

    @classmethod
    def parse(cls, text: str, *, source: str = config.SECRET_KEYS_ENV) -> Keyring:
        """Parse `kid:key` entries separated by commas or newlines ('#' starts a comment)."""
        raw_entries = [
            entry.strip()
            for line in text.splitlines()
            for entry in line.split("#", 1)[0].split(",")
            if entry.strip()
        ]
        entries: list[tuple[str, bytes]] = []
        for number, entry in enumerate(raw_entries, start=1):
            kid, sep, encoded = (part.strip() for part in entry.partition(":"))
            if not sep or not kid or not encoded:
                raise KeyringError(
                    f"{source}: entry {number} is not of the form <kid>:<base64url key>. "
                    + GENERATE_HINT
                )
            try:
                key = _b64decode(encoded)
            except (binascii.Error, ValueError):
                raise KeyringError(
                    f"{source}: key {kid!r} is not valid base64url. {GENERATE_HINT}"
                ) from None
            entries.append((kid, key))
        return cls(entries, source=source)

    @classmethod
    def from_env(cls) -> Keyring:
        """The ring from ACCRUE_SECRET_KEYS, else the local demo key file, else an error."""
        value = config.secret_keys()
        if value:
            return cls.parse(value, source=config.SECRET_KEYS_ENV)
        path = config.secret_keys_file()
        if config.is_production():
            raise KeyringError(
                f"{config.ENVIRONMENT_ENV}=production needs {config.SECRET_KEYS_ENV}: the key "
                f"file in ACCRUE_HOME is for the local demo only. {GENERATE_HINT}"
            )
        if path.is_file():
            if str(path) not in _warned_key_files:
                _warned_key_files.add(str(path))
                _warn_key_file(path)
            return cls.parse(path.read_text(encoding="utf-8"), source=str(path))
        raise KeyringError(
            f"No encryption key configured: {config.SECRET_KEYS_ENV} is not set and "
            f"{path} does not exist. {GENERATE_HINT}"
        )

    @property
    def primary_kid(self) -> str:
        return self._order[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._order

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self._order)!r}, source={self.source!r})"

    def _cipher(self, kid: str) -> AESGCM:
        try:
            return self._keys[kid]
        except KeyError:
            raise DecryptionError(
                f"the secret was encrypted with key {kid!r}, which is not in {self.source} "
                f"(known: {', '.join(self._order)}). Add the {kid!r} entry back after the "
                "primary key, run `accrue keys rotate` to re-encrypt under the primary, and "
                "only then remove it; or re-enter the credentials.",
                reason="unknown_key",
                kid=kid,
            ) from None


def _split(token: str) -> tuple[str, str, bytes]:
    if not isinstance(token, str):
        raise DecryptionError("not an encrypted token (expected a string)", reason="malformed")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not KID_PATTERN.match(parts[1]):
        raise DecryptionError(
            f"not an encrypted token (expected {TOKEN_VERSION}.<kid>.<payload>)",
            reason="malformed",
        )
    try:
        payload = _b64decode(parts[2])
    except (binascii.Error, ValueError):
        raise DecryptionError(
            "encrypted token payload is not base64url", reason="malformed", kid=parts[1]
        ) from None
    if len(payload) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("encrypted token is truncated", reason="malformed", kid=parts[1])
    return parts[0], parts[1], payload


def _associated_data(version: str, kid: str, aad: str) -> bytes:
    """Authenticate the header too, so editing the key id in a token is detected."""
    return f"{version}.{kid}|{aad}".encode()


def key_id(token: str) -> str:
    """The id of the key that sealed `token`, readable without any key."""
    return _split(token)[1]


def encrypt_json(obj: Mapping[str, Any], *, aad: str, keyring: Keyring | None = None) -> str:
    """Seal a JSON object under the primary key, bound to `aad` (where it will be stored)."""
    if not isinstance(obj, Mapping):
        raise TypeError("encrypt_json expects a mapping (a JSON object)")
    if not aad:
        raise ValueError("aad must name where the ciphertext lives (e.g. tenant and connection)")
    ring = keyring if keyring is not None else Keyring.from_env()
    kid = ring.primary_kid
    plaintext = json.dumps(dict(obj), separators=(",", ":"), sort_keys=True).encode("utf-8")
    nonce = os.urandom(NONCE_BYTES)
    sealed = ring._cipher(kid).encrypt(nonce, plaintext, _associated_data(TOKEN_VERSION, kid, aad))
    return f"{TOKEN_VERSION}.{kid}.{_b64encode(nonce + sealed)}"


def decrypt_json(token: str, *, aad: str, keyring: Keyring | None = None) -> dict[str, Any]:
    """Open a token sealed by `encrypt_json` with the same `aad`."""
    version, kid, payload = _split(token)
    ring = keyring if keyring is not None else Keyring.from_env()
    cipher = ring._cipher(kid)
    try:
        plaintext = cipher.decrypt(
            payload[:NONCE_BYTES], payload[NONCE_BYTES:], _associated_data(version, kid, aad)
        )
    except InvalidTag:
        raise DecryptionError(
            f"the secret sealed with key {kid!r} failed authentication: the ciphertext was "
            "altered, or it was copied from another tenant's or connection's record. "
            "Re-enter the credentials.",
            reason="invalid",
            kid=kid,
        ) from None
    value = json.loads(plaintext)
    if not isinstance(value, dict):
        raise DecryptionError("decrypted secret is not a JSON object", reason="invalid", kid=kid)
    return value


def needs_rotation(token: str, keyring: Keyring | None = None) -> bool:
    """Whether `token` is sealed under a key other than the ring's primary."""
    ring = keyring if keyring is not None else Keyring.from_env()
    return key_id(token) != ring.primary_kid


def rotate(token: str, *, aad: str, keyring: Keyring | None = None) -> str:
    """Re-seal `token` under the primary key (returned unchanged when already current)."""
    ring = keyring if keyring is not None else Keyring.from_env()
    if not needs_rotation(token, ring):
        return token
    return encrypt_json(decrypt_json(token, aad=aad, keyring=ring), aad=aad, keyring=ring)


_REDACTED = "[REDACTED]"
_SENSITIVE_NAMES = (
    r"password|passwd|pwd|secret|client_secret|security_token|token|access_token|"
    r"refresh_token|api_key|apikey|session_?id|sid|authorization|private_key"
)
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # before key=value, which would otherwise take "Bearer" for the value
    (re.compile(r"\b(Bearer|OAuth)\s+[A-Za-z0-9._~+/!=-]+", re.I), rf"\1 {_REDACTED}"),
    # user:password@ in URLs
    (
        re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.I),
        rf"\g<prefix>{_REDACTED}@",
    ),
    # key=value, key: value, "key": "value"
    (
        re.compile(
            rf"(?P<name>[\"']?\b(?:{_SENSITIVE_NAMES})\b[\"']?\s*[:=]\s*)"
            r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}\]]+)",
            re.I,
        ),
        rf"\g<name>{_REDACTED}",
    ),
    (re.compile(rf"\b{TOKEN_VERSION}\.[A-Za-z0-9_-]{{1,32}}\.[A-Za-z0-9_-]{{20,}}"), _REDACTED),
    # results API tokens (onboarding_app.api.tokens), wherever they are: no word boundary,
    # so a URL-encoded header ("%20acr_...") is caught too
    (re.compile(r"acr_[0-9A-Za-z]{30,}"), _REDACTED),
)


def redact(text: str, secrets_to_hide: Iterable[str] = ()) -> str:
    """Scrub credentials from text bound for logs or the database (S1).

    Known secret values (e.g. a connection's decrypted secrets) are removed
    verbatim; common credential shapes (URL passwords, `password=...`, bearer
    tokens, sealed tokens, `acr_` API tokens) are removed by pattern as a second line of
    defence.
    """
    for value in sorted(
        {s for s in secrets_to_hide if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True
    ):
        text = text.replace(value, _REDACTED)
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text
