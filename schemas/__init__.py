"""The event contract: Avro schemas (``schemas/avro/*.avsc``), the typed records that mirror them, and serde."""
