"""The Kubernetes deployment: deploy/helm/values.yaml (the image and its code server are in
test_deploy_kubernetes_image.py, which imports the helpers here).

No Docker engine, cluster or helm binary runs here, so these tests check what can be
checked offline, against the repository's own rules:

* the chart values keep the run queue, retries, monitoring and sensor rules of dagster.yaml
  (differing only where the file says why), and Dagster itself accepts the instance config
  the chart renders from them;
* no secret is written inline: every credential is a reference to a Kubernetes Secret;
* the Dagster UI is reached only through oauth2-proxy.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.instance.config import (
    get_default_tick_retention_settings,
    get_tick_retention_settings,
)
from dagster._core.launcher import DefaultRunLauncher

from accrue import config as accrue_config
from accrue.crypto import generate_key

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
DOCS = REPO / "docs" / "kubernetes.md"

# Sections of dagster.yaml the chart does not carry, and why.
NOT_ON_KUBERNETES = {
    # Timeouts for code servers the webserver and daemon spawn themselves; on Kubernetes the
    # code server is its own Deployment, probed by the chart.
    "code_servers",
}
# Where the Kubernetes values may differ from dagster.yaml (each says why in values.yaml).
ALLOWED_DIFFERENCES = {
    ("concurrency", "runs", "max_concurrent_runs"),
    ("run_monitoring", "max_resume_run_attempts"),
}
DIFFERS_MARK = "differs from the local file"


@functools.cache
def _values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())



def _local_instance() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dagster.yaml").read_text())


def _code_server() -> dict[str, Any]:
    deployments = _values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1, "one code location: accrue_pipelines"
    return deployments[0]



def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    return {_snake(k): v for k, v in mapping.items() if v is not None}


def _rendered_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml sections the chart's instance ConfigMap renders from these values.

    Mirrors the chart's template for the keys we set (camelCase values become the instance's
    snake_case keys); storage and the run launcher are left out (they need a cluster).
    """
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    if coordinator["type"] == "QueuedRunCoordinator":
        queued = coordinator["config"].get("queuedRunCoordinator") or {}
        run_coordinator = {"module": "dagster.core.run_coordinator",
                           "class": "QueuedRunCoordinator", "config": _snake_keys(queued)}
    else:
        run_coordinator = dict(coordinator["config"]["customRunCoordinator"])
    rendered: dict[str, Any] = {"run_coordinator": run_coordinator}
    concurrency = values.get("concurrency") or {}
    if concurrency.get("enabled"):
        rendered["concurrency"] = {
            section: _snake_keys(concurrency[section])
            for section in ("runs", "pools") if concurrency.get(section)
        }
    rendered["run_monitoring"] = _snake_keys(daemon["runMonitoring"])
    rendered["run_retries"] = _snake_keys(daemon["runRetries"])
    rendered["sensors"] = _snake_keys(daemon["sensors"])
    rendered["schedules"] = _snake_keys(daemon["schedules"])
    retention = values["retention"]
    if retention.get("enabled"):
        rendered["retention"] = {
            _snake(kind): {"purge_after_days": retention[kind]["purgeAfterDays"]}
            for kind in ("sensor", "schedule", "autoMaterialize") if kind in retention
        }
    rendered["python_logs"] = _snake_keys(values["pythonLogs"])
    rendered["telemetry"] = {"enabled": values["telemetry"]["enabled"]}
    rendered.update(values.get("additionalInstanceConfig") or {})
    return rendered


