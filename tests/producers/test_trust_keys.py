"""Who holds the pseudonym key: producers never; the processors and the sink only, and the sink never shows it.

Real embedded broker, real processor worker, real sink on chDB: no mocks.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from harness import readback, samples
from producers.client import EventProducer
from schemas.records import AlertType, StatusChangeKind
from schemas.serde import Serde
from shekara.pseudonym import partition_key, traveller_key
from shekara.settings import Settings
from sinks.clickhouse import chdb_path, connect
from sinks.sink import run_sink
from sinks.writer import hmac_pads
from tests.sinks.test_sink import fast
from tests.streams.test_topology import wait_for, worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _with_key(settings: Settings, key: str) -> Settings:
    return settings.model_copy(update={"pseudonym_key": SecretStr(key)})


def test_a_producer_without_the_key_is_accepted_and_a_wrongly_keyed_event_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    s = _with_key(settings, "held-by-the-processors-and-the-sink-only")
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    outsider = _with_key(settings, "a-producer-holds-some-other-key")  # what it holds must not matter
    t = s.topics
    now = datetime.now(UTC) - timedelta(hours=1)
    lost = samples.status_change(
        "lost", event_time=now - timedelta(hours=1), kind=StatusChangeKind.DOCUMENT_LOST, number="LK1234567"
    )
    entry = samples.crossing("entry", event_time=now, number="LK1234567")
    with EventProducer(outsider, spool=False) as producer:
        producer.publish(lost)
        producer.publish(entry)
        assert producer.flush(15) == 0
    # Keyed with the keyed traveller key (what producers used to send): not the partition key, so refused.
    wrong = samples.crossing("wrong-key", event_time=now, number="WK1234567")
    raw = Producer({"bootstrap.servers": s.bootstrap_servers})
    keyed = traveller_key("UZB", "WK1234567", s.pseudonym_key_bytes).encode()
    raw.produce(t.crossings, key=keyed, value=Serde.from_settings(s).encode(wrong, t.crossings))
    assert raw.flush(10) == 0

    with worker(s, tmp_path, "trust-keys"):
        alerts = wait_for(lambda: [a for a in readback.read_alerts(s) if a.type == AlertType.LOST_STOLEN_DOCUMENT])
        dead = wait_for(lambda: [d for d in readback.read_dead_letters(s) if d.field == "key"])

    tkey = traveller_key("UZB", "LK1234567", s.pseudonym_key_bytes)
    assert {a.traveller_key for a in alerts} == {tkey}  # keyed with the processors' key, not the public one
    assert [(d.stage, d.source_topic, d.key) for d in dead] == [("validate", t.crossings, keyed)]
    assert "shekara.pseudonym.partition_key" in dead[0].reason

    run_sink(fast(s), once=True)
    client = connect(s)
    try:
        crossings = {r[0]: r[1] for r in client.query("SELECT event_id, traveller_key FROM crossings").result_rows}
        changes = client.query("SELECT traveller_key FROM status_changes").result_rows
        stored_alerts = client.query("SELECT DISTINCT traveller_key FROM alerts").result_rows
        pkey = partition_key("UZB", "LK1234567")  # public: anyone can compute it, so it is never stored
        public = client.query(f"SELECT count() FROM crossings WHERE position(toString(tuple(*)), '{pkey}') > 0")
    finally:
        client.close()
    assert crossings == {"entry": tkey}  # the sink's key gives the processors' traveller key: facts join alerts
    assert changes == [(tkey,)] and stored_alerts == [(tkey,)]
    assert public.result_rows[0][0] == 0


def test_the_sinks_pads_and_key_never_reach_query_text_logs_or_files(settings: Settings) -> None:
    key = f"sink-secret-{uuid.uuid4().hex}"
    s = fast(_with_key(settings, key))
    ipad, opad = hmac_pads(key.encode())
    secrets = [key.encode(), ipad, opad]
    secrets += [p.hex().encode() for p in (ipad, opad)] + [p.hex().upper().encode() for p in (ipad, opad)]

    crossings = list(samples.traffic(30_000, start=datetime.now(UTC) - timedelta(days=1)))
    registrations = [samples.registration(f"r{i}", number=f"R{i:07d}") for i in range(2_000)]
    serde = Serde.from_settings(s)
    producer = Producer({"bootstrap.servers": s.bootstrap_servers, "linger.ms": 20})
    for topic, records in ((s.topics.crossings, crossings), (s.topics.registrations, registrations)):
        for r in records:
            doc = r.traveller.document
            producer.produce(topic, key=partition_key(doc.issuing_country, doc.number), value=serde.encode(r, topic))
            producer.poll(0)
    assert producer.flush(30) == 0

    done = threading.Event()
    failure: list[BaseException] = []

    def sink() -> None:
        try:
            run_sink(s, once=True)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    spy = connect(s)  # another session on the same engine, as an analyst's would be
    thread = threading.Thread(target=sink, name="sink-under-watch")
    thread.start()
    seen_transforms = 0
    leaked: list[str] = []
    try:
        logs = ["system.processes"]
        if spy.query("SELECT count() FROM system.tables WHERE database = 'system' AND name = 'query_log'").result_rows[
            0
        ][0]:
            logs.append("system.query_log")  # chDB keeps none; a server does
        while not done.is_set():
            for table in logs:
                text = spy.raw_query(f"SELECT * FROM {table}", fmt="TabSeparatedRaw")
                seen_transforms += text.count(b"_pseudonym_pads")
                leaked += [f"{table}: {sec[:8]!r}..." for sec in secrets if sec in text]
            time.sleep(0.005)
        if "system.query_log" in logs:
            spy.command("SYSTEM FLUSH LOGS")
            text = spy.raw_query("SELECT * FROM system.query_log", fmt="TabSeparatedRaw")
            leaked += [f"query_log: {sec[:8]!r}..." for sec in secrets if sec in text]
    finally:
        thread.join(120)
        spy.close()
    assert not failure, failure
    assert seen_transforms > 0, "the spy never saw the sink's transforms run: it proved nothing"
    assert not leaked

    client = connect(s)
    try:
        assert client.query("SELECT count() FROM crossings").result_rows[0][0] == len(crossings)
        assert client.query("SELECT count() FROM registrations").result_rows[0][0] == len(registrations)
    finally:
        client.close()
    # The warehouse, the driver's insert files beside it and the rest of the run's data directory.
    on_disk = [p for p in chdb_path(s).parent.rglob("*") if p.is_file()]
    assert len(on_disk) > 10
    assert not [(p.name, sec[:8]) for p in on_disk for sec in secrets if sec in p.read_bytes()]
