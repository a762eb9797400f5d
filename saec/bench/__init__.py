"""Helpers for benchmark scripts: the machine/version header every result file carries."""
