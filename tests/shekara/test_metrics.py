"""Prometheus metrics (`shekara.metrics`): the label rules, then a real processor worker and a real sink scraped
over HTTP while they work on the embedded broker: the families exist and move (a poison message raises the dead
letter counter, a lost document the alert counter, landed rows the sink's batches and insert times).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import samples
from schemas.records import Direction, StatusChangeKind
from shekara import metrics
from shekara.embedded import free_port
from shekara.settings import Settings
from sinks.sink import run_sink
from streams.worker import spawn_worker, wait_for_assignment
from tests.sinks.test_sink import fast
from tests.sinks.test_sink import publish as publish_records
from tests.streams.test_topology import NOW, crossing, encoded, key_of, publish, status_change

# Families every process exports (each process fills those it has a use for).
FAMILIES = {
    "shekara_events_in",
    "shekara_events_out",
    "shekara_dead_letters",
    "shekara_alerts",
    "shekara_sink_batch_messages",
    "shekara_sink_insert_duration_seconds",
    "shekara_spool_messages",
    "shekara_sink_lag_messages",
    "shekara_consumer_lag_messages",
    "shekara_watermark_age_seconds",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target
_NAME = re.compile(r"\b(shekara_[a-z0-9_]+|up)\b")


def promql_expressions() -> dict[str, str]:
    """Every PromQL expression of the Grafana dashboards and the Prometheus rules, by where it is."""
    found = {}
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if "expr" in target:  # Prometheus targets; the ClickHouse ones carry SQL
                    found[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"rules.yml: {rule['alert']}"] = str(rule["expr"])
    return found


def missing_names(families: set[str]) -> dict[str, set[str]]:
    """Metric names the expressions use that no family exports (histogram and counter suffixes resolved)."""

    def exported(name: str) -> bool:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        return name in families or base in families or name in PROMETHEUS_OWN

    return {
        where: bad
        for where, expr in promql_expressions().items()
        if (bad := {n for n in _NAME.findall(expr) if not exported(n)})
    }


def parse(text: str) -> tuple[set[str], Samples]:
    """(family names, {(sample name, sorted labels): value}) of a page in Prometheus' text format."""
    families, values = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            values[s.name, tuple(sorted(s.labels.items()))] = s.value
    return families, values


def scrape(url: str) -> tuple[set[str], Samples]:
    return parse(httpx.get(url, timeout=5).text)


def scrape_local() -> tuple[set[str], Samples]:
    """This process's registry, as a scrape would read it."""
    return parse(metrics.exposition()[0].decode())


def total(values: Samples, name: str, **labels: str) -> float:
    """Sum of a sample over every label set that has `labels`."""
    return sum(v for (n, ls), v in values.items() if n == name and set(labels.items()) <= set(ls))


