"""Prefect glue shared by the CLI and the tasks: run tagging, orphaned and zombie runs, the redeploy
guard (runs), and the temporary Prefect server a command runs its flows on (temporary_server)."""
