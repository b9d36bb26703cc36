"""The pure core of the stream processors: rules evaluation, matching and alert decisions.

No Kafka, Faust or ClickHouse here: the shell (`streams.app`) feeds each traveller's events and the
partition's watermark to `step`, stores the returned state, and emits the returned records. The semantics
are docs/alerts.md.
"""

from streams.core.address import AddressState, address_key, address_step, normalise_address
from streams.core.model import Event
from streams.core.traveller import DEFAULT_RETENTION, Retention, StepResult, TravellerState, step

__all__ = [
    "DEFAULT_RETENTION",
    "AddressState",
    "Event",
    "Retention",
    "StepResult",
    "TravellerState",
    "address_key",
    "address_step",
    "normalise_address",
    "step",
]
