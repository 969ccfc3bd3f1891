"""The command line for every registered CRM: its sandbox, its setup fields, a tenant on it.

Built from the specs like the concierge: `accrue sandbox <crm>` for each CRM with a
sandbox, `accrue tenant fields --crm X` listing what `tenant add` asks for, and
`tenant add --crm X` reading secrets from their environment variables (never from the
command line), testing the connection, and sealing what it stores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from accrue import config, db, tenants
from accrue_cli.commands import main
from connectors import registry
from connectors.sandbox_kit.harness import RunningCrmSandbox
from connectors.spec import ConnectorSpec, load


def test_every_crm_has_its_sandbox_command_and_lists_its_setup_fields(
    crm: ConnectorSpec
) -> None:
    runner = CliRunner()
    assert crm.key in runner.invoke(main, ["sandbox", "--help"]).output
    listed = runner.invoke(main, ["tenant", "fields", "--crm", crm.key])
    assert listed.exit_code == 0, listed.output
    for setup in crm.fields:
        assert setup.name in listed.output and setup.label in listed.output
        if setup.secret:
            assert f"env {setup.env}" in listed.output


def test_tenant_add_reads_secrets_from_the_environment_tests_and_seals_them(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine()
    db.upgrade(engine)
    secrets, conn_config = crm_org.connection()
    method = crm.auth(conn_config.get("auth"))
    known = {**conn_config, **secrets}
    args = ["tenant", "add", f"cli-{crm.key}", "--crm", crm.key, "--auth", method.key,
            "--sandbox-url", crm_org.url]
    for setup in crm.fields_for(method.key):
        value = known.get(setup.name)
        if value is None:
            continue
        if setup.secret:
            monkeypatch.setenv(str(setup.env), str(value))
        else:
            args += ["--set", f"{setup.name}={value}"]
    bad_secrets, _ = crm_org.bad_connection()
    wrong = next(k for k in bad_secrets if bad_secrets[k] != secrets.get(k))
    monkeypatch.setenv(str(crm.field(wrong).env), bad_secrets[wrong])
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "connection test failed" in refused.output
    assert tenants.get_tenant(engine, f"cli-{crm.key}") is None
    monkeypatch.setenv(str(crm.field(wrong).env), secrets[wrong])
    added = CliRunner().invoke(main, args)
    assert added.exit_code == 0, added.output
    stored = tenants.load_connection(engine, f"cli-{crm.key}")
    assert stored.crm_type == crm.key and stored.config["sandbox_url"] == crm_org.url
    for name, value in secrets.items():
        assert stored.secrets[name] == value and value not in added.output
    secret_on_command_line = CliRunner().invoke(main, [
        *args[:2], "cli-other", *args[3:], "--set", f"{wrong}=x"])
    assert secret_on_command_line.exit_code != 0 and "is secret" in secret_on_command_line.output
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_empty_salesforce_org_with_the_password_the_user_chose(tmp_path: Path) -> None:
    """`--opportunities 0` still has what every org has (the integration user, the Standard
    Price Book); `--login` sets the integration user's password and token; a secret the
    sandbox cannot set is refused before anything starts."""
    port = _free_port()
    base = [sys.executable, "-m", "accrue_cli", "sandbox", "salesforce", "--port", str(port),
            "--opportunities", "0", "--state", str(tmp_path / "empty.db")]
    refused = subprocess.run([*base, "--login", "api_key=x"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, config.HOME_ENV: str(tmp_path)})
    assert refused.returncode != 0 and "cannot set api_key" in refused.stderr
    server = subprocess.Popen([*base, "--login", "password=Chosen-Pass-1",
                               "--login", "security_token=CHOSENTOKEN"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/_sandbox/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        harness = load(str(registry.spec("salesforce").sandbox))()
        secrets, conn_config = harness.connection_at(url)
        secrets.update(password="Chosen-Pass-1", security_token="CHOSENTOKEN")
        with registry.create_connector("salesforce", secrets, conn_config) as connector:
            assert connector.check().ok
            assert connector.count("opportunity") == 0 and connector.count("account") == 0
            assert connector.count("user") >= 1
        from simple_salesforce import Salesforce

        from connectors.salesforce.transport import sandbox_session

        sf = Salesforce(username=secrets["username"], password="Chosen-Pass-1",
                        security_token="CHOSENTOKEN", session=sandbox_session(url))
        books = sf.query("SELECT Name FROM Pricebook2 WHERE IsStandard = true")["records"]
        assert [b["Name"] for b in books] == ["Standard Price Book"]
        default = dict(secrets, password=harness.connection_at(url)[0]["password"])
        with registry.create_connector("salesforce", default, conn_config) as connector:
            assert not connector.check().ok
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_readme_names_every_secret_s_environment_variable() -> None:
    """What `tenant add` reads is documented where an operator looks first."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in registry.specs():
        for setup in spec.fields:
            if setup.secret:
                assert f"`{setup.env}`" in readme, (spec.key, setup.name)
