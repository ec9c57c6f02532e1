"""deploy/k8s renders, validates and says what an operator needs (ADR 0030). No cluster.

Each overlay (and the base) is rendered by the kustomize `make setup` builds at a pinned version,
and every object is validated against the strict JSON schemas of a pinned Kubernetes version
that kubernetes-validate ships in its wheel. Then what the schemas cannot know: probes on the
port each service listens on, resources, PDBs, the security context (restricted for every pod
but the command executor's, which gets what its sandbox needs and no more: ADR 0041), the
executor HPA, no secret in the repository, every setting a service cannot run without, pinned
images, one object store, and a gateway configuration that is deploy/compose/nginx.conf but for
the lines a pod needs changed.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from duetime import settings as shared
from duetime.cli import MODULES, OPTIONAL_SERVICES, SANDBOXED, SERVICES
from duetime.lifecycle import Lifecycle
from duetime.objects.settings import ObjectStoreSettings
from executor.command.sandbox import SandboxSettings
from tests.unit.test_compose_images_pinned import floating
from tests.unit.test_compose_matches_local_stack import IMAGE_UID, SANDBOX_CAPABILITIES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The Kubernetes version the manifests are written for (deploy/k8s/README.md).
KUBERNETES_VERSION = "1.32.0"
PORTS = {"job_service": 18101, "search_service": 18102, "writer": 18103, "watcher": 18104,
         "dispatcher": 18105, "executor": 18106, "command_executor": 18107}
# Every service runs in both overlays, the optional command executor too (ADR 0041).
ALL_SERVICES = (*SERVICES, *OPTIONAL_SERVICES)
LOCKED_DOWN = tuple(s for s in ALL_SERVICES if s not in SANDBOXED)
# Settings classes a service reads besides its own Settings.
EXTRA_SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "job_service": (ObjectStoreSettings,),
    "search_service": (ObjectStoreSettings,),
    "command_executor": (SandboxSettings, ObjectStoreSettings),
}
# The services that share the object store: command output and sources (ADR 0027).
OBJECT_STORE_USERS = tuple(EXTRA_SETTINGS)
API_SERVICES = ("job_service", "search_service")
# The one-shot steps and the settings each reads (as in test_compose_matches_local_stack).
SETUP_STEPS: dict[str, tuple[type[BaseSettings], ...]] = {
    "migrate": (shared.PostgresSettings,),
    "topics": (shared.KafkaSettings, shared.IngressSettings),
}
# What executor.egress blocks and the executor's NetworkPolicy must block too (docs/security.md).
INTERNAL_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                   "127.0.0.0/8", "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128")


def _kustomize() -> list[str]:
    """The pinned kustomize `make setup` builds, else kubectl's own (the Makefile builds only
    where kubectl is missing)."""
    version = re.search(r"(?m)^KUSTOMIZE_VERSION := (\S+)$", (REPO / "Makefile").read_text())
    assert version, "Makefile has no KUSTOMIZE_VERSION"
    binary = REPO / ".venv" / f"kustomize-{version.group(1)}" / "kustomize"
    if binary.exists():
        return [str(binary), "build"]
    kubectl = shutil.which("kubectl")
    assert kubectl, f"{binary} is missing and there is no kubectl: run `make setup`"
    return [kubectl, "kustomize"]


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    path = K8S / ("base" if target == "base" else f"overlays/{target}")
    out = subprocess.run([*_kustomize(), str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, f"kustomize build {path}:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render(target) if o["kind"] == kind}


def component(svc: str) -> str:
    return svc.replace("_", "-")


def deployment(target: str, svc: str) -> dict[str, Any]:
    found = objects(target, "Deployment")
    name = f"duetime-{component(svc)}"
    assert name in found, f"{target}: no Deployment {name} (has {sorted(found)})"
    return found[name]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    result: dict[str, Any] = containers[0]
    return result


def environment(target: str, c: dict[str, Any]) -> dict[str, str | None]:
    """Variable -> value a container gets (None: from a Secret), envFrom ConfigMaps included."""
    env: dict[str, str | None] = {}
    configmaps = objects(target, "ConfigMap")
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names ConfigMap {name}, which is not rendered"
        env.update(configmaps[name].get("data", {}))
    for var in c.get("env", []):
        env[var["name"]] = var.get("value") if "valueFrom" not in var else None
    return env


# ---- schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["base", *OVERLAYS])
def test_every_rendered_object_is_valid_kubernetes(target: str) -> None:
    problems = []
    for obj in render(target):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_refuses_what_a_cluster_would() -> None:
    # The strict schema is what makes the test above worth having: a typo'd field fails.
    dep = deployment("prod", "writer")
    broken = yaml.safe_load(yaml.safe_dump(dep))
    container(broken)["livenessprobe"] = container(broken).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# ---- what every service needs ------------------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("svc", ALL_SERVICES)
def test_service_probes_its_own_port(target: str, svc: str) -> None:
    c = container(deployment(target, svc))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = environment(target, c)
    assert env.get("DUETIME_HTTP_PORT") == str(PORTS[svc]), f"{svc} listens elsewhere: {env}"
    assert env.get("DUETIME_HTTP_HOST") == "0.0.0.0", f"{svc}: kubelet probes the pod IP"
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        assert probe in c, f"{target} {svc}: no {probe}"
        get = c[probe]["httpGet"]
        port = ports.get(get["port"], get["port"])
        assert (get["path"], port) == (path, PORTS[svc]), f"{target} {svc} {probe}: {get}"
    # Readiness checks time out at 2 s each (Lifecycle.readiness): the probe must wait longer.
    assert c["readinessProbe"]["timeoutSeconds"] > 2
    # The services answer /healthz only once Kafka and Postgres are reached: the startup probe
    # gives them minutes, so liveness does not kill a service waiting for a broker.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("svc", [*LOCKED_DOWN, "gateway"])
def test_service_pod_is_locked_down(target: str, svc: str) -> None:
    dep = deployment(target, svc)
    security = container(dep)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] != 0


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("svc", [*ALL_SERVICES, "gateway"])
def test_service_has_resources_and_a_pdb(target: str, svc: str) -> None:
    dep = deployment(target, svc)
    c = container(dep)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{svc}: {kind}"
    pod = dep["spec"]["template"]["spec"]
    # Lifecycle lets workers finish for grace_seconds after SIGTERM; Kubernetes must wait longer
    # (plus a preStop pause, where there is one) before it kills.
    grace = inspect.signature(Lifecycle).parameters["grace_seconds"].default
    pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > grace + pause
    labels = dep["spec"]["selector"]["matchLabels"]
    pdbs = [p for p in objects(target, "PodDisruptionBudget").values()
            if p["spec"]["selector"]["matchLabels"] == labels]
    assert len(pdbs) == 1, f"{target} {svc}: {len(pdbs)} PodDisruptionBudgets"


@pytest.mark.parametrize("target", OVERLAYS)
def test_command_executor_gets_what_its_sandbox_needs_and_no_more(target: str) -> None:
    dep = deployment(target, "command_executor")
    pod, c = dep["spec"]["template"]["spec"], container(dep)
    security = c["securityContext"]
    # Root in the container, to start each run as a uid of its own — with these capabilities only.
    assert security["runAsUser"] == 0 and security["runAsNonRoot"] is False
    assert set(security["capabilities"]) == {"drop", "add"}
    assert security["capabilities"]["drop"] == ["ALL"]
    assert sorted(security["capabilities"]["add"]) == sorted(SANDBOX_CAPABILITIES)
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security.get("privileged") is not True
    # What bubblewrap needs from the runtime: no seccomp or AppArmor profile, an unmasked /proc;
    # Kubernetes allows Unmasked only in a pod user namespace, which also makes root nobody.
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert security["appArmorProfile"] == {"type": "Unconfined"}
    assert security["procMount"] == "Unmasked"
    assert pod["hostUsers"] is False
    for key in ("hostPID", "hostIPC", "hostNetwork", "shareProcessNamespace"):
        assert not pod.get(key), f"{target}: {key}"
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v]
    # The runs' uids lie inside the 65,536 the pod's user namespace maps, apart from the image's.
    env = environment(target, c)
    first = int(env.get("DUETIME_SANDBOX_FIRST_UID") or SandboxSettings.model_fields["first_uid"].default)
    slots = int(env.get("DUETIME_SANDBOX_SLOTS") or SandboxSettings.model_fields["slots"].default)
    uids = range(first, first + slots)
    assert uids.start >= 1000 and uids.stop <= 65534 and IMAGE_UID not in uids, uids
    # Its scratch directory is writable on a read-only root.
    scratch = env.get("DUETIME_SANDBOX_SCRATCH_DIR") or SandboxSettings.model_fields["scratch_dir"].default
    assert scratch in {m["mountPath"] for m in c["volumeMounts"]}
    # The namespace must admit it: the README says how, and keeps "restricted" as warn and audit.
    readme = (K8S / "README.md").read_text()
    assert "enforce=privileged" in readme and "warn=restricted" in readme


@pytest.mark.parametrize("target", OVERLAYS)
def test_object_store_is_shared_by_its_writers_and_readers(target: str) -> None:
    # Command output written by the command executor is served by the search service, sources
    # uploaded to the job service are read by the command executor: pods on different nodes
    # share only an S3 store (a filesystem one would be each pod's own).
    stores = set()
    for svc in OBJECT_STORE_USERS:
        env = environment(target, container(deployment(target, svc)))
        backend = env.get("DUETIME_OBJECTS_BACKEND")
        assert backend == "s3", f"{target} {svc}: DUETIME_OBJECTS_BACKEND={backend!r}"
        assert env.get("DUETIME_OBJECTS_ENDPOINT"), f"{target} {svc}: no DUETIME_OBJECTS_ENDPOINT"
        assert env.get("DUETIME_OBJECTS_ACCESS_KEY_ID", "") is None, f"{target} {svc}: key not from a Secret"
        stores.add((env["DUETIME_OBJECTS_ENDPOINT"], env.get("DUETIME_OBJECTS_BUCKET"),
                    env.get("DUETIME_OBJECTS_PREFIX")))
    assert len(stores) == 1, f"{target}: {stores}"


@pytest.mark.parametrize("target", OVERLAYS)
def test_executors_autoscale_and_spread(target: str) -> None:
    hpas = objects(target, "HorizontalPodAutoscaler")
    assert "duetime-executor" in hpas, f"{target}: no executor HPA"
    hpa = hpas["duetime-executor"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "duetime-executor"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["minReplicas"] >= (2 if target == "prod" else 1)
    executor = deployment(target, "executor")
    assert "replicas" not in executor["spec"], "the HPA owns the executor count"
    assert executor["spec"]["template"]["spec"]["topologySpreadConstraints"]


# ---- settings and secrets -----------------------------------------------------------------


def _must_set(settings: type[BaseSettings]) -> set[str]:
    """The DUETIME_* variables a process cannot run with unset in a cluster: required ones,
    secrets (their defaults are empty or published), the user beside each password, and any
    whose default is this machine's loopback (inside a pod, the pod itself)."""
    fields: dict[str, FieldInfo] = settings.model_fields
    names = {name for name, f in fields.items()
             if f.is_required() or f.repr is False or "127.0.0.1" in str(f.default)}
    names |= {n.replace("_password", "_username") for n in names if n.endswith("_password")}
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in names}


