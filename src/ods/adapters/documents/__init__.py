"""Documents: where they are listed and read (source) and how each format is parsed (parsers)."""
