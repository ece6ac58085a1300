"""The team hub: the HTTP service devices sync their event logs through."""
