"""The checkpoint catalogue is enforced (issue 16, item 4): at publish, in the processors and in the sink.

A crossing at an id `rules/checkpoints.csv` does not list, or at a post outside its open dates (opened..closed,
local days in Asia/Almaty, both inclusive), is refused with the same field and reason by the producer client,
the processors' intake and the sink's rejects SQL (which reads the catalogue the sink loads into ClickHouse).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness import readback, samples
from producers.client import prepare
from schemas.records import Checkpoint, CheckpointKind, Crossing, DeadLetter, Direction
from schemas.serde import Serde
from schemas.validation import ValidationError, catalogue_for, validation_errors
from shekara.reference import load_catalogue, load_checkpoints
from shekara.settings import Settings
from tests.sinks.test_sink_parity import Case, Parity, parity_on
from tests.streams.test_topology import NOW, crossing, encoded, publish, wait_for, worker

HEADER = "id,name,kind,border_country,region,lat,lon,daily_capacity,opened,closed\n"
# A post that opened on 1 March 2026 and one that closed after 31 March 2026 (local days, UTC+5).
ROWS = (
    "KZ-UZ-ZHIBEK-ZHOLY,Zhibek Zholy,ROAD,UZB,KZ-55,41.57,69.41,40000,,\n"
    "KZ-AIR-ALA,Almaty International Airport,AIR,,KZ-75,43.35,77.04,20000,,\n"
    "KZ-CN-NEW,New Post,ROAD,CHN,KZ-19,44.21,80.26,500,2026-03-01,\n"
    "KZ-KG-OLD,Old Post,ROAD,KGZ,KZ-31,42.86,71.33,500,,2026-03-31\n"
)
OPENS = datetime(2026, 2, 28, 19, 0, tzinfo=UTC)  # 00:00 on 1 March in Almaty
CLOSES = datetime(2026, 3, 31, 19, 0, tzinfo=UTC)  # 00:00 on 1 April in Almaty: the first closed instant


@pytest.fixture(scope="module")
def catalogue_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalogue") / "checkpoints.csv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    return path


def _at(cp_id: str, when: datetime) -> Crossing:
    kind = CheckpointKind.AIR if cp_id.startswith("KZ-AIR") else CheckpointKind.ROAD
    c = samples.crossing("c-" + cp_id + when.isoformat(), event_time=when)
    return replace(c, checkpoint=Checkpoint(cp_id, kind, None if kind is CheckpointKind.AIR else "UZB"))


# --- the catalogue file ---------------------------------------------------------------------------------------


def test_the_shipped_catalogue_lists_the_101_posts_with_open_dates() -> None:
    cps = load_checkpoints()
    assert len(cps) == 101
    assert all(cp.closed is None or cp.opened is None or cp.opened <= cp.closed for cp in cps.values())


def test_open_dates_are_read_and_a_bad_date_is_one_clear_line(tmp_path: Path, catalogue_file: Path) -> None:
    cps = load_checkpoints(catalogue_file)
    assert str(cps["KZ-CN-NEW"].opened) == "2026-03-01" and cps["KZ-CN-NEW"].closed is None
    assert str(cps["KZ-KG-OLD"].closed) == "2026-03-31" and cps["KZ-KG-OLD"].opened is None
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "KZ-X,X,ROAD,UZB,KZ-55,1,1,1,2026-13-01,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^checkpoints: KZ-X opened must be a date YYYY-MM-DD; got '2026-13-01'$"):
        load_checkpoints(bad)
    reversed_ = tmp_path / "reversed.csv"
    reversed_.write_text(HEADER + "KZ-X,X,ROAD,UZB,KZ-55,1,1,1,2026-03-02,2026-03-01\n", encoding="utf-8")
    with pytest.raises(ValueError, match="closed 2026-03-01 before it opened 2026-03-02"):
        load_checkpoints(reversed_)


# --- the rule, as a pure function ------------------------------------------------------------------------------


def test_open_dates_are_local_days_both_inclusive(catalogue_file: Path) -> None:
    cat = load_catalogue(catalogue_file, "Asia/Almaty")
    second = timedelta(seconds=1)
    assert cat.refusal("KZ-CN-NEW", OPENS) is None
    assert (
        cat.refusal("KZ-CN-NEW", OPENS - second)
        == "is checkpoint KZ-CN-NEW, which opened on 2026-03-01, after this crossing"
    )
    assert cat.refusal("KZ-KG-OLD", CLOSES - second) is None
    assert (
        cat.refusal("KZ-KG-OLD", CLOSES)
        == "is checkpoint KZ-KG-OLD, which closed after 2026-03-31, before this crossing"
    )
    assert cat.refusal("KZ-AIR-ALA", datetime(1990, 1, 1, tzinfo=UTC)) is None  # no dates: always open
    assert cat.refusal("KZ-UZ-ZHIBEK-ZHOLI", OPENS) == (
        "is not a checkpoint of the catalogue (rules/checkpoints.csv); got 'KZ-UZ-ZHIBEK-ZHOLI'"
    )


def test_validation_names_the_field_for_an_unknown_post_and_an_unknown_planned_exit() -> None:
    when = datetime(2026, 3, 10, 12, tzinfo=UTC)
    ok = _at("KZ-AIR-ALA", when)
    assert validation_errors(ok, now=when, max_future_skew_s=300) == []
    typo = _at("KZ-AIR-ALMATY", when)
    assert [e.field for e in validation_errors(typo, now=when, max_future_skew_s=300)] == ["checkpoint.id"]
    route = replace(ok, planned_exit_checkpoint="KZ-NOWHERE")
    assert [e.field for e in validation_errors(route, now=when, max_future_skew_s=300)] == ["planned_exit_checkpoint"]


def test_the_producer_client_refuses_an_unknown_post_before_sending(catalogue_file: Path) -> None:
    s = Settings(checkpoints_file=catalogue_file)
    serde = Serde.from_settings(s)
    prepare(_at("KZ-CN-NEW", datetime.now(UTC) - timedelta(hours=1)), s, serde)  # open today: sent
    with pytest.raises(ValidationError) as refused:
        prepare(_at("KZ-KG-OLD", datetime.now(UTC) - timedelta(hours=1)), s, serde)
    assert refused.value.field == "checkpoint.id" and "closed after 2026-03-31" in refused.value.message


# --- processors and sink agree (real chDB) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory, catalogue_file: Path) -> Iterator[Parity]:
    tmp = tmp_path_factory.mktemp("dated")
    s = Settings(clickhouse_dsn=f"chdb://{tmp / 'ch'}", data_dir=tmp / "var", checkpoints_file=catalogue_file)
    with parity_on(s) as p:
        yield p


@pytest.mark.integration
def test_processors_and_sink_refuse_the_same_crossings_with_the_same_reason(dated: Parity) -> None:
    second = timedelta(seconds=1)
    cases = {
        "open post": (_at("KZ-AIR-ALA", OPENS), None),
        "unknown post": (_at("KZ-XX-TYPO", OPENS), "checkpoint.id"),
        "the first second of the opening day": (_at("KZ-CN-NEW", OPENS), None),
        "the last second before it opened": (_at("KZ-CN-NEW", OPENS - second), "checkpoint.id"),
        "the last second of the closing day": (_at("KZ-KG-OLD", CLOSES - second), None),
        "the first second after it closed": (_at("KZ-KG-OLD", CLOSES), "checkpoint.id"),
        "unknown planned exit": (
            replace(_at("KZ-AIR-ALA", OPENS), planned_exit_checkpoint="KZ-NO"),
            "planned_exit_checkpoint",
        ),
        "known planned exit": (replace(_at("KZ-AIR-ALA", OPENS), planned_exit_checkpoint="KZ-KG-OLD"), None),
    }
    ts = int((CLOSES + timedelta(days=1)).timestamp() * 1000)  # the messages' Kafka time: after all of them
    verdicts = dated.check([Case(r, dated.key(r), ts) for r, _ in cases.values()])  # asserts the two agree
    assert {n: v and v[0] for n, v in zip(cases, verdicts, strict=True)} == {n: f for n, (_, f) in cases.items()}
    closed = verdicts[list(cases).index("the first second after it closed")]
    assert closed == (
        "checkpoint.id",
        "checkpoint.id: is checkpoint KZ-KG-OLD, which closed after 2026-03-31, before this crossing",
    )
    # The catalogue in the warehouse is the file's, with the instants both sides compare.
    rows = dated.client.query("SELECT id, open_from, open_until FROM checkpoints ORDER BY id").result_rows
    assert [(r[0], r[1] and r[1].astimezone(UTC), r[2] and r[2].astimezone(UTC)) for r in rows] == [
        ("KZ-AIR-ALA", None, None),
        ("KZ-CN-NEW", OPENS, None),
        ("KZ-KG-OLD", None, CLOSES),
        ("KZ-UZ-ZHIBEK-ZHOLY", None, None),
    ]
    assert catalogue_for(dated.settings).checkpoints.keys() == {r[0] for r in rows}


def _letters(s: Settings, n: int) -> list[DeadLetter] | None:
    got = [d for d in readback.read_dead_letters(s) if d.stage == "validate"]
    return got if len(got) >= n else None


# --- end to end: a worker on the real broker dead-letters them ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_dead_letters_crossings_at_unknown_or_closed_posts(
    settings: Settings, tmp_path: Path, catalogue_file: Path
) -> None:
    s = settings.model_copy(update={"allowed_lateness_seconds": 2, "checkpoints_file": catalogue_file})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    when = NOW - timedelta(days=2)
    old = Checkpoint("KZ-KG-OLD", CheckpointKind.ROAD, "KGZ")  # closed since April 2026: NOW is later
    items = [
        encoded(
            s,
            crossing(
                "typo-1",
                "PP0000001",
                when,
                Direction.ENTRY,
                checkpoint=Checkpoint("KZ-UZ-ZHIBEK", CheckpointKind.ROAD, "UZB"),
            ),
        ),
        encoded(s, crossing("closed-1", "PP0000002", when, Direction.ENTRY, checkpoint=old)),
        encoded(s, crossing("ok-1", "PP0000003", when, Direction.ENTRY)),
        encoded(s, crossing("ok-2", "PP0000003", when + timedelta(hours=5), Direction.EXIT)),
    ]
    publish(s, items)
    with worker(s, tmp_path, "catalogue-test"):
        stays = wait_for(lambda: readback.read_stays(s), timeout=90)
        dead = wait_for(lambda: _letters(s, 2), timeout=60)
    assert [(st.entry_event_id, st.exit_event_id) for st in stays.values()] == [("ok-1", "ok-2")]
    assert sorted((d.field, d.reason) for d in dead) == [
        (
            "checkpoint.id",
            "checkpoint.id: is checkpoint KZ-KG-OLD, which closed after 2026-03-31, before this crossing",
        ),
        (
            "checkpoint.id",
            "checkpoint.id: is not a checkpoint of the catalogue (rules/checkpoints.csv); got 'KZ-UZ-ZHIBEK'",
        ),
    ]
