"""Source topics whose events carry the message's bytes as they are, decoded by nobody in the worker's main thread.

The processors decode and validate in `streams.matching` (in the matching process), so Faust's own decoding
would only copy bytes to bytes. Declared with ``key_serializer="raw"``, Faust still passes every message through
its serializer registry (codec lookup, type checks, a settings lookup per event): about 8 % of the worker's
main thread in a profile of the 100,000-event benchmark. `RawSchema` compiles to the one thing left to do,
creating the event.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, EventT, Message


class RawSchema(faust.Schema):
    """A schema whose events' key and value are the message's bytes (or None), untouched."""

    def compile(self, app: AppT, **_: Any) -> Any:
        event: Any = app.conf.Event  # looked up once, not per message

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            new: EventT = event(app, message.key, message.value, message.headers, message)
            return new

        return decode


def raw_topic(app: faust.App, *names: str) -> Any:
    """A Faust topic over `names` whose events hold raw bytes (see the module doc)."""
    return app.topic(*names, schema=RawSchema(key_type=bytes, value_type=bytes))
