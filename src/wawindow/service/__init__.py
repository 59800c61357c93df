"""The service: the one app builder every role is served by, running roles in one process,
and health. It may import every layer; no layer imports it."""
