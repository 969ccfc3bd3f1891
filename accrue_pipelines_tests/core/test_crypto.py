"""Credential encryption (S1): AES-256-GCM tokens bound to their row, with a rotating key ring."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest

from accrue import config, crypto
from accrue.crypto import DecryptionError, Keyring, KeyringError

SECRETS = {"username": "ops@acme.example", "password": "correct horse battery", "token": "T0k3n"}
AAD = "crm_connection|tenant=acme|connection=1"


def ring(*entries: str) -> Keyring:
    return Keyring.parse(",".join(entries))


def key_material(entry: str) -> str:
    return entry.split(":", 1)[1]


def test_round_trip_with_the_env_keyring() -> None:
    """S1: what is sealed with the configured key opens again with it."""
    token = crypto.encrypt_json(SECRETS, aad=AAD)
    assert crypto.decrypt_json(token, aad=AAD) == SECRETS


def test_token_is_self_describing_and_never_reveals_the_secret() -> None:
    """S1: the token names its key but carries no readable plaintext; nonces are fresh."""
    keys = ring(crypto.generate_key("k1"))
    token = crypto.encrypt_json(SECRETS, aad=AAD, keyring=keys)
    version, kid, payload = token.split(".")
    assert (version, kid) == ("v1", "k1")
    assert crypto.key_id(token) == "k1"
    for value in SECRETS.values():
        assert value not in token
        assert value not in base64.urlsafe_b64decode(payload + "==").decode("latin-1")
    assert crypto.encrypt_json(SECRETS, aad=AAD, keyring=keys) != token


@pytest.mark.parametrize(
    "other_aad",
    [
        "crm_connection|tenant=globex|connection=1",  # another tenant's row
        "crm_connection|tenant=acme|connection=2",  # another connection of the same tenant
    ],
)
def test_ciphertext_moved_to_another_row_fails(other_aad: str) -> None:
    """S1: a token copied into another tenant's or connection's row does not decrypt."""
    token = crypto.encrypt_json(SECRETS, aad=AAD)
    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt_json(token, aad=other_aad)
    assert caught.value.reason == "invalid"
    assert "another tenant's or connection's" in str(caught.value)


def test_tampering_is_detected() -> None:
    """S1: flipping a byte, or relabelling the key id, fails authentication."""
    keys = ring(crypto.generate_key("k2"), crypto.generate_key("k1"))
    token = crypto.encrypt_json(SECRETS, aad=AAD, keyring=keys)
    version, kid, payload = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    relabelled = f"{version}.k1.{payload}"
    for bad in (f"{version}.{kid}.{flipped}", relabelled):
        with pytest.raises(DecryptionError) as caught:
            crypto.decrypt_json(bad, aad=AAD, keyring=keys)
        assert caught.value.reason == "invalid"


@pytest.mark.parametrize("bad", ["", "plain text", "v2.k1.AAAA", "v1.k1.!!!", "v1.k1.AAAA"])
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt_json(bad, aad=AAD)
    assert caught.value.reason == "malformed"


def test_removed_key_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """S1: when the sealing key was dropped from ACCRUE_SECRET_KEYS, the error says so and how
    to recover, without echoing any key or secret."""
    old, new = crypto.generate_key("old"), crypto.generate_key("new")
    monkeypatch.setenv(config.SECRET_KEYS_ENV, old)
    token = crypto.encrypt_json(SECRETS, aad=AAD)
    monkeypatch.setenv(config.SECRET_KEYS_ENV, new)

    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt_json(token, aad=AAD)
    error = caught.value
    assert (error.reason, error.kid) == ("unknown_key", "old")
    message = str(error)
    assert "'old'" in message and config.SECRET_KEYS_ENV in message
    assert "accrue keys rotate" in message
    for leaked in (key_material(old), key_material(new), *SECRETS.values()):
        assert leaked not in message and leaked not in repr(error)


def test_rotation_reencrypts_under_the_primary_so_the_old_key_can_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S1: after rotating, tokens open with the new key alone."""
    old, new = crypto.generate_key("k1"), crypto.generate_key("k2")
    token = crypto.encrypt_json(SECRETS, aad=AAD, keyring=ring(old))

    both = ring(new, old)  # new key first = primary
    assert crypto.needs_rotation(token, both)
    rotated = crypto.rotate(token, aad=AAD, keyring=both)
    assert crypto.key_id(rotated) == "k2"
    assert not crypto.needs_rotation(rotated, both)
    assert crypto.rotate(rotated, aad=AAD, keyring=both) == rotated  # already current: unchanged

    monkeypatch.setenv(config.SECRET_KEYS_ENV, new)  # old key removed
    assert crypto.decrypt_json(rotated, aad=AAD) == SECRETS
    with pytest.raises(DecryptionError, match="not in ACCRUE_SECRET_KEYS"):
        crypto.decrypt_json(token, aad=AAD)


def test_generate_key_makes_distinct_aes256_entries() -> None:
    entries = {crypto.generate_key() for _ in range(5)}
    assert len(entries) == 5
    for entry in entries:
        kid, key = entry.split(":")
        assert crypto.KID_PATTERN.match(kid)
        assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    with pytest.raises(ValueError):
        crypto.generate_key("has:colon")


