"""Where a warm single-query embedding's time goes: the packaged MiniLM, one question per call.

Times, interleaved question by question (each sees the same machine load):
``SentenceTransformerEmbedder.embed`` (what ``search_index`` calls; the baseline), its token counting and
batching alone, ``SentenceTransformer.encode`` on the one text, the model's tokenizer alone, and the bare forward pass (``model.forward`` on the tokenized text)
under ``torch.no_grad`` and ``torch.inference_mode``; each row's ratio is to the baseline's. Also prints
the largest difference between ``embed``'s vectors and the bare forward pass's. A one-text path in
``embed`` (tokenize, forward under ``inference_mode``, normalise) was tried: same vectors (1.5e-8), same
p10 (22.4 against 22.5 ms), so not kept.

    .venv/bin/python benchmarks/query_embedding.py --rounds 50
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

QUESTIONS = [
    "What problems and concerns are there in making up descriptive titles?",
    "How can actually pertinent data, as opposed to references or entire articles themselves, be retrieved "
    "automatically in response to information requests?",
    "returns policy",
    "What is information science? Give definitions where possible.",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=50, help="times each question is embedded per variant")
    arguments = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from ods.factories import build_embedder
    from ods.settings import load_settings

    embedder: Any = build_embedder(load_settings().embedding)
    embedder.embed(["load the model before anything is timed"])
    model = embedder.model
    tokenize = getattr(model, "preprocess", None) or model.tokenize

    def forward(question: str, mode: Callable[[], Any]) -> Any:
        features = tokenize([question])
        with mode():
            return model.forward(features)["sentence_embedding"].numpy()

    variants: dict[str, Callable[[str], Any]] = {
        "embed (baseline)": lambda q: embedder.embed([q]),
        "token count + batching alone": lambda q: embedder._forward_batches([q]),
        "SentenceTransformer.encode": lambda q: model.encode(
            [q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ),
        "tokenizer alone": lambda q: tokenize([q]),
        "forward, torch.no_grad": lambda q: forward(q, torch.no_grad),
        "forward, torch.inference_mode": lambda q: forward(q, torch.inference_mode),
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
    base = float(np.percentile(seconds["embed (baseline)"], 50))
    print(f"torch threads {torch.get_num_threads()}, {len(QUESTIONS) * arguments.rounds} calls per variant")
    base10 = float(np.percentile(seconds["embed (baseline)"], 10))
    print(f"{'variant':32} {'p10 ms':>8} {'p50 ms':>8} {'p10 / base':>11} {'p50 / base':>11}")
    for name, values in seconds.items():
        p10, p50 = np.percentile(values, 10), np.percentile(values, 50)
        print(f"{name:32} {p10 * 1e3:8.2f} {p50 * 1e3:8.2f} {p10 / base10:11.2f} {p50 / base:11.2f}")
    difference = max(
        float(np.abs(embedder.embed([q])[0] - forward(q, torch.inference_mode)[0]).max()) for q in QUESTIONS
    )
    print(f"largest |embed - bare forward| over the questions: {difference:.2e}")


if __name__ == "__main__":
    main()
