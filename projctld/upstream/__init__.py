"""Upstream state: the providers, polling them on a schedule, and where their tokens come from."""
