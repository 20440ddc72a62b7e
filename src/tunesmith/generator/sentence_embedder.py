"""Sentence embeddings from a sentence-transformers folder, with ``transformers`` alone.

all-MiniLM-L6-v2 is a BERT encoder followed by two steps: the mean of its token vectors (padding
excluded) and a scaling to unit length. ``sentence-transformers`` runs exactly that, but importing
it costs about 3 s of CPU (it pulls in scikit-learn and its training stack), which every inference
worker paid at start for three models that embed prompts (the prompt encoder, ``brief`` and the
drift detector). :class:`MeanPoolingEmbedder` reads the same folder, checks that its
``modules.json`` says Transformer -> mean Pooling -> Normalize (anything else is refused, and the
caller loads it with ``sentence-transformers``), and reproduces ``SentenceTransformer.encode``'s
arithmetic: same tokenizer settings (``max_seq_length``, truncation), same pooling, same
normalisation. Its embeddings agree with ``sentence-transformers``' to float rounding (tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"


class UnsupportedFolder(ValueError):
    """The folder's modules are not Transformer -> mean Pooling (-> Normalize)."""


class MeanPoolingEmbedder:
    """``encode(texts)`` as ``SentenceTransformer.encode`` gives it, for mean-pooling models.

    Args:
        folder: a sentence-transformers model folder (``modules.json``, the transformer at its root).

    Raises:
        UnsupportedFolder: naming the module or setting this class does not implement.
    """

    def __init__(self, folder: str | Path):
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        self.normalize = _check_modules(folder)
        settings = json.loads((folder / "sentence_bert_config.json").read_text()) \
            if (folder / "sentence_bert_config.json").exists() else {}
        if settings.get("do_lower_case"):
            raise UnsupportedFolder("sentence_bert_config.json: do_lower_case true is not implemented")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.max_length = int(settings.get("max_seq_length") or self.tokenizer.model_max_length)

    def encode(self, sentences: list[str], batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_numpy: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        """One row per sentence, in the given order (batched longest first, as sentence-transformers does)."""
        import torch
        texts = list(sentences)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows: list = [None] * len(texts)
        for first in range(0, len(texts), max(batch_size, 1)):
            chosen = order[first:first + batch_size]
            batch = self.tokenizer([texts[i] for i in chosen], padding=True, truncation="longest_first",
                                   max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                tokens = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).expand(tokens.size()).to(tokens.dtype)
                pooled = torch.sum(tokens * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                if normalize_embeddings:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            for i, row in zip(chosen, pooled):
                rows[i] = row
        if not rows:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return torch.stack(rows).numpy()


def _check_modules(folder: Path) -> bool:
    """Whether the modules end with Normalize; refuses anything but Transformer -> mean Pooling (-> Normalize)."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError) as error:
        raise UnsupportedFolder(f"{folder}: no readable modules.json ({error})") from None
    kinds = [module.get("type") for module in modules]
    if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]) or modules[0].get("path") != "":
        raise UnsupportedFolder(f"modules.json lists {kinds}: only Transformer -> Pooling (-> Normalize) is implemented")
    pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    modes = sorted(key for key, value in pooling.items() if key.startswith("pooling_mode") and value)
    if modes != ["pooling_mode_mean_tokens"]:
        raise UnsupportedFolder(f"pooling {modes}: only pooling_mode_mean_tokens is implemented")
    return len(kinds) == 3
