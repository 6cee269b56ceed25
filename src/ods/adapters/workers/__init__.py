"""Hand-rolled worker processes: the process handle and pipe framing they share (pipes), the isolated
document parser pool (parse_pool), giving freed memory back to the system (process_memory) and asking
whether a process still runs (processes)."""
