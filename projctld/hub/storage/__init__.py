"""The hub's storage: one interface, its SQLite and PostgreSQL implementations, and copying."""