def _settings_of(step: str) -> tuple[type[BaseSettings], ...]:
    if step in SETUP_STEPS:
        return SETUP_STEPS[step]
    settings: type[BaseSettings] = importlib.import_module(MODULES.get(step, f"{step}.service")).Settings
    # `duetime run` installs the run-id key from IdSettings in every service (duetime.run_ids):
    # one left at the published default names runs unlike the others, and guessably.
    return (settings, shared.IdSettings, *EXTRA_SETTINGS.get(step, ()))


def test_must_set_finds_the_connection_and_secret_settings() -> None:
    found = _must_set(importlib.import_module("job_service.service").Settings)
    assert {"DUETIME_KAFKA_BOOTSTRAP", "DUETIME_POSTGRES_DSN", "DUETIME_REDIS_URL",
            "DUETIME_GATEWAY_SECRET", "DUETIME_ID_SECRET", "DUETIME_KAFKA_USERNAME",
            "DUETIME_KAFKA_PASSWORD", "DUETIME_HTTP_HOST"} <= found
    assert "DUETIME_LOG_LEVEL" not in found


def _workload(target: str, step: str) -> dict[str, Any]:
    if step in SETUP_STEPS:
        return objects(target, "Job")[f"duetime-{step}"]
    return deployment(target, step)


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("step", [*ALL_SERVICES, *SETUP_STEPS])
def test_every_setting_a_process_needs_is_set(target: str, step: str) -> None:
    c = container(_workload(target, step))
    env = environment(target, c)
    needed = set().union(*(_must_set(s) for s in _settings_of(step)))
    missing = sorted(v for v in needed if v not in env or env[v] == "")
    assert not missing, f"{target} {step}: unset {missing}"
    # Values built from other variables ($(VAR)) name only variables the container has.
    for name, value in env.items():
        for ref in re.findall(r"\$\((\w+)\)", value or ""):
            assert ref in env, f"{target} {step}: {name} refers to $({ref}), which is not set"


