"""Shekara: border-crossing and migration-registration event pipeline."""

__version__ = "0.1.0"
