"""Codes shared by the foundation (rules, reference data) and the event contract (`schemas.records`).

They live here so the foundation imports nothing above it; `schemas.records` re-exports them and the Avro enum
names and symbols are unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class CheckpointKind(StrEnum):
    ROAD = "ROAD"
    RAIL = "RAIL"
    AIR = "AIR"
    SEA = "SEA"


class Purpose(StrEnum):
    TRANSIT = "TRANSIT"
    TOURISM = "TOURISM"
    BUSINESS = "BUSINESS"
    PRIVATE = "PRIVATE"
    WORK = "WORK"
    STUDY = "STUDY"
    RESIDENCE = "RESIDENCE"
    REPATRIATION = "REPATRIATION"


class EntryBasisKind(StrEnum):
    CITIZEN = "CITIZEN"  # Kazakh citizens: crossings are recorded, no stay limit applies
    VISA_FREE = "VISA_FREE"
    VISA = "VISA"
    RESIDENCE_PERMIT = "RESIDENCE_PERMIT"
    WORK_PERMIT = "WORK_PERMIT"
    REFUGEE = "REFUGEE"
    DIPLOMATIC = "DIPLOMATIC"


class AlertType(StrEnum):
    IN_COUNTRY_OVERSTAY = "IN_COUNTRY_OVERSTAY"
    OUT_OF_COUNTRY_OVERSTAY = "OUT_OF_COUNTRY_OVERSTAY"
    WINDOW_BREACH = "WINDOW_BREACH"  # 90/180 "visa run"
    UNREGISTERED_STAY = "UNREGISTERED_STAY"
    TRANSIT_OVERSTAY = "TRANSIT_OVERSTAY"
    WRONG_ROUTE_EXIT = "WRONG_ROUTE_EXIT"
    EXIT_WITHOUT_ENTRY = "EXIT_WITHOUT_ENTRY"
    DOUBLE_ENTRY = "DOUBLE_ENTRY"
    IMPOSSIBLE_TRAVEL = "IMPOSSIBLE_TRAVEL"
    BANNED_ENTRY = "BANNED_ENTRY"
    LOST_STOLEN_DOCUMENT = "LOST_STOLEN_DOCUMENT"
    FICTITIOUS_ADDRESS = "FICTITIOUS_ADDRESS"


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
