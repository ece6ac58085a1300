"""The client-facing RPC: the socket server (framing, limits, draining) and the request handlers."""
