"""deploy/docker-compose.yml describes the same stack as the local one (deploy/local/stack.sh).

Static checks only, no container engine: the services and their commands, their ports, the
DUETIME_* variables the settings classes read, the host ports, the broker configuration, the
gateway's routing, key check, limits and error bodies (deploy/compose/nginx.conf against
deploy/local/nginx.conf.template), and what the command executor's sandbox needs (ADR 0041).
"""

from __future__ import annotations

import difflib
import importlib
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic_settings import BaseSettings

from duetime import settings as shared
from duetime.api_keys import hash_key, read_keys
from duetime.cli import MODULES, OPTIONAL_SERVICES, SERVICES
from duetime.development_secrets import PUBLISHED_API_KEYS
from duetime.objects.settings import ObjectStoreSettings
from executor.command.sandbox import SandboxSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
STACK_SH = DEPLOY / "local" / "stack.sh"
LOCAL_NGINX = DEPLOY / "local" / "nginx.conf.template"
COMPOSE_NGINX = DEPLOY / "compose" / "nginx.conf"
COMPOSE_KEYS = DEPLOY / "compose" / "api_keys.conf"
GATEWAY_JS = DEPLOY / "local" / "gateway.js"

# The one-shot steps `stack.sh up` runs before the services, and the settings each one reads.
ONE_SHOT: dict[str, type[BaseSettings]] = {
    "migrate": shared.PostgresSettings,
    "topics": shared.KafkaSettings,
}
# Every service compose runs, the optional ones (off unless enabled, like in the local stack) too.
ALL_SERVICES = (*SERVICES, *OPTIONAL_SERVICES)
# Settings classes a service reads besides its own Settings (each has its own env prefix).
EXTRA_SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "job_service": (ObjectStoreSettings,),
    "search_service": (ObjectStoreSettings,),
    "command_executor": (SandboxSettings, ObjectStoreSettings),
}
# What the command executor's container is granted to build its sandboxes, and nothing more
# (ADR 0041): start each run as its uid, give it its directory, kill what the uid left behind.
SANDBOX_CAPABILITIES = {"SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "KILL"}
# Docker's defaults that refuse what bubblewrap does unprivileged: a user namespace, its mounts,
# a fresh /proc (ADR 0041).
SANDBOX_SECURITY_OPTS = {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined",
                         "no-new-privileges:true"}
# The image's own service user (deploy/Dockerfile): no sandbox uid may be it.
IMAGE_UID = 10001
# Settings whose defaults point at 127.0.0.1, which inside a container is the container itself:
# compose must set every one a container reads.
CONNECTION_FIELDS = ("kafka_bootstrap", "postgres_dsn", "redis_url")
# Broker properties that name hosts, paths or listeners: compose sets them, to container values
# (and adds a HOST listener for clients outside the compose network).
KAFKA_LOCAL_ONLY = {"listeners", "advertised.listeners", "listener.security.protocol.map",
                    "controller.quorum.voters", "log.dirs"}
# Broker properties that carry a password: compose sets them from its own variables.
KAFKA_SECRET_SUFFIX = ".sasl.jaas.config"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _report(title: str, problems: list[str]) -> str:
    return f"{title}:\n  - " + "\n  - ".join(problems)


# ---- compose ------------------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), f"{_rel(COMPOSE)} is not a mapping"
    assert isinstance(data.get("services"), dict), f"{_rel(COMPOSE)} has no services"
    return data


def _service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    assert name in services, f"{_rel(COMPOSE)} has no service {name!r} (it has: {', '.join(services)})"
    svc = services[name]
    assert isinstance(svc, dict), f"{_rel(COMPOSE)}: service {name!r} is not a mapping"
    return svc


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _env(name: str) -> dict[str, str]:
    raw = _service(name).get("environment") or {}
    if isinstance(raw, list):
        return {key: value for key, _, value in (str(item).partition("=") for item in raw)}
    return {str(key): _scalar(value) for key, value in raw.items()}


def _published(name: str) -> dict[int, int]:
    """Container port -> host port, for the ports the service publishes on a fixed host port."""
    out: dict[int, int] = {}
    for entry in _service(name).get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                out[int(entry["target"])] = int(str(entry["published"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            out[int(parts[-1])] = int(parts[-2])
    return out


def _healthcheck(name: str) -> str:
    test = (_service(name).get("healthcheck") or {}).get("test") or []
    return " ".join(str(part) for part in test) if isinstance(test, list) else str(test)


def _duetime_containers() -> list[str]:
    return [*ALL_SERVICES, *ONE_SHOT]


# ---- stack.sh and the settings classes ------------------------------------------------------


def _stack_default(var: str) -> int:
    match = re.search(r"\$\{" + re.escape(var) + r":-(\d+)\}", STACK_SH.read_text())
    assert match, f"{_rel(STACK_SH)} no longer has a default for {var} (expected ${{{var}:-<port>}})"
    return int(match.group(1))


def _kafka_properties() -> dict[str, str]:
    match = re.search(r'server\.properties" <<EOF\n(.*?)\nEOF', STACK_SH.read_text(), re.S)
    assert match, f"{_rel(STACK_SH)}: cannot find the server.properties heredoc (write_kafka_properties)"
    lines = (line.strip() for line in match.group(1).splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _service_settings(name: str) -> type[BaseSettings]:
    cls = importlib.import_module(MODULES.get(name, f"{name}.service")).Settings
    assert isinstance(cls, type) and issubclass(cls, BaseSettings), f"{name}.service.Settings"
    return cls


def _env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (case-insensitively)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or f"{prefix}{field_name}").upper())
    return names


def _all_settings() -> list[type[BaseSettings]]:
    fragments = [obj for obj in vars(shared).values()
                 if isinstance(obj, type) and issubclass(obj, BaseSettings)
                 and obj.__module__ == shared.__name__]
    extra = [cls for classes in EXTRA_SETTINGS.values() for cls in classes]
    return fragments + [_service_settings(name) for name in ALL_SERVICES] + extra


def _container_settings() -> dict[str, type[BaseSettings]]:
    return {**{name: _service_settings(name) for name in ALL_SERVICES}, **ONE_SHOT}


def _default_port(url: str) -> int | None:
    return urlsplit(url if "://" in url else f"//{url}").port


# ---- nginx ----------------------------------------------------------------------------------


def _nginx(path: Path) -> str:
    """The config without its full-line comments."""
    return re.sub(r"(?m)^\s*#.*$", "", path.read_text())


def _maps(text: str) -> dict[tuple[str, str], dict[str, str]]:
    maps = {}
    for match in re.finditer(r"\bmap\s+(\S+)\s+(\S+)\s*\{(.*?)\}", text, re.S):
        entries = [shlex.split(stmt) for stmt in match.group(3).split(";") if stmt.strip()]
        maps[(match.group(1), match.group(2))] = {e[0]: e[1] for e in entries if len(e) == 2}
    return maps


def _upstreams(text: str) -> dict[str, list[str]]:
    return {match.group(1): re.findall(r"(?m)^\s*server\s+([^\s;]+)", match.group(2))
            for match in re.finditer(r"\bupstream\s+(\S+)\s*\{(.*?)\}", text, re.S)}


def _server_block(text: str) -> list[str]:
    """The lines of the server block, without `listen` (the one line that must differ)."""
    match = re.search(r"(?m)^\s*server\s*\{", text)
    assert match, "no server block"
    lines = (line.strip() for line in text[match.start():].splitlines())
    return [line for line in lines if line and not line.startswith("listen ")]


def _directives(text: str, *names: str) -> list[str]:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return sorted(line for line in lines if line.split(" ", 1)[0] in names)


def _volumes(name: str) -> dict[Path, str]:
    """Mounted host path (resolved against deploy/) -> path in the container."""
    out: dict[Path, str] = {}
    for entry in _service(name).get("volumes") or []:
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry.get("target", ""))
        else:
            source, _, rest = str(entry).partition(":")
            target = rest.split(":", 1)[0]
        if source.startswith("."):
            out[(DEPLOY / source).resolve()] = target
    return out


# ---- tests ----------------------------------------------------------------------------------


def test_every_cli_service_runs_in_compose() -> None:
    services: dict[str, Any] = _compose()["services"]
    expected = {**{name: ["run", name] for name in ALL_SERVICES},
                **{name: [name] for name in ONE_SHOT}}
    problems = []
    for name, command in expected.items():
        if name not in services:
            problems.append(f"{name}: missing from {_rel(COMPOSE)} (expected command {command})")
        elif services[name].get("command") != command:
            problems.append(f"{name}: command is {services[name].get('command')!r}, expected {command!r}")
    for name, svc in services.items():
        command = svc.get("command")
        if isinstance(command, list) and command[:1] == ["run"] and name not in ALL_SERVICES:
            problems.append(f"{name}: runs {command!r} but is not in duetime.cli's services "
                            f"{ALL_SERVICES}")
    assert not problems, _report("compose services disagree with duetime.cli", problems)


def test_duetime_containers_run_the_image_from_deploy_dockerfile() -> None:
    problems = []
    images = {name: _service(name).get("image") for name in _duetime_containers()}
    if len(set(images.values())) != 1:
        problems.append(f"the duetime containers should share one image, got {images}")
    for name in _duetime_containers():
        build = _service(name).get("build") or {}
        context = (DEPLOY / str(build.get("context", "."))).resolve()
        dockerfile = (context / str(build.get("dockerfile", "Dockerfile"))).resolve()
        if (context, dockerfile) != (REPO, DOCKERFILE):
            problems.append(f"{name}: builds {dockerfile} in context {context}, "
                            f"expected {_rel(DOCKERFILE)} in the repository root")
    dockerfile_text = DOCKERFILE.read_text()
    if 'ENTRYPOINT ["python", "-m", "duetime"]' not in dockerfile_text:
        problems.append(f'{_rel(DOCKERFILE)}: ENTRYPOINT is not ["python", "-m", "duetime"]')
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for pattern in packages["find"]["include"]:
        package = pattern.rstrip("*")
        if not re.search(rf"(?m)^COPY {re.escape(package)} ", dockerfile_text):
            problems.append(f"{_rel(DOCKERFILE)} does not COPY package {package!r} (pyproject.toml has it)")
    assert not problems, _report("the duetime image", problems)


def _readyz_problem(name: str, port: int) -> str | None:
    check = _healthcheck(name)
    if "/readyz" in check and (str(port) in check or "DUETIME_HTTP_PORT" in check):
        return None
    return f"{name}: healthcheck {check!r} does not GET /readyz on its port {port}"


def test_service_ports_match_settings_and_stack_sh() -> None:
    problems = []
    for name in ALL_SERVICES:
        default = _service_settings(name).model_fields["http_port"].default
        local = _stack_default(f"DUETIME_{name.upper()}_PORT")
        env = _env(name)
        if default != local:
            problems.append(f"{name}: {name}.service.Settings http_port default {default} "
                            f"!= {local} in {_rel(STACK_SH)}")
        if env.get("DUETIME_HTTP_PORT") != str(default):
            problems.append(f"{name}: DUETIME_HTTP_PORT={env.get('DUETIME_HTTP_PORT')!r} in compose, "
                            f"expected {default} (Settings default)")
        if env.get("DUETIME_HTTP_HOST") != "0.0.0.0":
            problems.append(f"{name}: DUETIME_HTTP_HOST={env.get('DUETIME_HTTP_HOST')!r}, expected "
                            "'0.0.0.0' (the default 127.0.0.1 is unreachable from other containers)")
        if _published(name).get(default) != local:
            problems.append(f"{name}: publishes {_published(name)} (container->host), "
                            f"expected {default}->{local} as in the local stack")
        problem = _readyz_problem(name, default)
        if problem:
            problems.append(problem)
    assert not problems, _report("service ports disagree", problems)


def test_duetime_env_vars_are_the_ones_the_settings_read() -> None:
    known = set().union(*(_env_names(cls) for cls in _all_settings()))
    problems = []
    for name, cls in _container_settings().items():
        env = {key.upper() for key in _env(name)}
        for var in sorted(env):
            if var.startswith("DUETIME_") and var not in known:
                close = difflib.get_close_matches(var, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"{name}: {var} is read by no settings class{hint}")
        needed = [f for f in CONNECTION_FIELDS if f in cls.model_fields]
        if name in ALL_SERVICES:
            needed += ["http_host", "http_port"]
        for field in needed:
            var = f"DUETIME_{field.upper()}"
            if var not in env:
                problems.append(f"{name}: {var} not set, so {cls.__module__}.{cls.__qualname__}.{field} "
                                f"keeps its local default {cls.model_fields[field].default!r}")
    assert not problems, _report("DUETIME_* variables in compose disagree with the settings", problems)


def _kafka_bootstrap_problems(name: str, value: str) -> list[str]:
    advertised = _env("kafka").get("KAFKA_ADVERTISED_LISTENERS", "")
    endpoints = {listener.split("://", 1)[-1] for listener in advertised.split(",")}
    problems = []
    for server in value.split(","):
        if server.rsplit(":", 1)[0] not in _compose()["services"]:
            problems.append(f"{name}: DUETIME_KAFKA_BOOTSTRAP {server!r} is not a compose service")
        elif server not in endpoints:
            problems.append(f"{name}: DUETIME_KAFKA_BOOTSTRAP {server!r} is not an advertised kafka "
                            f"listener ({sorted(endpoints)})")
    return problems


def _url_problems(name: str, var: str, value: str, local_default: str) -> list[str]:
    url, local = urlsplit(value), urlsplit(local_default)
    host = url.hostname or ""
    if host not in _compose()["services"]:
        return [f"{name}: {var} host {host!r} is not a compose service"]
    problems = []
    if url.port not in _published(host):
        problems.append(f"{name}: {var} port {url.port} is not the port {host} publishes "
                        f"({sorted(_published(host))})")
    if url.path != local.path:
        problems.append(f"{name}: {var} path {url.path!r} differs from the local default "
                        f"{local_default!r}")
    if not (url.username and url.password):
        problems.append(f"{name}: {var} carries no user and password (ADR 0015: Postgres and "
                        "Redis authenticate every client)")
    return problems


def test_connection_settings_point_at_the_compose_services() -> None:
    problems = []
    for name in _duetime_containers():
        env = _env(name)
        if "DUETIME_KAFKA_BOOTSTRAP" in env:
            problems += _kafka_bootstrap_problems(name, env["DUETIME_KAFKA_BOOTSTRAP"])
        if "DUETIME_POSTGRES_DSN" in env:
            problems += _url_problems(name, "DUETIME_POSTGRES_DSN", env["DUETIME_POSTGRES_DSN"],
                                      shared.PostgresSettings.model_fields["postgres_dsn"].default)
        if "DUETIME_REDIS_URL" in env:
            problems += _url_problems(name, "DUETIME_REDIS_URL", env["DUETIME_REDIS_URL"],
                                      shared.RedisSettings.model_fields["redis_url"].default)
    postgres = _env("postgres")
    if (postgres.get("POSTGRES_DB"), postgres.get("POSTGRES_USER")) != ("duetime", "duetime"):
        problems.append(f"postgres: POSTGRES_DB/POSTGRES_USER are {postgres.get('POSTGRES_DB')!r}/"
                        f"{postgres.get('POSTGRES_USER')!r}, expected duetime/duetime")
    if postgres.get("POSTGRES_HOST_AUTH_METHOD") != "scram-sha-256" or \
            not postgres.get("POSTGRES_PASSWORD"):
        problems.append("postgres: POSTGRES_HOST_AUTH_METHOD is not scram-sha-256 with a "
                        "POSTGRES_PASSWORD (the DSNs carry the password)")
    assert not problems, _report("connection settings do not reach the compose services", problems)


def test_infra_and_gateway_host_ports_match_the_local_stack() -> None:
    settings_ports = {
        "kafka": _default_port(shared.KafkaSettings.model_fields["kafka_bootstrap"].default),
        "postgres": _default_port(shared.PostgresSettings.model_fields["postgres_dsn"].default),
        "redis": _default_port(shared.RedisSettings.model_fields["redis_url"].default),
    }
    problems = []
    for name in ("kafka", "postgres", "redis", "gateway"):
        local = _stack_default(f"DUETIME_{name.upper()}_PORT")
        if local not in _published(name).values():
            problems.append(f"{name}: host ports {sorted(_published(name).values())} in compose, "
                            f"expected {local} as in {_rel(STACK_SH)}")
        if name in settings_ports and settings_ports[name] != local:
            problems.append(f"{name}: the settings default port {settings_ports[name]} != {local} in "
                            f"{_rel(STACK_SH)}")
    kafka_port = _stack_default("DUETIME_KAFKA_PORT")
    advertised = _env("kafka").get("KAFKA_ADVERTISED_LISTENERS", "")
    if f"127.0.0.1:{kafka_port}" not in advertised and f"localhost:{kafka_port}" not in advertised:
        problems.append(f"kafka: no listener advertised as 127.0.0.1:{kafka_port} for clients on the "
                        f"host (KAFKA_ADVERTISED_LISTENERS={advertised!r})")
    assert not problems, _report("host ports disagree with the local stack", problems)


def _kafka_env_name(prop: str) -> str:
    # The apache/kafka image's rule: '_' -> '__', '.' -> '_', '-' -> '___', prefix KAFKA_.
    return "KAFKA_" + prop.replace("_", "__").replace(".", "_").replace("-", "___").upper()


def test_kafka_broker_config_matches_the_local_stack() -> None:
    env = _env("kafka")
    problems = []
    for prop, value in _kafka_properties().items():
        var = _kafka_env_name(prop)
        if var not in env:
            problems.append(f"kafka: {var} not set ({prop}={value} in {_rel(STACK_SH)})")
        elif prop.endswith(KAFKA_SECRET_SUFFIX):
            login = value.split(" required", 1)[0]
            if not env[var].startswith(login):
                problems.append(f"kafka: {var} does not use {login} ({prop} in {_rel(STACK_SH)})")
        elif prop not in KAFKA_LOCAL_ONLY and env[var] != value:
            problems.append(f"kafka: {var}={env[var]!r}, expected {value!r} ({prop} in {_rel(STACK_SH)})")
    assert not problems, _report("the broker configuration disagrees with the local stack", problems)


def test_gateway_routes_reads_to_search_service_and_writes_to_job_service() -> None:
    text = _nginx(COMPOSE_NGINX)
    problems = []
    routing = _maps(text).get(("$request_method", "$duetime_backend"))
    expected = {"GET": "search_service", "HEAD": "search_service", "default": "job_service"}
    if routing != expected:
        problems.append(f"map $request_method $duetime_backend is {routing}, expected {expected}")
    if "proxy_pass http://$duetime_backend;" not in text:
        problems.append("location / does not proxy_pass http://$duetime_backend")
    upstreams = _upstreams(text)
    for name in ("job_service", "search_service"):
        want = f"{name}:{_env(name).get('DUETIME_HTTP_PORT')}"
        if upstreams.get(name) != [want]:
            problems.append(f"upstream {name} servers are {upstreams.get(name)}, expected [{want!r}] "
                            "(the compose service and its DUETIME_HTTP_PORT)")
    listen = re.search(r"(?m)^\s*listen\s+(?:\S+:)?(\d+)", text)
    gateway_port = _stack_default("DUETIME_GATEWAY_PORT")
    if listen is None or _published("gateway").get(int(listen.group(1))) != gateway_port:
        problems.append(f"nginx listens on {listen and listen.group(1)}, but compose publishes "
                        f"{_published('gateway')} (container->host); expected ->{gateway_port}")
    mounts = _volumes("gateway")
    if mounts.get(COMPOSE_NGINX) != "/etc/nginx/nginx.conf":
        problems.append(f"gateway does not mount {_rel(COMPOSE_NGINX)} at /etc/nginx/nginx.conf ({mounts})")
    keys_target = mounts.get(COMPOSE_KEYS)
    if keys_target is None or text.count(f"include {keys_target};") != 3:
        problems.append(f"gateway mounts {_rel(COMPOSE_KEYS)} at {keys_target!r}, which nginx.conf "
                        "does not include in all three key maps (header, bearer, dashboard cookie)")
    script_target = mounts.get(GATEWAY_JS)
    if script_target is None or f"js_import gateway from {script_target};" not in text:
        problems.append(f"gateway mounts {_rel(GATEWAY_JS)} at {script_target!r}, which nginx.conf "
                        "does not js_import")
    assert not problems, _report(f"{_rel(COMPOSE_NGINX)} routing", problems)


def test_gateway_keeps_the_local_key_check_limits_and_error_bodies() -> None:
    local, compose = _nginx(LOCAL_NGINX), _nginx(COMPOSE_NGINX)
    problems = []
    if _server_block(local) != _server_block(compose):
        diff = difflib.unified_diff(_server_block(local), _server_block(compose), _rel(LOCAL_NGINX),
                                    _rel(COMPOSE_NGINX), lineterm="")
        problems.append("server blocks differ (other than listen):\n" + "\n".join(diff))
    limits = ("limit_req_zone", "limit_req_status", "client_max_body_size", "map_hash_bucket_size",
              "js_set", "env")
    if _directives(local, *limits) != _directives(compose, *limits):
        problems.append(f"limits differ: {_directives(local, *limits)} != {_directives(compose, *limits)}")
    for key in (("$duetime_tenant_from_key", "$tenant"), ("$request_method", "$duetime_backend"),
                ("$duetime_key_hash", "$duetime_tenant_from_key"),
                ("$duetime_bearer_hash", "$duetime_tenant_from_bearer")):
        # The keys file's path differs (a mount in compose); what the map does may not.
        want, got = ({k: v for k, v in (maps.get(key) or {}).items() if k != "include"}
                     for maps in (_maps(local), _maps(compose)))
        if want != got:
            problems.append(f"map {' '.join(key)} differs: {want} (local) != {got} (compose)")
    assert not problems, _report(f"{_rel(COMPOSE_NGINX)} drifted from {_rel(LOCAL_NGINX)}", problems)


def test_compose_api_keys_are_hashes_of_the_published_development_keys() -> None:
    text = COMPOSE_KEYS.read_text()
    records = read_keys(COMPOSE_KEYS)
    published = {hash_key(key): key for key in PUBLISHED_API_KEYS}
    problems = []
    if not records:
        problems.append("no API key")
    for record in records:
        if record.sha256 not in published:
            problems.append(f"key {record.key_id}: not the hash of a published development key, so "
                            "the services would not know to refuse it outside DUETIME_ENV=dev")
        elif published[record.sha256] in text.split('"'):
            problems.append(f"key {record.key_id}: the plaintext key is a map entry")
    if not re.search(r"(?i)development", text) or not re.search(r"(?i)replace", text):
        problems.append("the file must say that its keys are for development only and must be replaced")
    assert not problems, _report(_rel(COMPOSE_KEYS), problems)


def test_gateway_and_api_services_share_the_gateway_secret() -> None:
    problems = []
    secret = _env("gateway").get("DUETIME_GATEWAY_SECRET")
    if not secret:
        problems.append("gateway: DUETIME_GATEWAY_SECRET not set (gateway.js signs with it)")
    for name in ("job_service", "search_service"):
        env = _env(name)
        if env.get("DUETIME_GATEWAY_SECRET") != secret:
            problems.append(f"{name}: DUETIME_GATEWAY_SECRET {env.get('DUETIME_GATEWAY_SECRET')!r} "
                            f"!= the gateway's {secret!r}")
        if _volumes(name).get(COMPOSE_KEYS) != env.get("DUETIME_API_KEYS_FILE"):
            problems.append(f"{name}: DUETIME_API_KEYS_FILE is not where {_rel(COMPOSE_KEYS)} is mounted")
        if "production" not in str(env.get("DUETIME_ENV")):
            problems.append(f"{name}: DUETIME_ENV must default to production (the published keys "
                            f"and secrets then refuse to start), not {env.get('DUETIME_ENV')!r}")
    assert not problems, _report("gateway secret and keys in compose", problems)


# ---- redis ----------------------------------------------------------------------------------

# Persistence and memory flags; with noeviction a full Redis refuses writes instead of evicting a
# due-set key, which would lose a firing (ADR 0013).
REDIS_FLAGS = ("appendonly", "appendfsync", "save", "maxmemory", "maxmemory-policy")


def _redis_flags(words: list[str], defaults: dict[str, str]) -> dict[str, str]:
    flags = {}
    for i, word in enumerate(words[:-1]):
        if word.startswith("--") and word[2:] in REDIS_FLAGS:
            value = words[i + 1]
            flags[word[2:]] = defaults.get(value, value)
    return flags


def test_redis_persistence_and_memory_limit_match_the_local_stack() -> None:
    text = STACK_SH.read_text()
    started = re.search(r"nohup redis-server (.*?)>>", text, re.S)
    default = re.search(r'REDIS_MAXMEMORY="\$\{DUETIME_REDIS_MAXMEMORY:-([^}]+)\}"', text)
    assert started and default, f"{_rel(STACK_SH)}: cannot find how redis-server is started"
    local = _redis_flags(shlex.split(started.group(1).replace("\\\n", " ")),
                         {"$REDIS_MAXMEMORY": default.group(1)})
    command = _service("redis").get("command") or []
    compose = _redis_flags([str(word) for word in command],
                           {f"${{DUETIME_REDIS_MAXMEMORY:-{default.group(1)}}}": default.group(1)})
    assert local == compose, f"redis flags differ: {_rel(STACK_SH)} {local}, {_rel(COMPOSE)} {compose}"
    assert local.get("maxmemory-policy") == "noeviction" and local.get("maxmemory"), local


# ---- the command executor -------------------------------------------------------------------


def _sandbox_uids(env: dict[str, str]) -> range:
    first = int(env.get("DUETIME_SANDBOX_FIRST_UID", SandboxSettings.model_fields["first_uid"].default))
    slots = int(env.get("DUETIME_SANDBOX_SLOTS", SandboxSettings.model_fields["slots"].default))
    return range(first, first + slots)


def test_command_executor_gets_what_its_sandbox_needs_and_no_more() -> None:
    svc, env = _service("command_executor"), _env("command_executor")
    problems = []
    if svc.get("profiles") != ["commands"]:
        problems.append(f"profiles {svc.get('profiles')!r}, expected ['commands']: off unless "
                        "enabled, as DUETIME_COMMAND_EXECUTOR=1 does for the local stack")
    if str(svc.get("user")).split(":")[0] != "0":
        problems.append(f"user {svc.get('user')!r}: runs as root, to start each run as its own uid")
    if svc.get("cap_drop") != ["ALL"] or set(svc.get("cap_add") or []) != SANDBOX_CAPABILITIES:
        problems.append(f"capabilities drop {svc.get('cap_drop')} add {svc.get('cap_add')}, "
                        f"expected drop ALL, add {sorted(SANDBOX_CAPABILITIES)}")
    if set(svc.get("security_opt") or []) != SANDBOX_SECURITY_OPTS:
        problems.append(f"security_opt {svc.get('security_opt')}, expected {sorted(SANDBOX_SECURITY_OPTS)}")
    for key in ("privileged", "pid", "ipc", "network_mode", "userns_mode", "devices"):
        if key in svc:
            problems.append(f"{key}: {svc[key]!r} — the sandbox needs none of the host's")
    uids = _sandbox_uids(env)
    # Inside the 65,536 uids a userns-remap or rootless Docker maps, and none the image uses.
    if uids.start < 1000 or uids.stop > 65534 or IMAGE_UID in uids:
        problems.append(f"sandbox uids {uids.start}..{uids.stop - 1}: must lie in 1000..65533 "
                        f"and leave out the image's uid {IMAGE_UID}")
    assert not problems, _report("command_executor in compose", problems)


def _named_volume(name: str, target: str) -> str | None:
    for entry in _service(name).get("volumes") or []:
        source, _, rest = str(entry).partition(":")
        if rest.split(":", 1)[0] == target and not source.startswith("."):
            return source
    return None


def test_object_store_is_one_volume_for_its_writers_and_readers() -> None:
    # The command executor writes output and reads sources, the job service writes sources, the
    # search service serves both: a store of each container's own would lose them (ADR 0027).
    problems = []
    volumes = {}
    for name in ("job_service", "search_service", "command_executor"):
        root = _env(name).get("DUETIME_OBJECTS_ROOT")
        if not root:
            problems.append(f"{name}: DUETIME_OBJECTS_ROOT not set")
            continue
        volumes[name] = _named_volume(name, root)
    if len(set(volumes.values())) != 1 or None in volumes.values():
        problems.append(f"DUETIME_OBJECTS_ROOT is on the named volumes {volumes}, expected one")
    elif next(iter(volumes.values())) not in _compose().get("volumes", {}):
        problems.append(f"volume {volumes} is not declared")
    assert not problems, _report("the object store in compose", problems)


def test_the_image_has_bubblewrap_and_the_relays_python() -> None:
    text = DOCKERFILE.read_text()
    runtime = text.rsplit("\nFROM ", 1)[-1]  # the last stage is the image that runs
    problems = []
    if not re.search(r"apt-get install [^\n]*\bbubblewrap\b", runtime):
        problems.append("the runtime stage does not apt-get install bubblewrap (ADR 0026)")
    # ADR 0038: `network: true` runs start their relay with /usr/bin/python3.
    if "/usr/bin/python3" not in runtime:
        problems.append("the runtime stage provides no /usr/bin/python3 for the egress relay")
    port = str(_service_settings("command_executor").model_fields["http_port"].default)
    if not re.search(rf"(?m)^EXPOSE .*\b{port}\b", runtime):
        problems.append(f"the command executor's port {port} is not EXPOSEd")
    assert not problems, _report(_rel(DOCKERFILE), problems)
