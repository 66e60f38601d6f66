"""Jobs: the registry, queue, workers and outgoing webhooks (issue 10)."""