@pytest.mark.parametrize("target", ["base", "prod"])
def test_no_secret_is_kept_in_the_repository(target: str) -> None:
    secrets = objects(target, "Secret")
    assert not secrets, f"{target} renders Secrets {sorted(secrets)}: they belong to the cluster"
    for cm in objects(target, "ConfigMap").values():
        for key, value in cm.get("data", {}).items():
            assert not re.search(r"(?i)password|secret", key), f"{cm['metadata']['name']}: {key}"
            assert not re.search(r"\w+://[^/\s@]+:[^/\s@]+@", value), f"{key} carries credentials"


def test_dev_secrets_are_generated_and_say_so() -> None:
    text = (K8S / "overlays" / "dev" / "kustomization.yaml").read_text()
    assert "DEVELOPMENT-ONLY" in text
    assert environment("dev", container(deployment("dev", "job_service")))["DUETIME_ENV"] == "dev"
    assert environment("prod", container(deployment("prod", "job_service")))["DUETIME_ENV"] \
        == "production"


# ---- images ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_images_are_tagged_and_third_party_ones_pinned(target: str) -> None:
    problems = []
    for obj in render(target):
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            image = c["image"]
            name, _, tag = image.split("@")[0].rpartition(":")
            if not name or "/" in tag or tag == "latest":
                problems.append(f"{obj['metadata']['name']}: {image} has no tag or :latest")
            elif not name.endswith("duetime") and (why := floating(image)):
                problems.append(f"{obj['metadata']['name']}: {why}")
    assert not problems, "\n".join(problems)


