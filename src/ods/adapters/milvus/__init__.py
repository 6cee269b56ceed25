"""Milvus: the client and its retries (client), the vector index of a knowledge base (index), the Milvus Lite
server process (lite_server) and the dense snapshots of Lite collections (dense_snapshot)."""
