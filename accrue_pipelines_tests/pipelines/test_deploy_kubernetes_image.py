"""The Kubernetes deployment's image and code server: deploy/Dockerfile and the code server
entry of deploy/helm/values.yaml, checked offline (no Docker engine runs here):

* the code server serves workspace.yaml's module, from one image referenced consistently;
* the Dockerfile installs the project, starts that code server, runs as a non-root user and
  copies no secret into the image;
* and, for real, the code server command the values give starts here and answers Dagster's
  gRPC health check and repository listing.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import yaml

from accrue import config as accrue_config
from accrue_pipelines_tests.pipelines.test_deploy_kubernetes import (
    DOCS,
    REPO,
    SECRET_NAME,
    _code_server,
)

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BIN = Path(sys.executable).parent
CODE_SERVER_DEADLINE_S = 60


@functools.cache
def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _workspace_module() -> str:
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    return entry["python_module"]["module_name"]


# --- the code server and its image -----------------------------------------------------------

def test_code_server_serves_workspace_module() -> None:
    server = _code_server()
    args = server["dagsterApiGrpcArgs"]
    assert args == ["-m", _workspace_module()]
    assert _pyproject()["tool"]["dagster"]["module_name"] == _workspace_module()
    # A DNS-1123 label: the chart names the code server's Service (its gRPC host) after it.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", server["name"])
    assert len(server["name"]) <= 63


def test_image_is_referenced_consistently() -> None:
    image = _code_server()["image"]
    reference = f"{image['repository']}:{image['tag']}"
    assert image["tag"] and str(image["tag"]) != "latest"
    # The migration runs the very image the new code server (and so every new run) uses.
    (migrate,) = _code_server()["initContainers"]
    assert migrate["image"] == reference
    assert migrate["command"] == ["accrue", "db", "upgrade"]
    # The build and push instructions name the same repository.
    assert image["repository"] in DOCKERFILE.read_text()
    assert image["repository"] in DOCS.read_text()


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            current = ""
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _exec_form(arguments: str) -> list[str]:
    """The JSON (exec) form of CMD/HEALTHCHECK CMD: the shell form would not get signals."""
    return json.loads(arguments)


def test_dockerfile_installs_the_project_with_the_kubernetes_launcher() -> None:
    instructions = _dockerfile_instructions()
    defaults = dict(a.split("=", 1) for w, a in instructions if w == "ARG" and "=" in a)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], a.split()[0])
             for w, a in instructions if w == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11-slim(-\w+)?", b) for b in bases), bases
    runs = " ".join(a for w, a in instructions if w == "RUN")
    assert re.search(r"pip install (\S+ )*\.( |$)", runs), "the project itself is installed"
    # dagster-k8s is pinned to the same release line as the Dagster libraries in pyproject.
    postgres_spec = next(d for d in _pyproject()["project"]["dependencies"]
                         if d.startswith("dagster-postgres"))
    assert postgres_spec.replace("dagster-postgres", "dagster-k8s") in runs
    # Every package pyproject installs is in the build context and copied into the build.
    copied = {a.split()[0] for w, a in instructions if w == "COPY" and "--from" not in a}
    packages = {p.split(".")[0] for p in _pyproject()["tool"]["setuptools"]["packages"]["find"][
        "include"]}
    assert packages | {"pyproject.toml"} <= copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _dockerignored(source), f"{source} is excluded by .dockerignore"


def test_dockerfile_starts_the_code_server_as_a_non_root_user() -> None:
    final = _stages()[-1]
    words = [w for w, _ in final]
    assert "ENTRYPOINT" not in words, "the chart and the run launcher pass whole commands"
    (cmd,) = [_exec_form(a) for w, a in final if w == "CMD"]
    assert cmd[:3] == ["dagster", "api", "grpc"]
    options = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    port = int(options.pop("-p"))
    assert options.pop("-h") == "0.0.0.0"
    # Without host and port (the chart adds its own), the same arguments as the values file.
    assert [x for pair in options.items() for x in pair] == _code_server()["dagsterApiGrpcArgs"]
    assert port == _code_server()["port"]
    assert f"EXPOSE {port}" in [f"{w} {a}" for w, a in final]
    (health,) = [a for w, a in final if w == "HEALTHCHECK"]
    probe = _exec_form(health.split(" CMD ", 1)[1])
    assert probe == ["dagster", "api", "grpc-health-check", "-p", str(port)]
    (user,) = [a for w, a in final if w == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user (runAsNonRoot can check it)"
    security = _code_server()["podSecurityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == int(uid)
    labels = [a for w, a in final if w == "LABEL"]
    assert any("org.opencontainers.image.title" in a for a in labels)


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]


def _pattern_matches(pattern: list[str], path: list[str]) -> bool:
    """Docker's .dockerignore matching: `*` stays within a segment, `**` spans segments."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_pattern_matches(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pattern[0]) and _pattern_matches(
        pattern[1:], path[1:])


