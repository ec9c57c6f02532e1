"""deploy/docker-compose.yml's `monitoring` profile: Prometheus and Grafana, checked statically.

No container engine here: the compose file, the Prometheus configuration and the Grafana
provisioning files are parsed and held to what the profile promises — left out of a plain `up`,
every duetime service scraped on its port with the local stack's labels, the rules of
deploy/prometheus loaded, and Grafana provisioned with that Prometheus and deploy/grafana/duetime.json.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from duetime.cli import OPTIONAL_SERVICES, SERVICES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
MONITORING = {"prometheus", "grafana"}
# The profile each service is in; any other runs with a plain `up`. The optional services
# (the command executor) are off unless enabled, as in the local stack.
PROFILES = {**{name: ["monitoring"] for name in MONITORING},
            **{name: ["commands"] for name in OPTIONAL_SERVICES}}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of `service`'s bind mounts (named volumes left out)."""
    found = {}
    for volume in _services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (DEPLOY / source).resolve()
    return found


def _mounted(service: str, container_path: str) -> Any:
    return yaml.safe_load(_mounts(service)[container_path].read_text())


def test_monitoring_services_are_only_in_the_monitoring_profile() -> None:
    services = _services()
    assert set(services) >= MONITORING
    for name, spec in services.items():
        assert spec.get("profiles") == PROFILES.get(name), f"{name}: profiles {spec.get('profiles')}"


def test_every_bind_mount_of_the_profile_exists_and_named_volumes_are_declared() -> None:
    declared = set(_compose()["volumes"])
    for name in MONITORING:
        for target, source in _mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
        for volume in _services()[name].get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared, f"{name}: volume {source}"


def _relabelled(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus's `replace` relabelling (the only action the file uses), on one target."""
    out = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace", rule
        value = rule.get("separator", ";").join(out.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            out[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return out


def _scrape_targets(job: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Target address -> its labels after relabelling; a DNS name is taken as resolving."""
    found = {}
    for group in job.get("static_configs", []):
        for target in group["targets"]:
            found[target] = {"__address__": target, **group.get("labels", {})}
    for sd in job.get("dns_sd_configs", []):
        assert sd.get("type") == "A", sd
        for name in sd["names"]:
            address = f"{name}:{sd['port']}"
            found[address] = {"__address__": address, "__meta_dns_name": name}
    rules = job.get("relabel_configs", [])
    return {address: {k: v for k, v in _relabelled(labels, rules).items() if not k.startswith("__")}
            for address, labels in found.items()}


def test_prometheus_scrapes_every_service_on_its_port_with_the_stacks_labels() -> None:
    config = _mounted("prometheus", "/etc/prometheus/prometheus.yml")
    duetime = next(job for job in config["scrape_configs"] if job["job_name"] == "duetime")
    targets = _scrape_targets(duetime)
    expected = {}
    for name in (*SERVICES, *OPTIONAL_SERVICES):
        port = _services()[name]["environment"]["DUETIME_HTTP_PORT"]
        expected[f"{name}:{port}"] = {"service": name, "instance": name}
    assert targets == expected


def test_optional_services_are_found_not_listed() -> None:
    # A static target that is not running is `up == 0` and fires DuetimeServiceDown: a service
    # off unless enabled is found through Docker's DNS instead, like the local stack lists it
    # only while it runs.
    config = _mounted("prometheus", "/etc/prometheus/prometheus.yml")
    duetime = next(job for job in config["scrape_configs"] if job["job_name"] == "duetime")
    static = {target.split(":")[0] for group in duetime["static_configs"] for target in group["targets"]}
    found = {name for sd in duetime.get("dns_sd_configs", []) for name in sd["names"]}
    assert static == set(SERVICES)
    assert found == set(OPTIONAL_SERVICES)


def test_prometheus_loads_the_rules_checked_by_promtool() -> None:
    config = _mounted("prometheus", "/etc/prometheus/prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert _mounts("prometheus")["/etc/prometheus/rules"] == DEPLOY / "prometheus" / "rules"
    assert list((DEPLOY / "prometheus" / "rules").glob("*.yml"))


def test_grafana_is_provisioned_with_that_prometheus_and_the_duetime_dashboard() -> None:
    grafana = _services()["grafana"]
    assert "prometheus" in grafana["depends_on"]
    sources = _mounted("grafana", "/etc/grafana/provisioning/datasources/duetime.yml")
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    # The container port inside the compose network, not the one published on the host.
    assert source["url"] == "http://prometheus:9090"
    assert any(p.endswith(":9090") for p in _services()["prometheus"]["ports"])
    providers = _mounted("grafana", "/etc/grafana/provisioning/dashboards/duetime.yml")
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    dashboards = {target: source for target, source in _mounts("grafana").items()
                  if target.startswith(folder + "/")}
    assert list(dashboards.values()) == [DEPLOY / "grafana" / "duetime.json"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_profile_ports_are_published_on_loopback_only() -> None:
    for name in MONITORING:
        for port in _services()[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
