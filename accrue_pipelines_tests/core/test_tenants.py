"""Tenant registry and credential vault, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import config, crypto, tenants
from accrue.crypto import DecryptionError
from accrue.schema import crm_connection
from accrue.tenants import (
    ConnectionNotFound,
    TenantError,
    TenantExists,
    TenantNotFound,
)

SECRETS = {
    "username": "integration@acme.example",
    "password": "Tr0ub4dor&3",
    "security_token": "AbCdEfGhIjKlMnOp",
}
CONFIG = {"domain": "login", "instance_url": "https://acme.my.salesforce.com"}


@pytest.fixture
def tenant_with_credentials(engine: Engine, tenant_id: str) -> tuple[str, int]:
    tenants.add_tenant(engine, tenant_id, "Acme Corp", "salesforce")
    return tenant_id, tenants.save_credentials(engine, tenant_id, "salesforce", SECRETS, CONFIG)


def raw_connection_row(engine: Engine, connection_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(crm_connection).where(crm_connection.c.id == connection_id))
        return dict(row.mappings().one())


# --------------------------------------------------------------------------- registry


def test_add_get_list_and_status(engine: Engine, make_tenant_id: Callable[[], str]) -> None:
    a, b = sorted([make_tenant_id(), make_tenant_id()])
    created = tenants.add_tenant(engine, a, "  Acme  ", "salesforce", sync_frequency_minutes=15)
    tenants.add_tenant(engine, b, "Globex", "salesforce", status="pending")

    assert (created.id, created.name, created.status, created.sync_frequency_minutes) == (
        a,
        "Acme",
        "active",
        15,
    )
    assert created.created_at.tzinfo is not None
    assert tenants.get_tenant(engine, a) == created
    ours = {a, b}
    assert [t.id for t in tenants.list_tenants(engine) if t.id in ours] == [a, b]
    assert [t.id for t in tenants.list_tenants(engine, "pending") if t.id in ours] == [b]

    paused = tenants.set_status(engine, a, "paused")
    assert paused.status == "paused" and paused.updated_at >= created.updated_at
    assert tenants.set_sync_frequency(engine, a, 1440).sync_frequency_minutes == 1440
    assert a not in {t.id for t in tenants.list_tenants(engine, "active")}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant_id": "Acme"}, "invalid tenant id"),
        ({"tenant_id": "a"}, "invalid tenant id"),
        ({"tenant_id": "acme|corp"}, "invalid tenant id"),
        ({"tenant_id": "acme,corp"}, "invalid tenant id"),
        ({"tenant_id": "-acme"}, "invalid tenant id"),
        ({"tenant_id": "a" * 64}, "invalid tenant id"),
        ({"sync_frequency_minutes": 10}, "5, 15, 30, 60, 360, 1440"),
        ({"sync_frequency_minutes": True}, "invalid sync frequency"),
        ({"status": "archived"}, "pending, active, paused, deleted"),
        ({"name": "   "}, "name"),
        ({"crm_type": "Sales Force"}, "CRM type"),
    ],
)
def test_invalid_tenant_input_is_explained(
    engine: Engine, tenant_id: str, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"tenant_id": tenant_id, "name": "Acme", "crm_type": "salesforce"}
    args.update(kwargs)
    with pytest.raises(TenantError, match=message):
        tenants.add_tenant(engine, **args)  # type: ignore[arg-type]


def test_duplicate_and_missing_tenants(engine: Engine, tenant_id: str) -> None:
    tenants.add_tenant(engine, tenant_id, "Acme", "salesforce")
    with pytest.raises(TenantExists, match="already exists"):
        tenants.add_tenant(engine, tenant_id, "Acme again", "salesforce")
    assert tenants.get_tenant(engine, "no-such-tenant-x") is None
    with pytest.raises(TenantNotFound):
        tenants.require_tenant(engine, "no-such-tenant-x")
    with pytest.raises(TenantNotFound):
        tenants.set_status(engine, "no-such-tenant-x", "paused")


# --------------------------------------------------------------------------- vault (S1)


def test_credentials_round_trip(engine: Engine, tenant_with_credentials: tuple[str, int]) -> None:
    """S1: what the onboarding form saved is what the pipeline gets back."""
    tenant_id, connection_id = tenant_with_credentials
    connection = tenants.load_connection(engine, tenant_id)
    assert connection.id == connection_id
    assert (connection.crm_type, connection.config) == ("salesforce", CONFIG)
    assert connection.secrets == SECRETS
    assert isinstance(connection.secrets, dict)


def test_database_never_holds_the_plaintext(
    engine: Engine, tenant_with_credentials: tuple[str, int]
) -> None:
    """S1: credentials are encrypted at rest; the stored row contains none of them."""
    _, connection_id = tenant_with_credentials
    stored = raw_connection_row(engine, connection_id)
    dumped = repr(stored)
    for value in SECRETS.values():
        assert value not in dumped
    assert str(stored["secret_ciphertext"]).startswith("v1.")
    assert stored["key_id"] == crypto.Keyring.from_env().primary_kid


def test_production_refuses_a_tenant_on_a_crm_sandbox(
    engine: Engine, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: a sandbox_url (demo, tests) never routes a production sync to a local server."""
    tenants.add_tenant(engine, tenant_id, "Acme Corp", "salesforce")
    tenants.save_credentials(engine, tenant_id, "salesforce", SECRETS,
                             {**CONFIG, "sandbox_url": "http://127.0.0.1:8701"})
    assert tenants.load_connection(engine, tenant_id).config["sandbox_url"]  # development
    monkeypatch.setenv("ACCRUE_ENV", "production")
    with pytest.raises(tenants.SandboxRefused, match="connect it again in the concierge"):
        tenants.load_connection(engine, tenant_id)
    tenants.save_credentials(engine, tenant_id, "salesforce", SECRETS, CONFIG)
    assert tenants.load_connection(engine, tenant_id).secrets == SECRETS


