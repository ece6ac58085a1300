"""Offline-first team events: the event model, the clock, the fold and the sync with the hub."""
