"""The deployment files' structure: docker-compose.yml, Dockerfile, .dockerignore, .env.example.

No Docker engine is needed: the files are parsed and checked against what the code expects
(queue order, settings names, CLI commands) and against the deployment's promises
(scalable workers, gated start order, persistent password-protected Redis, no inline secrets).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from backfill.settings import Settings
from celeryconfig import QUEUE_ORDER

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|PRIVATE|TOKEN|BASIC_AUTH|API_KEY|REDIS_URL", re.I)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def argv(command) -> list[str]:
    return command if isinstance(command, list) else shlex.split(command)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def env_files(service: dict) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def depends(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def healthcheck_cmd(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test[1:])


def test_services_exist(services):
    assert {"redis", "worker", "flower", "dispatch", "indicator", "sim"} <= set(services)


def test_app_services_use_the_project_image(services):
    app = ("worker", "flower", "dispatch", "indicator", "sim")
    images = {services[n].get("image") for n in app}
    assert len(images) == 1 and None not in images
    assert all(services[n].get("build") for n in app)


def test_redis_is_persistent_and_password_protected(services, compose):
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    cmd = " ".join(argv(redis["command"]))
    assert "--appendonly yes" in cmd
    assert re.search(r"--requirepass \S*\$\$\{?REDIS_PASSWORD", cmd), cmd
    assert INTERPOLATION.fullmatch(env_of(redis)["REDIS_PASSWORD"]).group(1) == "REDIS_PASSWORD"
    volumes = redis["volumes"]
    assert any(
        str(v).endswith(":/data") or (isinstance(v, dict) and v.get("target") == "/data")
        for v in volumes
    ), volumes
    assert "redis-data" in compose["volumes"]
    check = healthcheck_cmd(redis)
    assert "redis-cli" in check and "ping" in check and "$$REDIS_PASSWORD" in check
    assert "PONG" in check  # redis-cli exits 0 on an error reply: look for the answer


def test_every_app_service_gets_the_password_protected_redis_url(services):
    for name in ("worker", "flower", "dispatch", "indicator"):
        url = env_of(services[name])["REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/0", url), (name, url)


def test_worker_is_scalable(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "hostname" not in worker
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def test_worker_queue_order_matches_celeryconfig(services):
    args = argv(services["worker"]["command"])
    assert args[:4] == ["celery", "-A", "backfill", "worker"]
    queues = args[args.index("-Q") + 1].split(",")
    assert queues == QUEUE_ORDER
    assert queues[:6] == [
        "backfill.control",
        "backfill.5m",
        "backfill.15m",
        "backfill.1h",
        "backfill.4h",
        "backfill.1d",
    ]
    # one process per rate-limited node (README, "The request budget")
    assert args[args.index("-c") + 1] == "1"


def test_dockerfile_default_command_is_the_same_worker(services):
    cmd = re.search(r"^CMD\s+(\[.*?\])\s*$", DOCKERFILE.read_text().replace("\\\n", " "), re.M)
    assert cmd, "Dockerfile has no exec-form CMD"
    args = yaml.safe_load(cmd.group(1))
    assert args[args.index("-Q") + 1].split(",") == QUEUE_ORDER


def test_worker_healthcheck_pings_its_own_node(services):
    check = healthcheck_cmd(services["worker"])
    assert "inspect ping" in check and "-d celery@$$HOSTNAME" in check, check


def test_worker_credentials_come_from_env_file_or_read_only_mount(services):
    worker = services["worker"]
    assert ".env" in env_files(worker)
    assert not any(k.startswith("COINBASE_API_") for k in env_of(worker))
    mounts = [v for v in worker.get("volumes", []) if isinstance(v, dict)]
    key_mounts = [v for v in mounts if v["target"].startswith("/run/secrets")]
    assert key_mounts and all(v.get("read_only") is True for v in key_mounts)
    for v in worker.get("volumes", []):
        if isinstance(v, str):
            assert v.endswith(":ro"), f"writable mount {v}"


def test_start_order(services):
    assert depends(services["worker"])["redis"]["condition"] == "service_healthy"
    assert depends(services["flower"])["redis"]["condition"] == "service_healthy"
    dispatch = depends(services["dispatch"])
    assert dispatch["worker"]["condition"] in ("service_healthy", "service_started")
    assert dispatch["redis"]["condition"] == "service_healthy"
    indicator = depends(services["indicator"])
    assert indicator["dispatch"]["condition"] == "service_completed_successfully"
    assert "worker" in indicator
    # the workers wait for the simulator when its profile is on, and only then
    sim_dep = depends(services["worker"]).get("sim")
    assert sim_dep is None or sim_dep.get("required") is False


def test_dispatch_is_one_shot_and_waits_for_the_gate(services):
    dispatch = services["dispatch"]
    assert dispatch["restart"] == "no"
    args = argv(dispatch["command"])
    assert args[:2] == ["backfill", "dispatch"] and "--wait" in args
    assert float(args[args.index("--timeout") + 1]) > 0
    assert dispatch.get("healthcheck", {}).get("disable") is True


def test_indicator_waits_for_the_gate(services):
    indicator = services["indicator"]
    args = argv(indicator["command"])
    assert args[:2] == ["backfill", "indicators"] and "--timeout" in args
    assert indicator.get("restart", "no") == "no"


def test_flower(services):
    flower = services["flower"]
    args = argv(flower["command"])
    assert args[:4] == ["celery", "-A", "backfill", "flower"] and "--port=5555" in args
    env = env_of(flower)
    auth = env.get("FLOWER_BASIC_AUTH")
    if auth is not None:  # from .env by interpolation, required (`:?`): never a literal
        assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]*\}", auth), auth
    else:
        assert ".env" in env_files(flower)
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    assert "/healthcheck" in healthcheck_cmd(flower)
    # Flower needs no exchange credentials
    assert ".env" not in env_files(flower) or auth is None
    assert not [v for v in flower.get("volumes", []) if "secrets" in str(v)]


def test_sim_is_in_a_profile(services):
    sim = services["sim"]
    assert sim["profiles"] == ["sim"]
    args = argv(sim["command"])
    assert args[:2] == ["backfill", "sim"]
    assert args[args.index("--port") + 1] == "8123" and args[args.index("--host") + 1] == "0.0.0.0"
    assert not env_files(sim) and not sim.get("volumes")  # no keys in the simulator
    assert all("profiles" not in s for n, s in services.items() if n != "sim")


def test_no_inline_secrets(services):
    pem = re.compile(r"-----BEGIN|PRIVATE KEY|organizations/.+/apiKeys/")
    for name, service in services.items():
        for key, value in env_of(service).items():
            assert not pem.search(value), f"{name}.{key} holds key material"
            if SECRET_NAME.search(key):
                assert INTERPOLATION.search(value), f"{name}.{key} is a literal: {value!r}"
                # after removing interpolations, no password-like literal is left
                rest = INTERPOLATION.sub("", value)
                assert not re.search(r"://[^@/]*:[^@/$]+@", rest), f"{name}.{key}: {value!r}"
    text = COMPOSE.read_text()
    assert not re.search(r"requirepass\s+[\"']?[A-Za-z0-9]", text)
    assert not re.search(r"-a\s+[\"']?[A-Za-z0-9]", text)
    assert not pem.search(text)


def test_env_example_lists_every_setting_without_secrets():
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    settings = {name.upper() for name in Settings.model_fields}
    assert settings <= named, f"missing from .env.example: {sorted(settings - named)}"
    assert {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"} <= named
    assert "COINBASE_API_BASE_URL=http://sim:8123" in text
    # every variable the compose file interpolates is explained there
    interpolated = set(INTERPOLATION.findall(yaml.safe_dump(yaml.safe_load(COMPOSE.read_text()))))
    assert interpolated <= named, sorted(interpolated - named)
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))
    assert not active.get("COINBASE_API_PRIVATE_KEY") and not active.get("COINBASE_API_KEY_NAME")
    assert "change-me" in active["REDIS_PASSWORD"] and "change-me" in active["FLOWER_BASIC_AUTH"]
    # active values must be valid settings (an empty BACKFILL_FLEET_RATE= would not be)
    env = {k.lower(): v for k, v in active.items() if k.lower() in Settings.model_fields}
    Settings(_env_file=None, **env)


def test_dockerfile_installs_the_project_as_non_root():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN .*pip install (--[\w-]+ )*\.(\s|$)", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users, "no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^(CMD|ENTRYPOINT)\s", text, re.M)
    assert re.search(r"^HEALTHCHECK\s", text, re.M)
    for part in ("celeryconfig.py", "pyproject.toml", "backfill/", "workers/"):
        assert re.search(rf"^COPY .*{re.escape(part)}", text, re.M), part
    assert not re.search(r"^COPY \.\s", text, re.M) or (ROOT / ".dockerignore").exists()


def test_dockerignore_keeps_secrets_out_of_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", ".git", "secrets/", "*.pem"):
        assert pattern in lines, pattern
    assert "!.env.example" in lines or ".env.*" not in lines
