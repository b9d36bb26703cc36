"""Sinks: land every topic in ClickHouse, once."""