def _dockerignored(path: str) -> bool:
    """Whether the build context leaves `path` out: it, or a folder above it, matches."""
    parts = path.strip("/").split("/")
    for pattern in _dockerignore_patterns():
        assert not pattern.startswith("!"), "exceptions are not modelled here"
        pattern_parts = pattern.strip("/").split("/")
        if any(_pattern_matches(pattern_parts, parts[: i + 1]) for i in range(len(parts))):
            return True
    return False


def test_dockerfile_bakes_in_no_secret() -> None:
    instructions = _dockerfile_instructions()
    secret_file = re.compile(r"(^|/)(\.env(\..*)?|\.accrue|secret_keys|.*\.(pem|key|p12))$")
    for word, arguments in instructions:
        if word in ("COPY", "ADD") and "--from" not in arguments:
            sources = shlex.split(arguments)[:-1]
            assert "." not in sources, "copy named package sources, never the whole context"
            for source in sources:
                assert not secret_file.search(source.rstrip("/")), source
        if word in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", arguments) or [arguments.split()[0]]
            for name in names:
                assert not SECRET_NAME.search(name), f"{word} {name}: secrets come at run time"
                assert name != accrue_config.DATABASE_URL_ENV, f"{word} {name}: run time only"
    # The build context itself leaves out local state, secrets and test artifacts.
    for path in (".env", ".env.production", ".accrue/secret_keys", ".accrue/warehouse.db",
                 ".venv/bin/python", ".git/config", ".pytest_cache/v/cache",
                 "accrue/__pycache__/db.cpython-311.pyc", "onboarding_app/.env",
                 "accrue_pipelines_tests/pipelines/test_deploy_kubernetes.py", "tls/server.key"):
        assert _dockerignored(path), path
    for path in ("accrue/db.py", "accrue/migrations/versions/0001_initial.py",
                 "onboarding_app/templates/base.html", "pyproject.toml"):
        assert not _dockerignored(path), path


# --- the code server command, run for real ---------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and anything it started (its own process group)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def test_code_server_command_from_the_values_serves_the_definitions(tmp_path: Path) -> None:
    """`dagster api grpc` with the chart's arguments starts, is healthy and loads our module."""
    from dagster._grpc.client import DagsterGrpcClient

    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ACCRUE_HOME": str(tmp_path / "accrue_home"),
        "ACCRUE_DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
    }
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = tmp_path / "code_server.log"
    args = [str(BIN / "dagster"), "api", "grpc", *_code_server()["dagsterApiGrpcArgs"],
            "-p", str(port), "-h", "127.0.0.1"]
    with log.open("wb") as out:
        # An empty working directory, as in the image: the module comes from the installation.
        process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + CODE_SERVER_DEADLINE_S
        while True:
            assert process.poll() is None, f"the code server exited:\n{log.read_text()[-3000:]}"
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                env=env, capture_output=True, timeout=30)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, (
                f"not healthy within {CODE_SERVER_DEADLINE_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        listing = json.loads(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())
        pointers = listing["repository_code_pointer_dict"].values()
        assert {p["module"] for p in pointers} == {_workspace_module()}
    finally:
        _stop(process)
