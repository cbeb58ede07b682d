"""Coordinator: emergency incident response for a telecom operator's customer service."""

__version__ = "0.1.0"