def _comment_above(text: str, key: str) -> str:
    """The comment lines directly above the first `key:` line (lower case)."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
    comments = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("#"):
            break
        comments.append(line.strip().lstrip("#").strip())
    return " ".join(reversed(comments)).lower()


# --- secrets ---------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|private|api_?key|_keys?$", re.I)
# Keys whose value names a Secret (or says whether to make one) instead of holding one.
REFERENCE_KEY = re.compile(
    r"([sS]ecretName|Secrets|secretRef|PasswordSecret|SecretKeyRefKey|existingSecret)$")
PLACEHOLDER = re.compile(r"^(\.\.\.|<[^>]*>|\$\{?\w+\}?|\*+)$")
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:([^\s@'\"]+)@", re.I)
# A long run of base64 characters, mixed case and as varied as a random key (an Accrue key is
# 43 characters of about 4.3 bits or more each; names like `generatePostgresqlPasswordSecret`
# stay below 3.7).
TOKEN_LIKE = re.compile(r"[A-Za-z0-9+/_-]{32,}")
TOKEN_MIN_ENTROPY_BITS = 4.0


def _entropy(text: str) -> float:
    return -sum(n / len(text) * math.log2(n / len(text)) for n in Counter(text).values())


def _token_like(text: str) -> list[str]:
    return [t for t in TOKEN_LIKE.findall(text)
            if re.search("[a-z]", t) and re.search("[A-Z]", t)
            and _entropy(t) >= TOKEN_MIN_ENTROPY_BITS]


def _secret_findings(text: str) -> list[str]:
    """Anything in a YAML text that looks like a secret value written inline."""
    findings = []
    for password in URL_CREDENTIALS.findall(text):
        if not PLACEHOLDER.match(password):
            findings.append(f"URL with a password: {password[:4]}…")
    findings += [f"token-like string {t[:6]}…" for t in _token_like(text)]
    if "-----BEGIN" in text:
        findings.append("a PEM block")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                key = str(key)
                if key == "env":
                    walk_env(value, f"{path}.env")
                elif (SECRET_NAME.search(key) and not REFERENCE_KEY.search(key)
                      and isinstance(value, str | int) and str(value).strip()):
                    findings.append(f"{path}.{key} has a value")
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    def walk_env(env: Any, path: str) -> None:
        items = (env.items() if isinstance(env, dict)
                 else ((e.get("name", ""), e.get("value")) for e in env or []))
        for name, value in items:
            secret = SECRET_NAME.search(name) or name == accrue_config.DATABASE_URL_ENV
            if secret and value not in (None, ""):
                findings.append(f"{path}.{name} is set inline (use envSecrets/secretKeyRef)")

    walk(yaml.safe_load(text), "")
    return findings


def test_the_secret_detector_catches_real_secrets() -> None:
    """Not vacuous: the checks below would flag a real key, password or inline env var."""
    key = generate_key()
    assert _secret_findings(f"x:\n  ACCRUE_SECRET_KEYS: \"{key}\"\n")
    assert _token_like(f"# left in a comment: {key}")
    assert _secret_findings("postgresql:\n  postgresqlPassword: hunter2\n")
    assert _secret_findings("url: postgresql://accrue:s3cret@db:5432/accrue\n")
    assert _secret_findings("env:\n  ACCRUE_DATABASE_URL: sqlite:///x.db\n")
    assert _secret_findings("env:\n  - name: ACCRUE_SMTP_PASSWORD\n    value: pw\n")
    assert not _secret_findings("url: postgresql://accrue:...@db:5432/accrue\n"
                                "global:\n  postgresqlSecretName: s\n"
                                "envSecrets:\n  - name: accrue-secrets\n")


def _referenced_secrets(node: Any) -> set[str]:
    """Names of the Kubernetes Secrets the values refer to."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "postgresqlSecretName" or key == "secretRef":
                names.add(value if isinstance(value, str) else value["name"])
            elif key in ("envSecrets", "imagePullSecrets"):
                names |= {item["name"] for item in value}
            else:
                names |= _referenced_secrets(value)
    elif isinstance(node, list):
        for item in node:
            names |= _referenced_secrets(item)
    return names


