"""The hub as the team's intermediary for upstream state: its config, polling and webhooks."""
