"""Writes the golden cases' event files (cases/*.jsonl) from the lists below: `python -m tests.golden.build_cases`.

The events are written by hand here (local Asia/Almaty times, as an officer reads them); the expected alerts and
stays, with their derivations, are in the matching cases/*.toml, worked out from rules/kz.toml and the domain
notes, never from the code. The .jsonl files are committed: they are what `shekara check` and `shekara publish` read.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ALMATY = ZoneInfo("Asia/Almaty")
CASES = Path(__file__).parent / "cases"
CHECKPOINT_KIND = {"KZ-AIR-ALA": "AIR", "KZ-AIR-NQZ": "AIR"}


def _t(local: str) -> str:
    """'2024-05-01 10:00' in Asia/Almaty as ISO 8601; an ISO time with its offset ('...T18:30:00Z') as given."""
    if "T" in local:
        return local
    return datetime.fromisoformat(local).replace(tzinfo=ALMATY).isoformat()


def _who(doc: str, nat: str) -> dict[str, Any]:
    return {
        "document": {"type": "PASSPORT", "number": doc, "issuing_country": nat},
        "nationality": nat,
        "birth_date": "1988-04-12",
        "sex": "M",
    }


def crossing(
    eid: str,
    local: str,
    direction: str,
    cp: str,
    doc: str,
    nat: str,
    *,
    received: str | None = None,
    basis: str = "VISA_FREE",
    purpose: str = "TOURISM",
) -> dict[str, Any]:
    return {
        "record_type": "Crossing",
        "event_id": eid,
        "event_time": _t(local),
        "received_time": _t(received or local),
        "checkpoint": {"id": cp, "kind": CHECKPOINT_KIND.get(cp, "ROAD")},
        "direction": direction,
        "traveller": _who(doc, nat),
        "purpose": purpose,
        "entry_basis": {"kind": basis},
        "source_system": "golden",
    }


def registration(eid: str, local: str, doc: str, nat: str, reg_id: str) -> dict[str, Any]:
    day = date.fromisoformat(local[:10])
    return {
        "record_type": "Registration",
        "event_id": eid,
        "event_time": _t(local),
        "received_time": _t(local),
        "action": "REGISTERED",
        "registration_id": reg_id,
        "traveller": _who(doc, nat),
        "host_kind": "HOTEL",
        "host_id": "HOTEL-GOLDEN",
        "region": "KZ-75",
        "address": "Abai ave 10",
        "valid_from": day.isoformat(),
        "valid_until": (day + timedelta(days=29)).isoformat(),
        "source_system": "golden",
    }


def trip(
    prefix: str, cp: str, doc: str, nat: str, entry: str, exit_: str, *, register: bool = True
) -> list[dict[str, Any]]:
    """An entry, a hotel registration two hours later (unless not), and the exit."""
    out = [crossing(f"{prefix}-in", entry, "ENTRY", cp, doc, nat)]
    if register:
        reg_time = (datetime.fromisoformat(entry) + timedelta(hours=2)).isoformat(sep=" ")
        out.append(registration(f"{prefix}-reg", reg_time, doc, nat, f"{prefix}-R"))
    out.append(crossing(f"{prefix}-out", exit_, "EXIT", cp, doc, nat))
    return out


ZZ = "KZ-UZ-ZHIBEK-ZHOLY"  # road post on the Uzbek border (uploads late, in bursts)
ZH = "KZ-RU-ZHAISAN"  # road post on the Russian border


def cases() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    d, n = "GL0000001", "TJK"
    out["leap_window"] = [
        *trip("lw1", ZZ, d, n, "2024-01-01 10:00", "2024-01-30 16:00"),
        *trip("lw2", ZZ, d, n, "2024-02-15 10:00", "2024-03-15 16:00"),
        *trip("lw3", ZZ, d, n, "2024-04-01 10:00", "2024-04-10 16:00"),
        *trip("lw4", ZZ, d, n, "2024-05-01 10:00", "2024-05-25 16:00"),
    ]
    out["leap_registration"] = trip(
        "lr", ZH, "GL0000002", "RUS", "2024-02-10 09:00", "2024-03-20 15:00", register=False
    )
    out["midnight"] = [
        crossing("mn-in", "2025-05-01 23:30", "ENTRY", ZZ, "GL0000003", "UZB"),
        registration("mn-reg", "2025-05-02 11:00", "GL0000003", "UZB", "mn-R"),
        crossing("mn-out", "2025-05-31 00:10", "EXIT", ZZ, "GL0000003", "UZB"),
    ]
    out["zone_change"] = [
        crossing("zc1-in", "2024-01-31 10:00", "ENTRY", ZZ, "GL0000012", "UZB"),
        registration("zc1-reg", "2024-01-31 15:00", "GL0000012", "UZB", "zc1-R"),
        crossing("zc1-out", "2024-02-29T18:30:00Z", "EXIT", ZZ, "GL0000012", "UZB"),
        crossing("zc2-in", "2024-01-31 10:00", "ENTRY", ZZ, "GL0000013", "UZB"),
        registration("zc2-reg", "2024-01-31 15:00", "GL0000013", "UZB", "zc2-R"),
        crossing("zc2-out", "2024-02-29T19:10:00Z", "EXIT", ZZ, "GL0000013", "UZB"),
    ]
    out["rule_change"] = [
        *trip("rc", ZH, "GL0000004", "RUS", "2026-06-20 09:00", "2026-08-01 15:00", register=False),
        *trip("rc2", ZH, "GL0000014", "RUS", "2026-07-01 09:00", "2026-08-05 15:00", register=False),
    ]
    out["eaeu_exempt"] = [
        *trip("ex1", ZH, "GL0000005", "RUS", "2025-06-02 10:00", "2025-06-28 15:00", register=False),
        *trip("ex2", "KZ-KG-KORDAI", "GL0000006", "KGZ", "2025-06-02 10:00", "2025-07-15 15:00", register=False),
    ]
    out["late_upload"] = [
        crossing("lu1-in", "2025-03-03 10:00", "ENTRY", ZZ, "GL0000007", "UZB"),
        registration("lu1-reg", "2025-03-03 15:00", "GL0000007", "UZB", "lu1-R"),
        crossing("lu1-out", "2025-03-28 18:00", "EXIT", ZZ, "GL0000007", "UZB", received="2025-04-20 09:00"),
        crossing("lu2-in", "2025-05-05 10:00", "ENTRY", ZZ, "GL0000008", "UZB"),
        registration("lu2-reg", "2025-05-05 15:00", "GL0000008", "UZB", "lu2-R"),
        crossing("lu2-out", "2025-06-10 18:00", "EXIT", ZZ, "GL0000008", "UZB", received="2025-06-25 09:00"),
    ]
    expelled = {
        "record_type": "StatusChange",
        "event_id": "bn-expelled",
        "event_time": _t("2025-02-10 12:00"),
        "received_time": _t("2025-02-10 12:00"),
        "kind": "EXPELLED",
        "traveller": _who("GL0000015", "TJK"),
        "authority": "MVD migration service",
        "source_system": "golden",
    }
    out["ban_default"] = [expelled, *trip("bn", ZZ, "GL0000015", "TJK", "2025-06-01 10:00", "2025-06-03 16:00")]
    trader: list[dict[str, Any]] = []
    first = date(2025, 1, 6)
    for k in range(95):  # 95 day trips: 2025-01-06 .. 2025-04-10
        day = (first + timedelta(days=k)).isoformat()
        trader.append(crossing(f"fc{k + 1:03d}-in", f"{day} 08:00", "ENTRY", ZZ, "GL0000009", "UZB"))
        trader.append(crossing(f"fc{k + 1:03d}-out", f"{day} 18:00", "EXIT", ZZ, "GL0000009", "UZB"))
    out["frequent_crosser"] = trader
    old, new = "GL0000010", "GL0000011"
    replaced = {
        "record_type": "StatusChange",
        "event_id": "rn-replaced",
        "event_time": _t("2025-03-20 12:00"),
        "received_time": _t("2025-03-20 12:00"),
        "kind": "DOCUMENT_REPLACED",
        "traveller": _who(old, "UZB"),
        "authority": "UZB passport authority",
        "source_system": "golden",
        "new_document_number": new,  # StatusChange v3: the renewal, of the same document type
        "new_document_issuing_country": "UZB",
    }
    out["renewal"] = [
        *trip("rn1", ZZ, old, "UZB", "2025-01-06 10:00", "2025-02-04 16:00"),
        *trip("rn2", ZZ, old, "UZB", "2025-02-06 10:00", "2025-03-07 16:00"),
        *trip("rn3", ZZ, old, "UZB", "2025-03-09 10:00", "2025-03-18 16:00"),
        replaced,
        *trip("rn4", ZZ, new, "UZB", "2025-04-01 10:00", "2025-04-25 16:00"),
    ]
    return out


def main() -> None:
    CASES.mkdir(exist_ok=True)
    for name, events in cases().items():
        (CASES / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


if __name__ == "__main__":
    main()
