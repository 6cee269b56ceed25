"""The application layer: the stages the CLI, the Prefect tasks and the HTTP API call."""