def test_values_hold_no_secret_only_references_to_kubernetes_secrets() -> None:
    text = VALUES.read_text()
    assert _secret_findings(text) == []
    values = _values()
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    # The code server (sensors), every run pod and the migration read the same Secret ...
    secret_names = {s["name"] for s in _code_server()["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert secret_names and secret_names <= {s["name"] for s in launcher["envSecrets"]}
    for container in _code_server()["initContainers"]:
        assert {e["secretRef"]["name"] for e in container["envFrom"]} == secret_names
    # Every Secret referred to is one the instructions (here and in the docs) say to create.
    referenced = _referenced_secrets(values)
    assert referenced >= secret_names | {values["global"]["postgresqlSecretName"]}
    for name in referenced:
        for instructions in (text, DOCS.read_text()):
            assert re.search(rf"create secret [\w-]+ {re.escape(name)}\b", instructions), name
    # ... and the application's Secret holds the variables Accrue reads.
    for variable in (accrue_config.DATABASE_URL_ENV, accrue_config.SECRET_KEYS_ENV):
        assert re.search(rf"create secret generic ({'|'.join(secret_names)})\b(.|\n)*?"
                         rf"--from-literal={variable}=", text), variable


# --- the chart values against dagster.yaml ---------------------------------------------------

def test_values_select_the_canonical_production_path() -> None:
    values = _values()
    assert values["postgresql"]["enabled"] is False  # an external, managed PostgreSQL
    single_host = yaml.safe_load((REPO / "deploy" / "dagster" / "single-host.yaml").read_text())
    assert values["postgresql"]["postgresqlScheme"] == (
        single_host["storage"]["custom"]["config"]["postgres_db"]["scheme"]
    ) == "postgresql+psycopg2"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["enabled"] and values["dagster-user-deployments"]["enabled"]
    # Run pods take their resources and labels from the launcher only: with the code server's
    # config included in launched runs, its resources would override the launcher's.
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["resources"]["requests"] and launcher["labels"]
    assert _code_server()["includeConfigInLaunchedRuns"]["enabled"] is False
    # The run pods use the code server's image (the chart ignores an image set here).
    assert "image" not in launcher


def test_run_queue_and_daemon_rules_equal_dagster_yaml() -> None:
    """The rules of dagster.yaml hold on Kubernetes, except where values.yaml says why."""
    local = _local_instance()
    rendered = _rendered_instance(_values())
    # dagster.yaml's run_queue is the run coordinator's config here (see values.yaml).
    rendered["run_queue"] = rendered.pop("run_coordinator")["config"]
    for config in (local, rendered):  # Dagster's defaults fill what a file leaves out
        config["retention"] = {
            kind: get_tick_retention_settings(
                settings, get_default_tick_retention_settings(InstigatorType.SENSOR))
            for kind, settings in config["retention"].items()
        }
    unknown = set(local) - set(rendered) - NOT_ON_KUBERNETES
    assert not unknown, f"dagster.yaml sections the Kubernetes values do not carry: {unknown}"
    differences = set()
    for section, value in local.items():
        if section in NOT_ON_KUBERNETES:
            continue
        if not isinstance(value, dict):
            if rendered[section] != value:
                differences.add((section,))
            continue
        for key, sub in value.items():
            if isinstance(sub, dict) and section != "retention":
                differences |= {(section, key, k) for k, v in sub.items()
                                if rendered[section].get(key, {}).get(k) != v}
            elif rendered[section].get(key) != sub:
                differences.add((section, key))
    assert differences <= ALLOWED_DIFFERENCES, differences - ALLOWED_DIFFERENCES
    # Each difference is explained where it is made; the tag limits are never one of them.
    text = VALUES.read_text()
    assert DIFFERS_MARK in _comment_above(text, "maxConcurrentRuns")
    assert DIFFERS_MARK in _comment_above(text, "maxResumeRunAttempts")
    assert (rendered["concurrency"]["runs"]["tag_concurrency_limits"]
            == local["concurrency"]["runs"]["tag_concurrency_limits"])
    # The Kubernetes launcher can resume a run whose pod died, so monitoring does.
    assert rendered["run_monitoring"]["max_resume_run_attempts"] > 0


class ResumingLauncherStandIn(DefaultRunLauncher):
    """Stands in for dagster-k8s's K8sRunLauncher (only in the image), which resumes runs."""

    @property
    def supports_resume_run(self) -> bool:
        return True


def test_dagster_accepts_the_instance_config_the_values_render(tmp_path: Path) -> None:
    """Dagster loads it: no conflict between the run coordinator and `concurrency`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    rendered = _rendered_instance(_values())
    rendered["run_launcher"] = {"module": __name__, "class": ResumingLauncherStandIn.__name__}
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        expected = _values()["concurrency"]
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs == expected["runs"]["maxConcurrentRuns"]
        assert queue.tag_concurrency_limits == expected["runs"]["tagConcurrencyLimits"]
        assert queue.max_user_code_failure_retries == (
            _local_instance()["run_queue"]["max_user_code_failure_retries"])
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == expected["pools"]["defaultLimit"]
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_max_resume_run_attempts == (
            _values()["dagsterDaemon"]["runMonitoring"]["maxResumeRunAttempts"])
        local_retries = _local_instance()["run_retries"]
        assert instance.run_retries_max_retries == local_retries["max_retries"]
        assert instance.run_retries_retry_on_asset_or_op_failure is (
            local_retries["retry_on_asset_or_op_failure"])
    finally:
        instance.dispose()


# --- the Dagster UI behind a login (issue 9: the webserver has no authentication) -----------

OAUTH2_PROXY_VALUES = REPO / "deploy" / "helm" / "oauth2-proxy-values.yaml"
SINGLE_HOST_PROXY = REPO / "deploy" / "oauth2-proxy" / "single-host.cfg"


def test_the_dagster_ui_is_reached_only_through_oauth2_proxy_on_kubernetes() -> None:
    values = _values()
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"  # no way around
    ingress = values["ingress"]
    assert ingress["enabled"] is True
    annotations = ingress["annotations"]
    auth_url = annotations["nginx.ingress.kubernetes.io/auth-url"]
    assert auth_url.endswith("/oauth2/auth") and "oauth2-proxy" in auth_url
    host = ingress["dagsterWebserver"]["host"]
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"].startswith(
        f"https://{host}/oauth2/start")
    assert ingress["dagsterWebserver"]["tls"]["enabled"] is True
    proxy_text = OAUTH2_PROXY_VALUES.read_text()
    assert _secret_findings(proxy_text) == []
    proxy = yaml.safe_load(proxy_text)
    assert proxy["ingress"]["hosts"] == [host] and proxy["ingress"]["path"] == "/oauth2"
    args = proxy["extraArgs"]
    assert args["email-domain"] not in ("*", "") and args["cookie-secure"] is True
    assert args["redirect-url"] == f"https://{host}/oauth2/callback"
    secret = proxy["config"]["existingSecret"]
    assert re.search(rf"create secret generic {secret}\b", proxy_text)
    for key in ("client-id", "client-secret", "cookie-secret"):
        assert f"--from-literal={key}=" in proxy_text


def test_the_dagster_ui_is_reached_only_through_oauth2_proxy_on_one_host() -> None:
    import tomllib

    text = SINGLE_HOST_PROXY.read_text()
    config = tomllib.loads(text)  # oauth2-proxy's config file format is TOML
    assert config["upstreams"] == ["http://127.0.0.1:3000/"]
    assert config["http_address"].startswith("127.0.0.1:")  # behind the TLS terminator
    assert "-h 127.0.0.1" in text  # the webserver itself listens on loopback only
    assert config["email_domains"] not in (["*"], []) and config["cookie_secure"] is True
    for secret_key in ("client_secret", "cookie_secret", "client_id"):
        assert secret_key not in config  # from OAUTH2_PROXY_* environment variables
        assert f"OAUTH2_PROXY_{secret_key.upper()}" in text
