"""Telling the user what changed: transitions, desktop notifications, the inbox, and waits."""
