"""The HTTP side of ods: the MinIO webhook bridge today (events_bridge); the HTTP API grows here."""
