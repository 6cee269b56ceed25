"""Where a warm single-query embedding's time goes, and what makes it faster: the packaged MiniLM, one
question per call.

Times, interleaved question by question (each sees the same machine load), each row's ratio to the
baseline's (``SentenceTransformerEmbedder.embed`` on torch, what ``search_index`` called before):

- torch: ``embed``, its token counting and batching alone, the tokenizer alone, the bare forward pass;
  the torch rows again with one torch thread;
- ONNX Runtime over the model's ONNX export (``ods.adapters.models.onnx_encoder``): ``embed`` with
  ``query_runtime="onnx"`` (all graph optimisations, ONNX Runtime's default threads: the default), basic
  graph optimisations only, one thread, and int8 dynamic quantisation of the weights;
- ``embed`` answering a repeated question from its cache of recent questions (``query_cache``).

Then, for each variant's vectors: the largest difference from torch's over the questions, and on CISI
(``--corpora``; its 1,460 documents embedded once with torch, cached under ``--data``) the nDCG@10 of exact
dense search with that variant's query vectors and its recall@10 against torch's top 10 (≥ 0.95 keeps
what ingest stored comparable).

    .venv/bin/python benchmarks/query_embedding.py --rounds 25
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What problems and concerns are there in making up descriptive titles?",
    "How can actually pertinent data, as opposed to references or entire articles themselves, be retrieved "
    "automatically in response to information requests?",
    "returns policy",
    "What is information science? Give definitions where possible.",
]


def onnx_session(path: Path, level: str, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=25, help="times each question is embedded per variant")
    parser.add_argument(
        "--corpora",
        type=Path,
        default=Path(os.environ.get("ODS_TEST_CORPORA") or REPO_ROOT.parent / "shared" / "corpora"),
    )
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".ods" / "benchmarks" / "query_embedding")
    arguments = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sys.path.insert(0, str(REPO_ROOT))
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ods.adapters.models.embedder import SentenceTransformerEmbedder

    arguments.data.mkdir(parents=True, exist_ok=True)
    cache = arguments.data / "onnx"
    embedder = SentenceTransformerEmbedder(query_runtime="torch")
    fast = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=cache)
    remembering = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=cache, query_cache=256)
    for warm in (embedder, fast, remembering):
        warm.embed(["load the model before anything is timed"])
    assert fast.query_runtime == "onnx", "ONNX Runtime did not load; see the logged warning"
    graph = next(cache.glob("*.onnx"))
    quantised = arguments.data / "int8.onnx"
    if not quantised.is_file():
        with tempfile.TemporaryDirectory() as scratch:
            quantize_dynamic(graph, Path(scratch) / "int8.onnx", weight_type=QuantType.QInt8)
            (Path(scratch) / "int8.onnx").replace(quantised)
    model = embedder.model
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    tokenizer = fast._onnx._tokenizer  # type: ignore[union-attr]  # the encoder's own, already set up

    def forward(question: str) -> Any:
        features = tokenize([question])
        with torch.inference_mode():
            return model.forward(features)["sentence_embedding"].numpy()

    def run_onnx(session: Any) -> Callable[[str], Any]:
        def call(question: str) -> Any:
            encoding = tokenizer.encode_batch([question])[0]
            ids = np.asarray([encoding.ids], dtype=np.int64)
            mask = np.asarray([encoding.attention_mask], dtype=np.int64)
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

        return call

    def one_thread(call: Callable[[str], Any]) -> Callable[[str], Any]:
        def wrapped(question: str) -> Any:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return call(question)
            finally:
                torch.set_num_threads(threads)

        return wrapped

    variants: dict[str, Callable[[str], Any]] = {
        "torch embed (baseline)": lambda q: embedder.embed([q]),
        "torch token count + batching": lambda q: embedder._forward_batches([q]),
        "torch tokenizer alone": lambda q: tokenize([q]),
        "torch forward, inference_mode": forward,
        "torch embed, 1 thread": one_thread(lambda q: embedder.embed([q])),
        "onnx embed (default)": lambda q: fast.embed([q]),
        "onnx basic graph opt.": run_onnx(onnx_session(graph, "ORT_ENABLE_BASIC", 0)),
        "onnx all opt., 1 thread": run_onnx(onnx_session(graph, "ORT_ENABLE_ALL", 1)),
        "onnx int8 dynamic quant.": run_onnx(onnx_session(quantised, "ORT_ENABLE_ALL", 0)),
        "onnx embed, repeated question": lambda q: remembering.embed([q]),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        call(QUESTIONS[0])
    for _ in range(arguments.rounds):
        for question in QUESTIONS:
            for name, call in variants.items():
                started = time.perf_counter()
                call(question)
                seconds[name].append(time.perf_counter() - started)
    base10 = float(np.percentile(seconds["torch embed (baseline)"], 10))
    base50 = float(np.percentile(seconds["torch embed (baseline)"], 50))
    print(
        f"torch threads {torch.get_num_threads()}, {len(QUESTIONS) * arguments.rounds} calls per variant, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'variant':32} {'p10 ms':>8} {'p50 ms':>8} {'p10 / base':>11} {'p50 / base':>11}")
    for name, values in seconds.items():
        p10, p50 = np.percentile(values, 10), np.percentile(values, 50)
        print(f"{name:32} {p10 * 1e3:8.2f} {p50 * 1e3:8.2f} {p10 / base10:11.2f} {p50 / base50:11.2f}")
    vector_variants = {
        "torch forward, inference_mode": variants["torch forward, inference_mode"],
        "onnx embed (default)": variants["onnx embed (default)"],
        "onnx basic graph opt.": variants["onnx basic graph opt."],
        "onnx int8 dynamic quant.": variants["onnx int8 dynamic quant."],
    }
    print_quality(arguments, embedder, vector_variants)


def print_quality(arguments: Any, embedder: Any, variants: dict[str, Callable[[str], Any]]) -> None:
    """Largest vector difference from torch, and CISI exact dense nDCG@10 / recall@10 against torch."""
    from benchmarks.retrieval_quality import embed_documents, read_collection, score

    collection = read_collection(arguments.corpora, "cisi")
    doc_ids = list(collection.documents)
    documents = embed_documents(
        [collection.documents[doc_id] for doc_id in doc_ids], embedder, arguments.data, {}
    )
    query_ids = sorted(collection.queries)
    questions = [collection.queries[query_id] for query_id in query_ids]

    def top(vectors: Any, depth: int) -> dict[str, list[str]]:
        similarity = np.asarray(vectors, dtype=np.float32) @ documents.T
        return {
            query_id: [doc_ids[i] for i in np.argsort(-row, kind="stable")[:depth]]
            for query_id, row in zip(query_ids, similarity, strict=True)
        }

    torch_vectors = embedder.embed(questions)
    torch_top = top(torch_vectors, 100)
    base = score(torch_top, collection.relevant)
    print(f"CISI exact dense over {len(doc_ids)} documents, {len(query_ids)} queries:")
    print(f"{'variant':32} {'max |v - torch|':>16} {'nDCG@10':>8} {'recall@10 vs torch':>19}")
    print(f"{'torch embed (baseline)':32} {0.0:16.1e} {base.ndcg10:8.3f} {1.0:19.3f}")
    for name, call in variants.items():
        vectors = np.concatenate([np.asarray(call(question), dtype=np.float32) for question in questions])
        ranked = top(vectors, 100)
        overlap = np.mean([len(set(ranked[q][:10]) & set(torch_top[q][:10])) / 10 for q in query_ids])
        difference = float(np.abs(vectors - torch_vectors).max())
        figures = score(ranked, collection.relevant)
        print(f"{name:32} {difference:16.1e} {figures.ndcg10:8.3f} {overlap:19.3f}")


if __name__ == "__main__":
    main()
