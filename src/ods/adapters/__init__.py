"""I/O behind narrow protocols, built by factories from settings."""
