"""The operator console: server-rendered pages at /console (see docs/disposal.md)."""
