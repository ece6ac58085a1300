"""Fake GitHub, GitLab and Jira servers on loopback, and the deterministic data they serve."""
