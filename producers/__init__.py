"""Producers: the client integrators use, the publish command and the traffic simulator."""
