"""Server mode's monitoring by reading (no Docker here): Prometheus scrapes what the services serve, where they
serve it, with the login they ask for; Grafana is provisioned with both datasources and every dashboard file.

The metric names in the dashboards and rules are checked against what the processes export in
tests/shekara/test_metrics.py; the compose file's general rules (pinned images, health checks, loopback ports, secrets
from .env) in tests/deploy/test_compose.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shekara.settings import FaustSettings, Settings
from tests.deploy.test_compose import compose, container_env, host_env  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    doc = yaml.safe_load(PROMETHEUS.read_text())
    assert isinstance(doc, dict)
    return doc


def mounts(compose: dict[str, Any], service: str) -> dict[str, str]:  # noqa: F811
    """Container path -> repository file of a service's read-only bind mounts."""
    out = {}
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            out[target] = source[2:]
    return out


def job(prometheus: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == name]
    return found


def test_prometheus_scrapes_every_processor_replica_on_the_page_port_with_its_login(
    compose: dict[str, Any],  # noqa: F811
    host_env: dict[str, str],  # noqa: F811
    prometheus: dict[str, Any],
) -> None:
    processors = job(prometheus, "processors")
    (sd,) = processors["dns_sd_configs"]
    assert sd["names"] == ["processors"] and sd["type"] == "A"  # each replica of the scaled service
    env = container_env(compose, "processors", host_env)
    assert sd["port"] == int(env["SHEKARA_FAUST__WEB_PORT"])
    assert processors.get("metrics_path", "/metrics") == "/metrics"
    # The page's login: its user, and its password from a compose secret fed by the same .env value.
    assert processors["basic_auth"]["username"] == FaustSettings().web_user
    secret = processors["basic_auth"]["password_file"].removeprefix("/run/secrets/")
    assert secret in compose["services"]["prometheus"]["secrets"]
    assert compose["secrets"][secret] == {"environment": "OPS_PAGE_PASSWORD"}
    assert env["SHEKARA_FAUST__WEB_PASSWORD"] == host_env["OPS_PAGE_PASSWORD"]


def test_prometheus_scrapes_the_sink_where_it_listens(
    compose: dict[str, Any],  # noqa: F811
    host_env: dict[str, str],  # noqa: F811
    prometheus: dict[str, Any],
) -> None:
    env = container_env(compose, "sink", host_env)
    sink = Settings.model_validate({"metrics": {"bind": env["SHEKARA_METRICS__BIND"], "sink_port": 0}}).metrics
    assert sink.bind == "0.0.0.0"  # reachable by Prometheus in the compose network (no host port)
    assert not compose["services"]["sink"].get("ports")
    (static,) = job(prometheus, "sink")["static_configs"]
    assert static["targets"] == [f"sink:{env['SHEKARA_METRICS__SINK_PORT']}"]
    # Beyond loopback the listener needs its login (check_secrets), and Prometheus sends it from the same .env value.
    sink_job = job(prometheus, "sink")
    assert sink_job["basic_auth"]["username"] == "metrics"
    secret = sink_job["basic_auth"]["password_file"].removeprefix("/run/secrets/")
    assert secret in compose["services"]["prometheus"]["secrets"]
    assert compose["secrets"][secret] == {"environment": "METRICS_PASSWORD"}
    assert env["SHEKARA_METRICS__PASSWORD"] == host_env["METRICS_PASSWORD"]


def test_prometheus_scrapes_the_notifier_where_it_listens_with_its_login(
    compose: dict[str, Any],  # noqa: F811
    host_env: dict[str, str],  # noqa: F811
    prometheus: dict[str, Any],
) -> None:
    env = container_env(compose, "notify", host_env)
    notify = job(prometheus, "notify")
    (static,) = notify["static_configs"]
    assert static["targets"] == [f"notify:{env['SHEKARA_METRICS__NOTIFY_PORT']}"]
    assert env["SHEKARA_METRICS__BIND"] == "0.0.0.0" and not compose["services"]["notify"].get("ports")
    assert notify["basic_auth"] == job(prometheus, "sink")["basic_auth"]
    assert env["SHEKARA_METRICS__PASSWORD"] == host_env["METRICS_PASSWORD"]


def test_prometheus_loads_its_config_and_rules_from_mounted_files(
    compose: dict[str, Any],  # noqa: F811
    prometheus: dict[str, Any],
) -> None:
    mounted = mounts(compose, "prometheus")
    command = compose["services"]["prometheus"]["command"]
    config = next(c.split("=", 1)[1] for c in command if c.startswith("--config.file="))
    assert mounted[config] == "deploy/prometheus/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        assert (REPO / mounted[rule_file]).is_file()
    assert "prometheus-data:/prometheus" in compose["services"]["prometheus"]["volumes"]


def test_grafana_is_provisioned_with_both_datasources_and_every_dashboard(compose: dict[str, Any]) -> None:  # noqa: F811
    grafana = compose["services"]["grafana"]
    mounted = mounts(compose, "grafana")
    provisioned = {
        target: source for target, source in mounted.items() if target.startswith("/etc/grafana/provisioning/")
    }
    sources = set(provisioned.values())
    for name in ("prometheus.yaml", "clickhouse.yaml"):
        assert f"deploy/grafana/provisioning/datasources/{name}" in sources
    assert {str(p.relative_to(REPO)) for p in (GRAFANA / "provisioning").rglob("*.yaml")} == sources
    # The dashboards provider reads the folder every dashboard file is mounted in.
    provider_file = REPO / "deploy/grafana/provisioning/dashboards/shekara.yaml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = {t: s for t, s in mounted.items() if t.startswith(folder + "/")}
    assert set(dashboards.values()) == {str(p.relative_to(REPO)) for p in (GRAFANA / "dashboards").glob("*.json")}
    env = grafana["environment"]
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"].split(",")
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert {"prometheus", "clickhouse"} <= set(grafana["depends_on"])


def test_every_dashboard_uses_a_provisioned_datasource(compose: dict[str, Any]) -> None:  # noqa: F811
    uids = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            uids[ds["uid"]] = ds
    prom = uids["shekara-prometheus"]
    host, port = prom["url"].removeprefix("http://").split(":")
    assert (
        compose["services"][host]["hostname"] == host
        and f"127.0.0.1:{port}:{port}" in compose["services"][host]["ports"]
    )
    for path in (GRAFANA / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            for target in [panel, *panel.get("targets", [])]:
                ds = target.get("datasource")
                if isinstance(ds, dict) and "uid" in ds and not ds["uid"].startswith("$"):
                    assert ds["uid"] in uids, f"{path.name}: {panel.get('title')} uses unknown datasource {ds['uid']}"
    pipeline = json.loads((GRAFANA / "dashboards" / "pipeline.json").read_text())
    titles = " ".join(p["title"].lower() for p in pipeline["panels"])
    for wanted in ("lag", "per second", "dead letters", "watermark"):
        assert wanted in titles, f"the pipeline-health dashboard has no {wanted} panel"