def test_keyring_parsing_and_repr_hide_key_material() -> None:
    a, b = crypto.generate_key("a"), crypto.generate_key("b")
    keys = Keyring.parse(f" {a} ,\n{b}  # comment\n")
    assert keys.key_ids == ("a", "b") and keys.primary_kid == "a" and "b" in keys
    assert key_material(a) not in repr(keys) and key_material(b) not in repr(keys)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nokid", "not of the form"),
        ("k1:not base64!", "not valid base64url"),
        ("k1:" + base64.urlsafe_b64encode(b"short").decode(), "32 bytes"),
        ("bad id:" + base64.urlsafe_b64encode(os.urandom(32)).decode(), "key id"),
    ],
    ids=["no-kid", "not-base64", "short-key", "bad-kid"],  # stable ids for xdist
)
def test_malformed_keyring_is_explained(value: str, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem) as caught:
        Keyring.parse(value)
    material = value.partition(":")[2]
    if material:
        assert material not in str(caught.value)


def test_duplicate_key_ids_are_refused() -> None:
    entry = crypto.generate_key("dup")
    with pytest.raises(KeyringError, match="listed twice"):
        Keyring.parse(f"{entry},{crypto.generate_key('dup')}")


def test_missing_keys_tell_the_user_how_to_create_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """S1: without a key nothing can be stored, and the error names the fix."""
    monkeypatch.delenv(config.SECRET_KEYS_ENV)
    with pytest.raises(KeyringError, match="accrue keys generate"):
        crypto.encrypt_json(SECRETS, aad=AAD)
    assert not config.accrue_home(create=False).exists()  # probing does not create ACCRUE_HOME


def test_demo_key_file_fallback_warns(
    monkeypatch: pytest.MonkeyPatch, accrue_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """S1: the local key file works for demos but is flagged as not for production."""
    monkeypatch.delenv(config.SECRET_KEYS_ENV)
    entry = crypto.generate_key("demo")
    accrue_env.mkdir(parents=True)
    key_file = accrue_env / config.SECRET_KEYS_FILENAME
    key_file.write_text(entry + "\n")
    key_file.chmod(0o600)

    with caplog.at_level(logging.WARNING, logger="accrue.crypto"):
        keys = Keyring.from_env()
    assert keys.primary_kid == "demo"
    assert "local demo only" in caplog.text
    assert key_material(entry) not in caplog.text
    token = crypto.encrypt_json(SECRETS, aad=AAD)
    assert crypto.key_id(token) == "demo"


def test_production_refuses_the_demo_key_file(
    monkeypatch: pytest.MonkeyPatch, accrue_env: Path
) -> None:
    """Issue 9: every process (Dagster's too, not only the concierge) in ACCRUE_ENV=production
    needs ACCRUE_SECRET_KEYS; a key file lying in ACCRUE_HOME is not a production key."""
    monkeypatch.delenv(config.SECRET_KEYS_ENV)
    accrue_env.mkdir(parents=True)
    (accrue_env / config.SECRET_KEYS_FILENAME).write_text(crypto.generate_key("demo"))
    monkeypatch.setenv(config.ENVIRONMENT_ENV, "production")
    with pytest.raises(KeyringError, match="ACCRUE_ENV=production needs ACCRUE_SECRET_KEYS"):
        crypto.encrypt_json(SECRETS, aad=AAD)
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key("prod"))
    assert Keyring.from_env().primary_kid == "prod"


def test_env_takes_precedence_over_key_file(
    monkeypatch: pytest.MonkeyPatch, accrue_env: Path
) -> None:
    accrue_env.mkdir(parents=True)
    (accrue_env / config.SECRET_KEYS_FILENAME).write_text(crypto.generate_key("file"))
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key("env"))
    assert Keyring.from_env().primary_kid == "env"


def test_encrypt_requires_an_object_and_a_binding() -> None:
    with pytest.raises(TypeError):
        crypto.encrypt_json(["not", "an", "object"], aad=AAD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aad"):
        crypto.encrypt_json(SECRETS, aad="")


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("INVALID_LOGIN password=hunter2 for user", "hunter2"),
        ('{"client_secret": "abc123def"}', "abc123def"),
        ("GET https://bob:pa55word@example.com/x", "pa55word"),
        ("Authorization: Bearer 00D5g000004!AQ0AQH", "00D5g000004!AQ0AQH"),
        ("security_token: 'XyZ987'", "XyZ987"),
        # results API tokens: bare, in a header, URL-encoded
        ("leaked acr_0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2y", "0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT"),
        ("Authorization: Bearer acr_0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2y", "0aB1cD2eF3gH"),
        ("h=Authorization%3A%20Bearer%20acr_0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2y",
         "0aB1cD2eF3gH"),
    ],
)
def test_redact_scrubs_credential_shapes(text: str, hidden: str) -> None:
    """S1: errors stored in run logs lose anything shaped like a credential."""
    assert hidden not in crypto.redact(text)
    assert "[REDACTED]" in crypto.redact(text)


def test_redact_removes_known_secret_values_and_tokens() -> None:
    token = crypto.encrypt_json(SECRETS, aad=AAD)
    text = f"failed for {SECRETS['username']} with {SECRETS['password']} ({token})"
    scrubbed = crypto.redact(text, SECRETS.values())
    assert SECRETS["password"] not in scrubbed and token not in scrubbed
    assert crypto.redact("nothing secret here") == "nothing secret here"
