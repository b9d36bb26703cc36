"""Step 1 of docs/alerts.md: the IMPOSSIBLE_TRAVEL reason states the comparison that decided it.

rules/kz.toml: ground 130 km/h; air 900 km/h plus 60 minutes of boarding and checks. Almaty (ALA) to Astana
(NQZ) is 950.4 km: a flight needs 950.4 / 900 h = 63.4 min in the air + 60 min = 123.4 min, so 2 h 03 min
apart is impossible and 2 h 04 min is not. At 2 h 03 min the plain speed is 950 / 2.05 = 464 km/h, half the
air limit: a reason quoting only "464 km/h, air limit 900 km/h" contradicts itself.
"""

from __future__ import annotations

import pytest

from schemas.records import AlertType
from shekara.reference import distance_km
from tests.streams.core.factory import ALA, CHECKPOINTS, NQZ, SYRYM, ZHAISAN, entry, exit_, person, run

IT = AlertType.IMPOSSIBLE_TRAVEL
CN = person("CHN", "C9300001")


def _impossible(first: str, cp1: str, second: str, cp2: str) -> list:
    r = run([entry(first, cp1, who=CN), exit_(second, cp2, who=CN)])
    return [a for a in r.final_alerts().values() if a.type == IT]


def test_the_air_reason_includes_the_overhead():
    km = distance_km(CHECKPOINTS[ALA], CHECKPOINTS[NQZ])
    assert 950 < km < 951
    [a] = _impossible("2026-03-01 10:00", ALA, "2026-03-01 12:03", NQZ)
    assert a.reason.startswith(
        "950 km from KZ-AIR-ALA to KZ-AIR-NQZ in 2 h 03 min; the fastest plausible trip takes 2 h 04 min "
        "(950 km at 900 km/h by air plus 60 min for boarding and checks)"
    )
    assert "probably a cloned document" in a.reason
    assert a.details["overhead_min"] == "60" and a.details["needed_min"] == "124"
    assert _impossible("2026-03-01 10:00", ALA, "2026-03-01 12:04", NQZ) == []  # the boundary minute


@pytest.mark.parametrize("minutes", [0, 1, 59, 60, 61])
def test_within_the_overhead_any_distance_is_impossible_and_the_words_say_so(minutes: int) -> None:
    second = f"2026-03-01 {10 + minutes // 60:02d}:{minutes % 60:02d}"
    [a] = _impossible("2026-03-01 10:00", ALA, second, NQZ)
    elapsed = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    assert f"in {elapsed}; the fastest plausible trip takes 2 h 04 min" in a.reason


def test_the_ground_reason_states_the_time_needed():
    km = distance_km(CHECKPOINTS[ZHAISAN], CHECKPOINTS[SYRYM])
    needed = -(-km * 60 // 130)  # minutes, rounded up
    [a] = _impossible("2026-03-01 10:00", ZHAISAN, "2026-03-01 12:00", SYRYM)
    assert f"in 2 h 00 min; the fastest plausible trip takes {int(needed) // 60} h {int(needed) % 60:02d} min" in (
        a.reason
    )
    assert f"({km:.0f} km at 130 km/h by road or rail)" in a.reason and "boarding" not in a.reason
