"""Models: embedders (embedder), chat LLMs (llm), the packaged model files (packaged) and model servers
(server: `vllm serve` / `transformers serve` processes)."""
