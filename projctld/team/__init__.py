"""Team events: the sync with the hub, the workflow engine, and the requests that record events."""
