"""Shared core of the maildaemons suite: daemon start-up, forking server, line I/O, store, users,
config, stats and relay support. Nothing here imports from a daemon package."""
