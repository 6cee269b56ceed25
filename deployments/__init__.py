"""Work-pool job templates and a local `serve` entry point for the flows."""