def test_connection_repr_hides_secrets(
    engine: Engine, tenant_with_credentials: tuple[str, int]
) -> None:
    """S1: printing or logging a loaded connection never shows secret values."""
    connection = tenants.load_connection(engine, tenant_with_credentials[0])
    for shown in (repr(connection), str(connection), f"{connection}", repr(connection.secrets)):
        for value in SECRETS.values():
            assert value not in shown
    assert "password" in repr(connection.secrets)  # the keys are fine to show


def test_vault_logs_never_contain_secrets(
    engine: Engine, tenant_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """S1: saving, loading and rotating credentials logs nothing secret, even at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        tenants.add_tenant(engine, tenant_id, "Acme", "salesforce")
        tenants.save_credentials(engine, tenant_id, "salesforce", SECRETS, CONFIG)
        tenants.load_connection(engine, tenant_id)
        tenants.rotate_keys(engine, tenant_id=tenant_id)
    assert caplog.records
    for value in SECRETS.values():
        assert value not in caplog.text


def test_saving_again_replaces_credentials_in_place(
    engine: Engine, tenant_with_credentials: tuple[str, int]
) -> None:
    tenant_id, connection_id = tenant_with_credentials
    new_secrets = {**SECRETS, "password": "n3w-Passw0rd"}
    again = tenants.save_credentials(
        engine, tenant_id, "salesforce", new_secrets, {"domain": "test"}
    )
    assert again == connection_id
    loaded = tenants.load_connection(engine, tenant_id)
    assert loaded.secrets == new_secrets and loaded.config == {"domain": "test"}

    info = tenants.connection_info(engine, tenant_id)
    assert info is not None and info.id == connection_id and info.config == {"domain": "test"}
    assert not hasattr(info, "secrets")


def test_ciphertext_copied_to_another_tenant_fails(
    engine: Engine, make_tenant_id: Callable[[], str]
) -> None:
    """S1: pasting tenant A's sealed secret into tenant B's row does not yield A's credentials."""
    a, b = make_tenant_id(), make_tenant_id()
    for tid in (a, b):
        tenants.add_tenant(engine, tid, tid, "salesforce")
    a_id = tenants.save_credentials(engine, a, "salesforce", SECRETS, CONFIG)
    b_id = tenants.save_credentials(engine, b, "salesforce", {"password": "b-secret"}, CONFIG)
    stolen = raw_connection_row(engine, a_id)["secret_ciphertext"]
    with engine.begin() as conn:
        conn.execute(
            sa.update(crm_connection)
            .where(crm_connection.c.id == b_id)
            .values(secret_ciphertext=stolen)
        )

    with pytest.raises(DecryptionError) as caught:
        tenants.load_connection(engine, b)
    assert caught.value.reason == "invalid"
    assert b in str(caught.value)
    assert tenants.load_connection(engine, a).secrets == SECRETS


def test_removed_key_is_reported_and_connection_can_still_be_deleted(
    engine: Engine, tenant_with_credentials: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S1: after the key is gone the error says which key to restore, and the now-useless
    credentials can still be deleted (delete never decrypts)."""
    tenant_id, _ = tenant_with_credentials
    old_kid = crypto.Keyring.from_env().primary_kid
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key())

    with pytest.raises(DecryptionError) as caught:
        tenants.load_connection(engine, tenant_id)
    assert caught.value.reason == "unknown_key" and old_kid in str(caught.value)
    assert config.SECRET_KEYS_ENV in str(caught.value)

    assert tenants.delete_connection(engine, tenant_id) == 1
    assert tenants.connection_info(engine, tenant_id) is None
    with pytest.raises(ConnectionNotFound):
        tenants.load_connection(engine, tenant_id)


def test_rotate_keys_then_drop_the_old_key(
    engine: Engine, make_tenant_id: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S1: rotation re-encrypts under the new primary; then the old key can be removed."""
    old, new = crypto.generate_key("k1"), crypto.generate_key("k2")
    monkeypatch.setenv(config.SECRET_KEYS_ENV, old)
    tid = make_tenant_id()
    tenants.add_tenant(engine, tid, "Acme", "salesforce")
    connection_id = tenants.save_credentials(engine, tid, "salesforce", SECRETS, CONFIG)
    before = raw_connection_row(engine, connection_id)["secret_ciphertext"]

    monkeypatch.setenv(config.SECRET_KEYS_ENV, f"{new},{old}")
    assert tenants.load_connection(engine, tid).secrets == SECRETS  # both keys work meanwhile
    assert tenants.rotate_keys(engine, tenant_id=tid) == {
        "rotated": 1,
        "already_current": 0,
        "failed": 0,
    }
    after = raw_connection_row(engine, connection_id)
    assert after["key_id"] == "k2" and crypto.key_id(str(after["secret_ciphertext"])) == "k2"
    assert after["secret_ciphertext"] != before
    assert tenants.rotate_keys(engine, tenant_id=tid)["already_current"] == 1

    monkeypatch.setenv(config.SECRET_KEYS_ENV, new)
    assert tenants.load_connection(engine, tid).secrets == SECRETS


def test_rotate_keys_counts_undecryptable_rows(
    engine: Engine, tenant_with_credentials: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S1: a row whose key is already gone is reported, not silently skipped or destroyed."""
    tenant_id, connection_id = tenant_with_credentials
    before = raw_connection_row(engine, connection_id)
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key())
    assert tenants.rotate_keys(engine, tenant_id=tenant_id) == {
        "rotated": 0,
        "already_current": 0,
        "failed": 1,
    }
    assert raw_connection_row(engine, connection_id) == before


def test_secret_looking_config_is_refused(engine: Engine, tenant_id: str) -> None:
    """S1: config is stored in clear, so credentials put there by mistake are rejected."""
    tenants.add_tenant(engine, tenant_id, "Acme", "salesforce")
    with pytest.raises(TenantError, match="look like credentials"):
        tenants.save_credentials(
            engine, tenant_id, "salesforce", SECRETS, {"domain": "login", "password": "oops"}
        )
    with pytest.raises(TenantError, match="non-empty"):
        tenants.save_credentials(engine, tenant_id, "salesforce", {}, CONFIG)
    assert tenants.connection_info(engine, tenant_id) is None


def test_credentials_need_an_existing_tenant(engine: Engine, tenant_id: str) -> None:
    with pytest.raises(TenantNotFound):
        tenants.save_credentials(engine, tenant_id, "salesforce", SECRETS, CONFIG)
    tenants.add_tenant(engine, tenant_id, "Acme", "salesforce")
    with pytest.raises(ConnectionNotFound, match="no saved salesforce credentials"):
        tenants.load_connection(engine, tenant_id)
