"""projctld: the per-user daemon that keeps projctl's state warm and serves it over a socket.

Its rooms, each named by what it serves (dependencies point down this list, never up):

    __main__.py   `projctld run | hub serve | hub token | hub share | hub copy | db |
                  config check | doctor | install-systemd`
    daemon/       the frame: lifecycle, shared context, socket listener, systemd, log file,
                  what the daemon knows between requests, the status view, reloading, the
                  watch and wait streams
    rpc/          the Unix-socket server and the one `match` over the request union
    upstream/     upstream state: providers/ (GitHub, GitLab, Jira), polling, scheduling, tokens;
                  notify/ (transitions, desktop notifications, the inbox)
    team/         team events: sync/ (model, clock, fold, hub client), workflows/ (the engine),
                  the note, branch, deploy, log and workflow-run requests, the delivery
                  metrics (delivery.py) and the report request
    ops/          the operator's tools: doctor, metrics, Prometheus text and endpoint, units
    prompt/       what a shell prompt shows, and the files shells read
    plugins/      pluggy hook specs, the host, the built-in notifier; what plugin authors import
    hub/          the team hub: HTTP app, the service behind it, auth, clocks; storage/
                  (SQLite, PostgreSQL, copying a hub's database); upstream/ (the team's
                  intermediary: hub.toml, shared polling, webhooks); its team pages (web/)
    store/        SQLite: connection, migrations, one repository per kind of record, backup
                  and recovery
    sandbox/      fake GitHub, GitLab and Jira servers and demo data
    config.py, errors.py, logging.py   the config Structs, the exception tree, structlog set-up
    environment.py, redact.py          the environment file (tokens), secrets out of text
"""

from projctl_client import __version__

__all__ = ["__version__"]
