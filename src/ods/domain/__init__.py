"""Pure logic: no I/O, no Prefect, no client libraries (enforced by import-linter)."""
