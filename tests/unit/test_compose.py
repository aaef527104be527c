"""The deployment files' structure: docker-compose.yml, Dockerfile, .dockerignore, .env.example.

No Docker engine is needed: the files are parsed and checked against what the code expects
(queue order, settings names, CLI commands) and against the deployment's promises
(scalable workers, gated start order, persistent password-protected Redis, no inline secrets).
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from core.keys import queue_order
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
# A required variable: `${NAME:?message}` (an empty or missing value stops compose); a
# default such as `${NAME:-}` would start the stack without it.
REQUIRED = r"\$\{{{name}:\?[^}}]*\}}"
APP = ("worker", "beat", "flower", "dispatch", "indicator", "sim")
KEY_TARGET = "/run/secrets/coinbase"
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


def key_mounts(service: dict) -> list:
    """Mounts of the CDP key folder (long or short syntax)."""
    return [v for v in service.get("volumes") or [] if KEY_TARGET in str(v)]


def test_services_exist(services):
    assert {"redis", "worker", "beat", "flower", "dispatch", "indicator", "sim"} <= set(services)


def test_app_services_use_the_project_image(services):
    images = {services[n].get("image") for n in APP}
    assert len(images) == 1 and None not in images
    assert all(services[n].get("build") for n in APP)


def test_redis_is_persistent_and_password_protected(services, compose):
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    cmd = " ".join(argv(redis["command"]))
    assert "--appendonly yes" in cmd
    assert re.search(r"--requirepass \S*\$\$\{?REDIS_PASSWORD", cmd), cmd
    password = env_of(redis)["REDIS_PASSWORD"]
    assert re.fullmatch(REQUIRED.format(name="REDIS_PASSWORD"), password), password
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
    pattern = "redis://:" + REQUIRED.format(name="REDIS_PASSWORD") + "@redis:6379/0"
    for name in ("worker", "beat", "flower", "dispatch", "indicator"):
        url = env_of(services[name])["REDIS_URL"]
        assert re.fullmatch(pattern, url), (name, url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:${REDIS_PASSWORD:-}@redis:6379/0",
        "redis://:${REDIS_PASSWORD}@redis:6379/0",
        "redis://:${REDIS_PASSWORD-x}@redis:6379/0",
        "redis://@redis:6379/0",
    ],
)
def test_the_password_pattern_refuses_optional_passwords(url):
    pattern = "redis://:" + REQUIRED.format(name="REDIS_PASSWORD") + "@redis:6379/0"
    assert not re.fullmatch(pattern, url)


def test_worker_is_scalable_and_its_count_survives_re_runs(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "hostname" not in worker
    # The count is part of the configuration (set in .env), so `up dispatch indicator` and
    # `run dispatch`, which converge their dependencies to it, keep the fleet's size.
    replicas = str(worker["deploy"]["replicas"])
    m = re.fullmatch(r"\$\{([A-Z0-9_]+):-(\d+)\}", replicas)
    assert m and int(m.group(2)) >= 1, replicas


def test_worker_takes_its_queues_from_the_configuration(services):
    # No -Q: a plain worker consumes celeryconfig's task_queues in their order (kombu's
    # priority strategy follows it); a typed-out list goes stale and silently starves a queue.
    args = argv(services["worker"]["command"])
    assert args[:4] == ["celery", "-A", "backfill", "worker"]
    assert not {"-Q", "--queues", "-X", "--exclude-queues"} & set(args), args
    assert not any(a.startswith(("--queues=", "-Q")) for a in args), args
    # one process per rate-limited node (README, "The request budget")
    assert args[args.index("-c") + 1] == "1"


def test_celeryconfig_queues_are_the_priority_order():
    import celeryconfig

    queues = [q.name for q in celeryconfig.task_queues]
    assert queues == queue_order()
    assert queues[:6] == [
        "backfill.control",
        "backfill.live.5m",
        "backfill.live.15m",
        "backfill.live.1h",
        "backfill.live.4h",
        "backfill.live.1d",
    ]
    assert queues.index("backfill.live.6h") < queues.index("backfill.5m")  # live first
    assert celeryconfig.task_default_queue == queues[0]  # no extra queue of Celery's own
    # BRPOP in this order, not round robin: the order is the priority
    assert celeryconfig.broker_transport_options["queue_order_strategy"] == "priority"


def test_dockerfile_default_command_is_the_same_worker(services):
    cmd = re.search(r"^CMD\s+(\[.*?\])\s*$", DOCKERFILE.read_text().replace("\\\n", " "), re.M)
    assert cmd, "Dockerfile has no exec-form CMD"
    args = yaml.safe_load(cmd.group(1))
    assert args == argv(services["worker"]["command"])


def test_local_workers_and_the_readme_start_the_plain_worker():
    from backfill.local import WorkerProcess

    args = WorkerProcess({}).args
    assert args[args.index("backfill") + 1] == "worker" and "-Q" not in args
    assert "-Q" in WorkerProcess({}, queues=["backfill.5m"]).args  # a test's partial worker
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"celery -A backfill worker[^\n`|]*", readme)
    assert commands, "README starts no worker"
    for command in commands:
        assert "-Q" not in command.split() and "--queues" not in command, command


def test_worker_healthcheck_pings_its_own_node(services):
    check = healthcheck_cmd(services["worker"])
    assert "inspect ping" in check and "-d celery@$$HOSTNAME" in check, check


@pytest.mark.parametrize("name", ["worker", "dispatch"])
def test_key_users_get_env_file_and_read_only_key_mount(services, name):
    # the workers sign requests; dispatch parses the key (fails early on a corrupt one)
    # and names the fleet budget after it: both need COINBASE_API_KEY_FILE to exist
    service = services[name]
    assert ".env" in env_files(service)
    assert not any(k.startswith("COINBASE_API_") for k in env_of(service))
    mounts = key_mounts(service)
    assert len(mounts) == 1, mounts
    mount = mounts[0]
    assert isinstance(mount, dict) and mount["target"] == KEY_TARGET
    assert mount.get("read_only") is True
    for v in service.get("volumes", []):
        if isinstance(v, str):
            assert v.endswith(":ro"), f"writable mount {v}"


@pytest.mark.parametrize("name", ["redis", "beat", "flower", "indicator", "sim"])
def test_the_key_goes_nowhere_else(services, name):
    service = services[name]
    assert not key_mounts(service), name
    assert not [v for v in service.get("volumes") or [] if "secrets" in str(v)], name
    if ".env" in env_files(service):  # .env may hold the key pair: blank it here
        env = env_of(service)
        for var in ("COINBASE_API_KEY_FILE", "COINBASE_API_KEY_NAME", "COINBASE_API_PRIVATE_KEY"):
            assert env.get(var) == "", (name, var)


def test_start_order(services):
    # README, "The stack": what each service waits for. "healthy" means service_healthy.
    assert depends(services["worker"])["redis"]["condition"] == "service_healthy"
    assert depends(services["beat"])["redis"]["condition"] == "service_healthy"
    assert depends(services["flower"])["redis"]["condition"] == "service_healthy"
    dispatch = depends(services["dispatch"])
    assert dispatch["worker"]["condition"] == "service_healthy"
    assert dispatch["redis"]["condition"] == "service_healthy"
    indicator = depends(services["indicator"])
    assert indicator["dispatch"]["condition"] == "service_completed_successfully"
    assert indicator["worker"]["condition"] == "service_healthy"
    assert indicator["redis"]["condition"] == "service_healthy"
    # every service waited on as healthy has a healthcheck of its own
    for name, service in services.items():
        for dep, spec in depends(service).items():
            if spec.get("condition") == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (name, dep)
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


def test_beat_is_one_scheduler_with_a_writable_schedule(services):
    beat = services["beat"]
    args = argv(beat["command"])
    assert args[:4] == ["celery", "-A", "backfill", "beat"]
    flag = "-s" if "-s" in args else "--schedule"
    assert args[args.index(flag) + 1].startswith("/tmp/")  # the image's user can write there
    assert ".env" in env_files(beat)  # the run's settings, like the workers
    assert "container_name" not in beat and not beat.get("ports")
    assert str((beat.get("deploy") or {}).get("replicas", 1)) == "1"  # one beat, never more
    # the image's healthcheck pings a worker node; beat has none
    assert beat["healthcheck"].get("disable") is True
    assert beat["restart"] == "unless-stopped"


def test_sim_is_in_a_profile(services):
    sim = services["sim"]
    assert sim["profiles"] == ["sim"]
    args = argv(sim["command"])
    assert args[:2] == ["backfill", "sim"]
    assert args[args.index("--port") + 1] == "8123" and args[args.index("--host") + 1] == "0.0.0.0"
    assert not env_files(sim) and not sim.get("volumes")  # no keys in the simulator
    assert all("profiles" not in s for n, s in services.items() if not n.startswith("sim"))
    binance = services["sim-binance"]
    assert binance["profiles"] == ["sim"] and not env_files(binance)
    args = argv(binance["command"])
    assert args[args.index("--exchange") + 1] == "binance" and "--port" in args


def test_no_inline_secrets(services):
    pem = re.compile(r"-----BEGIN|PRIVATE KEY|organizations/.+/apiKeys/")
    for name, service in services.items():
        for key, value in env_of(service).items():
            assert not pem.search(value), f"{name}.{key} holds key material"
            if SECRET_NAME.search(key) and value != "":  # "" blanks a key: not a secret
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
    # every package the install finds (pyproject's packages.find), or the image cannot import
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = [p.rstrip("*") + "/" for p in packages["packages"]["find"]["include"]]
    assert "core/" in found
    for part in ("celeryconfig.py", "pyproject.toml", *found):
        assert re.search(rf"^COPY .*{re.escape(part)}", text, re.M), part
    assert not re.search(r"^COPY \.\s", text, re.M) or (ROOT / ".dockerignore").exists()


def test_dockerfile_needs_no_registry_but_its_base_image():
    text = DOCKERFILE.read_text()
    # `# syntax=` makes BuildKit fetch a frontend image: offline builds fail on it
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert len(re.findall(r"^FROM\s", text, re.M)) == 1
    assert not re.search(r"^(COPY|ADD)\s+--from=", text, re.M)
    assert not re.search(r"^ADD\s+https?://", text, re.M)


def test_deployment_files_point_to_docs_that_exist():
    for path in (DOCKERFILE, COMPOSE, ROOT / ".env.example"):
        for ref in re.findall(r"\b([\w./-]+\.md)\b", path.read_text()):
            assert (ROOT / ref).exists(), f"{path.name} points to {ref}, which does not exist"
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^## Operations$", readme, re.M)


def test_smoke_script_is_there_and_executable():
    smoke = ROOT / "scripts" / "compose-smoke"
    assert smoke.exists() and os.access(smoke, os.X_OK)


def test_dockerignore_keeps_secrets_out_of_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", ".git", "secrets/", "*.pem"):
        assert pattern in lines, pattern
    assert "!.env.example" in lines or ".env.*" not in lines
