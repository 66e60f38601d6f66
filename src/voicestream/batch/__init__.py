"""Batch jobs, workers and webhooks (later issues)."""
