"""The daemon's frame: lifecycle, shared context, socket listener, systemd, log, status view."""
