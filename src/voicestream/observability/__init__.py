"""Metrics and event-loop health."""
