"""The HTTP API for senders (and, to come, finance)."""
