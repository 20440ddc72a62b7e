"""Train the tune model: ``python -m tunesmith.generator.train`` (``make train``).

Builds the tokenizer on the training split, initialises a small Llama-style causal LM from a
config (nothing is downloaded), trains it for a fixed number of steps with a seeded data order,
and writes a checkpoint that ``TuneGenerator.from_pretrained`` and ``AutoModelForCausalLM`` load:
``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer files, a
loss-curve PNG and ``training_record.json``. A fixed step count (not a time budget) keeps a rerun
with the same seed on the same machine identical; across machines floating-point kernels may
differ, so only closeness is expected there.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from tunesmith import paths
from tunesmith.music.abc import NormaliseError, read_tune, render_tune
from tunesmith.music.pitch import transpose
from tunesmith.music.keys import key_signature
from tunesmith.music.corpus import ABC_DIR, COLLECTIONS, ensure_splits, read_split
from tunesmith.generator.tokenizer import build_tokenizer, encode_tune, tune_symbols

DEFAULT_OUT = paths.CHECKPOINTS / "tune-generator"
QUICK_OUT = paths.BUILD / "quick-tune-generator"  # never overwrites the shipped checkpoint
SEQ_LEN = 512
HEADER_TOKENS = 3  # M:, K:, R: after <s>: conditioning, not predicted


def model_config(tokenizer, size: str = "base") -> LlamaConfig:
    """The architecture: a few-million-parameter Llama with tied embeddings.

    Args:
        tokenizer: sets the vocabulary size and special token ids.
        size: ``"base"`` for the shipped model, ``"tiny"`` for quick tests.
    """
    dims = {"base": (192, 512, 4, 6), "tiny": (32, 64, 1, 2)}[size]
    hidden, inter, layers, heads = dims
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


MAX_SIGNATURE = 4  # transposed copies with more sharps or flats than this are not made


def augment(tunes: list[str], copies: int, rng: random.Random) -> list[str]:
    """Add ``copies`` transposed versions of each tune (-5 to +6 semitones, seeded).

    Transposition multiplies the tunes the model sees in every key, so that a request in a key
    the corpus rarely uses (B minor) is not starved, and a fixed training budget repeats each
    melody less often (less memorisation).
    """
    out = list(tunes)
    shifts = [s for s in range(-5, 7) if s]
    for abc in tunes:
        header, symbols = read_tune(abc)
        for shift in rng.sample(shifts, copies):
            try:
                new_header, new_symbols = transpose(header, symbols, shift)
                if len(key_signature(new_header.key)) > MAX_SIGNATURE:
                    continue
            except (NormaliseError, KeyError, ValueError):
                continue
            out.append(render_tune(new_header, new_symbols))
    return out


def from_collections(tunes: list[str], collections: tuple[str, ...] | None) -> list[str]:
    """Keep the tunes whose ``%source`` line names one of ``collections`` (all when ``None``).

    The split files record each tune's collection (see :mod:`tunesmith.music.corpus`), so a model can
    be trained on one kind of music, e.g. the dance collections without the Essen songs.
    """
    if not collections:
        return tunes
    unknown = set(collections) - set(COLLECTIONS)
    if unknown:
        raise ValueError(f"unknown collections {sorted(unknown)}; known: {', '.join(COLLECTIONS)}")
    wanted = tuple(f"%source {c}/" for c in collections)
    return [t for t in tunes if any(line.startswith(wanted) for line in t.splitlines()[:3])]


def batches(sequences: list[list[int]], batch_tokens: int, rng: random.Random):
    """Yield lists of sequences of similar length holding about ``batch_tokens`` tokens.

    Sequences are shuffled, grouped in windows of 64 sorted by length (little padding), and
    the groups shuffled again, so every epoch differs but is fixed by the seed.
    """
    order = list(range(len(sequences)))
    rng.shuffle(order)
    groups = []
    for start in range(0, len(order), 64):
        window = sorted(order[start:start + 64], key=lambda i: len(sequences[i]))
        batch: list[int] = []
        longest = 0
        for i in window:
            longest_next = max(longest, len(sequences[i]))
            if batch and longest_next * (len(batch) + 1) > batch_tokens:
                groups.append(batch)
                batch, longest_next = [], len(sequences[i])
            batch.append(i)
            longest = longest_next
        if batch:
            groups.append(batch)
    rng.shuffle(groups)
    for group in groups:
        yield [sequences[i] for i in group]


def collate(batch: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; labels ignore padding and the header tokens."""
    longest = max(len(s) for s in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, : 1 + HEADER_TOKENS] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def evaluate_loss(model, sequences: list[list[int]], pad_id: int, batch_tokens: int) -> float:
    """Mean token loss over ``sequences`` (fixed order, so comparable between calls)."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches(sequences, batch_tokens, random.Random(0)):
        inputs = collate(batch, pad_id)
        n = int((inputs["labels"][:, 1:] != -100).sum())
        total += float(model(**inputs).loss) * n
        count += n
    model.train()
    return total / max(count, 1)


def train(
    out_dir: Path = DEFAULT_OUT,
    steps: int = 1300,
    seed: int = 1234,
    batch_tokens: int = 8192,
    lr: float = 2e-3,
    size: str = "base",
    limit: int | None = None,
    eval_every: int = 250,
    threads: int = 1,
    data_dir: Path = ABC_DIR,
    augment_copies: int = 2,
    collections: tuple[str, ...] | None = None,
) -> dict:
    """Train and write the checkpoint.

    Args:
        out_dir: checkpoint folder (created).
        steps: optimiser steps.
        seed: seeds Python, torch and the data order.
        batch_tokens: padded tokens per batch.
        lr: peak learning rate (linear warm-up, cosine decay).
        size: ``"base"`` or ``"tiny"`` (see :func:`model_config`).
        limit: use only the first N training tunes (quick runs).
        eval_every: steps between validation-loss measurements.
        threads: ``torch.set_num_threads``.
        data_dir: folder of the split files (built when missing).
        augment_copies: transposed copies per training tune (see :func:`augment`).
        collections: keep only tunes from these music21 collections (training and validation
            alike, so the validation loss measures the same kind of music); all when ``None``.

    Returns:
        The training record that is also written to ``training_record.json``.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    ensure_splits(data_dir)
    real_train = from_collections(read_split("train", data_dir), collections)[:limit]
    val_tunes = from_collections(read_split("validation", data_dir), collections)[: limit // 10 + 20 if limit else None]
    train_tunes = augment(real_train, augment_copies, random.Random(seed)) if augment_copies else real_train
    tokenizer = build_tokenizer((tune_symbols(t) for t in train_tunes), min_count=3 if augment_copies else 1)
    train_seqs = [encode_tune(tokenizer, t)[:SEQ_LEN] for t in train_tunes]
    val_seqs = [encode_tune(tokenizer, t)[:SEQ_LEN] for t in val_tunes]

    config = model_config(tokenizer, size)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))) * 0.95 + 0.05,
    )
    record = {
        "seed": seed, "steps": steps, "batch_tokens": batch_tokens, "lr": lr, "size": size,
        "params": params, "vocab_size": len(tokenizer), "threads": threads,
        "train_tunes": len(real_train), "train_sequences_with_transpositions": len(train_seqs),
        "augment_copies": augment_copies, "validation_tunes": len(val_seqs),
        "collections": list(collections) if collections else "all",
        "train_tokens": sum(len(s) for s in train_seqs),
        "train_loss": [], "validation_loss": [],
    }
    start = time.perf_counter()
    model.train()
    step = 0
    epoch = 0
    running = []
    progress = tqdm(total=steps, desc="training", unit="step")
    while step < steps:
        for batch in batches(train_seqs, batch_tokens, rng):
            inputs = collate(batch, tokenizer.pad_token_id)
            loss = model(**inputs).loss
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            step += 1
            running.append(loss.item())
            if step % 50 == 0 or step == steps:
                record["train_loss"].append([step, round(sum(running) / len(running), 4)])
                running = []
            if step % eval_every == 0 or step == steps:
                val = evaluate_loss(model, val_seqs, tokenizer.pad_token_id, batch_tokens)
                record["validation_loss"].append([step, round(val, 4)])
                progress.set_postfix(loss=f"{loss.item():.3f}", val=f"{val:.3f}")
            progress.update(1)
            if step >= steps:
                break
        epoch += 1
    progress.close()
    record["epochs"] = round(step / max(1, len(list(batches(train_seqs, batch_tokens, random.Random(0))))), 2)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["torch"] = torch.__version__
    save(model, tokenizer, out_dir, record)
    return record


