"""Great Expectations suite building and result shaping (filled by the prepare_dataset work)."""