def wait_for(what: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s")


# --- pure ---------------------------------------------------------------------------------------------------


def test_reason_labels_keep_the_words_and_drop_the_values() -> None:
    assert metrics.reason_label("message key is 500000 bytes, more than the limit of 256") == "message key is bytes"
    assert metrics.reason_label("bad magic byte 0x07: expected 0xc3") == "bad magic byte"
    assert metrics.reason_label("traveller.nationality: must be ISO 'XXXX'") == "traveller.nationality"
    assert metrics.reason_label("") == "unspecified"
    # Two messages differing only in their values count under one label.
    a = metrics.reason_label("unknown schema fingerprint deadbeefcafe0001: not one of the versions")
    b = metrics.reason_label("unknown schema fingerprint 0123456789abcdef: not one of the versions")
    assert a == b == "unknown schema fingerprint"


def test_distinct_reasons_are_capped() -> None:
    before = len(metrics._reasons)
    for i in range(metrics.MAX_REASONS + 20):
        metrics.dead_letter("test-cap", f"reason number{chr(97 + i % 26)}{chr(97 + i // 26)} here")
    assert len(metrics._reasons) <= max(before, metrics.MAX_REASONS) + 1  # "other" is the one more
    _, values = scrape_local()
    assert total(values, "shekara_dead_letters_total", stage="test-cap") == metrics.MAX_REASONS + 20


def test_every_family_is_exported_even_before_it_has_samples() -> None:
    families, _ = scrape_local()
    assert families >= FAMILIES


def test_dashboards_and_rules_query_shekara_metrics() -> None:
    exprs = promql_expressions()
    assert len(exprs) >= 10
    assert all(_NAME.search(e) for e in exprs.values()), "an expression names no metric"
    # The check itself catches a name nobody exports.
    assert missing_names(FAMILIES) == {}
    assert missing_names(FAMILIES - {"shekara_consumer_lag_messages"})


# --- a real worker and a real sink --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_processor_metrics_move_with_its_work(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": True, "web_port": port})
    t = s.topics
    lost = status_change("m-lost", NOW - timedelta(hours=2), StatusChangeKind.DOCUMENT_LOST, "MM0000001")
    publish(s, [encoded(s, lost), encoded(s, crossing("m-in", "MM0000001", NOW - timedelta(hours=1), Direction.ENTRY))])
    status = tmp_path / "w.json"
    proc = spawn_worker(s, app_id="metrics-test", status_file=status, web_port=port, log_path=tmp_path / "w.log")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_assignment([status], timeout=60)
        wait_for(lambda: total(scrape(url)[1], "shekara_alerts_total") >= 1)
        families, before = scrape(url)
        assert families >= FAMILIES
        assert missing_names(families) == {}  # every PromQL name of the dashboards and rules, as the worker serves
        assert total(before, "shekara_events_in_total", source=t.crossings) >= 1
        assert total(before, "shekara_events_in_total", source=t.status_changes) >= 1
        assert total(before, "shekara_alerts_total", type="LOST_STOLEN_DOCUMENT", action="RAISED") == 1
        assert total(before, "shekara_events_out_total", destination=t.alerts) >= 1

        # A poison message: the dead letter counter rises, by stage and reason.
        publish(s, [(t.crossings, key_of(s, "MM0000002"), b"\x07 not avro")])
        wait_for(lambda: total(scrape(url)[1], "shekara_dead_letters_total", stage="decode") >= 1)
        _, after = scrape(url)
        reasons = {dict(ls)["reason"] for (n, ls), _ in after.items() if n == "shekara_dead_letters_total"}
        assert "bad magic byte" in reasons
        assert total(after, "shekara_events_in_total", source=t.crossings) > total(
            before, "shekara_events_in_total", source=t.crossings
        )
        # Lag of the group on each source partition it owns, caught up once committed; a watermark per partition.
        wait_for(lambda: total(scrape(url)[1], "shekara_consumer_lag_messages", topic=t.crossings) == 0, 30)
        _, now = scrape(url)
        lag_partitions = {
            dict(ls)["partition"]
            for (n, ls), _ in now.items()
            if n == "shekara_consumer_lag_messages" and dict(ls)["topic"] == t.crossings
        }
        assert lag_partitions == {str(p) for p in range(s.partitions)}
        assert {dict(ls)["group"] for (n, ls), _ in now.items() if n == "shekara_consumer_lag_messages"} == {
            "metrics-test"
        }
        ages = [v for (n, _), v in now.items() if n == "shekara_watermark_age_seconds"]
        assert ages and all(v >= s.allowed_lateness_seconds for v in ages)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.integration
@pytest.mark.slow
def test_sink_metrics_move_with_its_batches(settings: Settings) -> None:
    port = free_port()
    s = fast(settings)
    s.metrics = s.metrics.model_copy(update={"sink_port": port})
    url = f"http://127.0.0.1:{port}/metrics"
    records = [samples.crossing(f"mc{i}") for i in range(30)] + [samples.alert("ma1")]
    # Only the sink reads stays' and alerts' records for the warehouse: a broken one is its dead letter.
    publish_records(s, records, [(s.topics.alerts, b"\x01not avro")])
    stop = threading.Event()
    thread = threading.Thread(target=lambda: run_sink(s, stop=stop), daemon=True)
    before = scrape_local()[1]
    thread.start()
    try:
        wait_for(
            lambda: (
                total(scrape(url)[1], "shekara_events_out_total", destination="crossings")
                >= 30 + total(before, "shekara_events_out_total", destination="crossings")
            )
        )
        wait_for(
            lambda: (
                total(scrape(url)[1], "shekara_dead_letters_total", stage="decode")
                > total(before, "shekara_dead_letters_total", stage="decode")
            )
        )
        families, after = scrape(url)
    finally:
        stop.set()
        thread.join(30)
    assert families >= FAMILIES
    assert missing_names(families) == {}
    assert (
        total(after, "shekara_events_in_total", source=s.topics.crossings)
        - total(before, "shekara_events_in_total", source=s.topics.crossings)
        == 30
    )
    assert total(after, "shekara_sink_batch_messages_count") > total(before, "shekara_sink_batch_messages_count")
    assert total(after, "shekara_sink_insert_duration_seconds_count") > total(
        before, "shekara_sink_insert_duration_seconds_count"
    )
    assert total(after, "shekara_sink_lag_messages", group=s.sink.group_id, topic=s.topics.crossings) == 0
    lagged = {dict(ls)["topic"] for (n, ls), _ in after.items() if n == "shekara_sink_lag_messages"}
    assert s.topics.crossings in lagged


def test_metrics_listener_with_a_password_refuses_requests_without_its_login() -> None:
    import base64
    import urllib.error
    import urllib.request

    port = metrics.serve(0, "127.0.0.1", "s3cret-metrics-login")
    assert port
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
    wrong = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"metrics:x").decode()})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=5)
    assert refused.value.code == 401
    login = base64.b64encode(b"metrics:s3cret-metrics-login").decode()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})) as ok:
        assert b"shekara_dead_letters_total" in ok.read()


def test_metrics_listener_without_a_login_answers_only_to_localhost() -> None:
    """A DNS-rebinding site reaches a loopback listener through a browser with its own name as Host: refused."""
    port = metrics.serve(free_port(), "127.0.0.1")
    assert port
    url = f"http://127.0.0.1:{port}/metrics"
    assert b"shekara_dead_letters_total" in httpx.get(url, timeout=5).content
    assert httpx.get(url, headers={"Host": f"localhost:{port}"}, timeout=5).status_code == 200
    rebound = httpx.get(url, headers={"Host": f"evil.example:{port}"}, timeout=5)
    assert rebound.status_code == 421 and b"shekara_" not in rebound.content


def test_metrics_handler_is_prometheus_clients_with_a_timeout() -> None:
    # A private class of prometheus-client the listener relies on (its quiet request handler): an upgrade that
    # drops it fails here, not at a worker's start.
    from prometheus_client.exposition import _SilentHandler

    assert issubclass(metrics._Handler, _SilentHandler) and metrics._Handler.timeout == 60
