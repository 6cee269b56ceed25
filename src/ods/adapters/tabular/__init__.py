"""Tabular sources: raw tables (CSV, Parquet, JSON Lines, Excel) read into frames (source)."""