def save(model, tokenizer, out_dir: Path, record: dict) -> None:
    """Write weights, config, generation defaults, tokenizer, loss curve and record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=1.0, max_new_tokens=700,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_losses(record, out_dir / "loss_curve.png")


def plot_losses(record: dict, path: Path) -> None:
    """Train and validation loss against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if record["train_loss"]:
        ax.plot(*zip(*record["train_loss"]), label="train")
    if record["validation_loss"]:
        ax.plot(*zip(*record["validation_loss"]), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"tune generator, {record['params'] / 1e6:.1f} M parameters")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command line; ``--quick`` trains a tiny model on a few tunes in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"checkpoint folder (default {DEFAULT_OUT}, or {QUICK_OUT} with --quick)")
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on a shared 2-core machine one thread was 3-4x faster than two")
    parser.add_argument("--augment", type=int, default=2, help="transposed copies per training tune")
    parser.add_argument("--collections", default=None,
                        help="comma-separated music21 collections to train on (default: all), "
                             "e.g. oneills1850,ryansMammoth,airdsAirs for dance tunes only")
    parser.add_argument("--quick", action="store_true", help="tiny model, 200 tunes, 20 steps, in seconds")
    args = parser.parse_args(argv)
    collections = tuple(c.strip() for c in args.collections.split(",") if c.strip()) if args.collections else None
    if args.quick:
        record = train(args.out or QUICK_OUT, steps=20, seed=args.seed, batch_tokens=2048, size="tiny", limit=200,
                       eval_every=10, threads=args.threads, augment_copies=args.augment, collections=collections)
    else:
        record = train(args.out or DEFAULT_OUT, steps=args.steps, seed=args.seed, batch_tokens=args.batch_tokens, lr=args.lr,
                       threads=args.threads, augment_copies=args.augment, collections=collections)
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("_loss")}, indent=1))


if __name__ == "__main__":
    main()
