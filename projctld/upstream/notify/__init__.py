"""Telling the user what changed: transitions, desktop notifications, and the inbox."""