# ---- gateway -----------------------------------------------------------------------------


def _normalized(conf: str) -> list[str]:
    """nginx.conf without comments, and with what differs in a pod folded: no Docker resolver,
    Service names (no `_`) in upstream servers, no `resolve`."""
    lines = []
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or re.match(r"resolver(_timeout)? ", line):
            continue
        if line.startswith("server ") and "_service:" in line:
            line = line.replace("_service:", "-service:").replace(" resolve ", " ")
        lines.append(line)
    return lines


@pytest.mark.parametrize("target", OVERLAYS)
def test_gateway_config_is_the_compose_one(target: str) -> None:
    config = next(cm for name, cm in objects(target, "ConfigMap").items()
                  if name.startswith("duetime-gateway-config"))
    compose = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    assert _normalized(config["data"]["nginx.conf"]) == _normalized(compose)
    assert not re.search(r"(?m)^\s*resolver ", config["data"]["nginx.conf"]), "Docker's DNS"
    assert config["data"]["gateway.js"] == (REPO / "deploy" / "local" / "gateway.js").read_text()
    # And the upstreams it names are Services on the API services' ports.
    services = objects(target, "Service")
    for svc in API_SERVICES:
        assert f"server {component(svc)}:{PORTS[svc]} " in config["data"]["nginx.conf"]
        assert [p["port"] for p in services[component(svc)]["spec"]["ports"]] == [PORTS[svc]]


def test_dev_keys_are_the_compose_development_keys() -> None:
    assert (K8S / "overlays" / "dev" / "api_keys.conf").read_text() == \
        (REPO / "deploy" / "compose" / "api_keys.conf").read_text()


# ---- network -----------------------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("svc", API_SERVICES)
def test_only_the_gateway_reaches_the_api_services(target: str, svc: str) -> None:
    labels = deployment(target, svc)["spec"]["template"]["metadata"]["labels"]
    gateway = objects(target, "Deployment")["duetime-gateway"]
    gateway_labels = gateway["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in objects(target, "NetworkPolicy").values()
                if _selects(p["spec"]["podSelector"], labels)
                and "Ingress" in p["spec"]["policyTypes"]]
    assert policies, f"{target} {svc}: no ingress policy, so anything reaches it"
    sources = [peer for p in policies for rule in p["spec"].get("ingress", [])
               for peer in rule.get("from", [{}])]
    assert sources, f"{target} {svc}: no ingress allowed at all"
    for peer in sources:
        assert set(peer) == {"podSelector"} and _selects(peer["podSelector"], gateway_labels) \
            and peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") \
            == "gateway", f"{target} {svc}: also reachable from {peer}"


