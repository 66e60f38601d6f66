"""Batch submission from the command line: ``voicestream batch submit SPEC.json``."""