@pytest.mark.parametrize("target", OVERLAYS)
@pytest.mark.parametrize("svc", ["executor", "command_executor"])
def test_executor_egress_skips_the_internal_ranges(target: str, svc: str) -> None:
    # Webhooks, and `network: true` commands through their proxy (ADR 0038), reach what the
    # egress policy allows; the cluster's own ranges are blocked here too.
    labels = deployment(target, svc)["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in objects(target, "NetworkPolicy").values()
                if _selects(p["spec"]["podSelector"], labels) and "Egress" in p["spec"]["policyTypes"]]
    assert policies, f"{target}: {svc} egress is unrestricted"
    for p in policies:
        for rule in p["spec"]["egress"]:
            ports = {port["port"] for port in rule.get("ports", [])}
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if block is None or ports:
                    continue  # DNS pods, or datastore ports only
                cidr = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for internal in map(ipaddress.ip_network, INTERNAL_RANGES):
                    if internal.version == cidr.version and internal.subnet_of(cidr):  # type: ignore[arg-type]
                        assert any(internal.subnet_of(e) for e in excepted  # type: ignore[arg-type]
                                   if e.version == internal.version), \
                            f"{target} {p['metadata']['name']}: {internal} reachable via {cidr}"


# ---- order -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", OVERLAYS)
def test_setup_jobs_and_what_they_need_are_applied_first(target: str) -> None:
    jobs = objects(target, "Job")
    assert {name: container(j)["args"] for name, j in jobs.items()} == \
        {"duetime-migrate": ["migrate"], "duetime-topics": ["topics"]}
    first = {(o["kind"], o["metadata"]["name"]) for o in render(target)
             if o["metadata"].get("labels", {}).get("duetime.io/phase") == "setup"}
    needed = {("Job", n) for n in jobs} | {(k, n) for k in ("ConfigMap", "Secret")
                                           for n in objects(target, k)}
    assert first == needed, f"{target}: phase 1 applies {sorted(first ^ needed)} wrongly"
    readme = (K8S / "README.md").read_text()
    assert "-l duetime.io/phase=setup" in readme and "wait --for=condition=complete" in readme


_REF_KEYS = {"configMapRef": "ConfigMap", "secretRef": "Secret",
             "configMapKeyRef": "ConfigMap", "secretKeyRef": "Secret"}


def _container_references(c: dict[str, Any]) -> set[tuple[str, str]]:
    sources = c.get("envFrom", []) + [var.get("valueFrom", {}) for var in c.get("env", [])]
    return {(kind, source[key]["name"]) for source in sources
            for key, kind in _REF_KEYS.items() if key in source}


def _volume_references(volume: dict[str, Any]) -> set[tuple[str, str]]:
    sources = [volume, *volume.get("projected", {}).get("sources", [])]
    found = {("ConfigMap", s["configMap"]["name"]) for s in sources if "configMap" in s}
    return found | {("Secret", s["secret"].get("secretName") or s["secret"]["name"])
                    for s in sources if "secret" in s}


def _references(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a workload's pods read."""
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    found: set[tuple[str, str]] = set()
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        found |= _container_references(c)
    for volume in pod.get("volumes", []):
        found |= _volume_references(volume)
    return found


@pytest.mark.parametrize("target", OVERLAYS)
def test_every_configmap_and_secret_a_pod_reads_exists_or_is_documented(target: str) -> None:
    rendered = {(o["kind"], o["metadata"]["name"]) for o in render(target)}
    readme = (K8S / "README.md").read_text()
    for obj in render(target):
        for kind, name in _references(obj):
            if kind == "Secret" and target == "prod":
                # Created in the namespace by the operator: the README must name it.
                assert f"`{name}`" in readme, f"README does not say to create Secret {name}"
            else:
                assert (kind, name) in rendered, f"{target} {obj['metadata']['name']}: no {kind} {name}"
