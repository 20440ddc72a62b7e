"""The ABC tokenizer: one token per canonical musical symbol.

A word-level vocabulary over whitespace-separated canonical symbols (see :mod:`tunesmith.music.abc`) is
used instead of BPE because every token must be exactly one note, rest, triplet mark, bar line
or header: then each token has a known length and the bar-aware decoder can work token by token.
It is built with the ``tokenizers`` library and wrapped as a transformers
``PreTrainedTokenizerFast``, so ``AutoTokenizer.from_pretrained(checkpoint)`` loads it.

A training sequence reads ``<s> M:6/8 K:D R:jig <body symbols> </s>``: the three header tokens
come first so that generation is conditioned on them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tunesmith.music.abc import Header, read_tune

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def tune_symbols(abc: str) -> list[str]:
    """A canonical tune as its model symbols: the three header tokens, then the body."""
    header, body = read_tune(abc)
    return header.tokens() + body


def build_tokenizer(sequences: Iterable[list[str]], min_count: int = 1) -> PreTrainedTokenizerFast:
    """Build the word-level tokenizer from symbol sequences (the training split).

    Args:
        sequences: symbol lists as returned by :func:`tune_symbols`.
        min_count: symbols seen fewer times become ``<unk>``.

    Returns:
        A fast tokenizer whose ids are: the special tokens, then header tokens, then body symbols,
        each group ordered by frequency (ties alphabetically) so the vocabulary is reproducible.
    """
    counts: collections.Counter = collections.Counter()
    for seq in sequences:
        counts.update(seq)
    kept = [s for s, n in counts.items() if n >= min_count]
    headers = sorted((s for s in kept if s[:2] in ("M:", "K:", "R:")), key=lambda s: (s[:2], -counts[s], s))
    body = sorted((s for s in kept if s[:2] not in ("M:", "K:", "R:")), key=lambda s: (-counts[s], s))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + headers + body)}
    if "R:none" not in vocab:
        vocab["R:none"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return wrap(core)


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` with the special tokens transformers needs."""
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        model_max_length=1024,
    )


def encode_tune(tokenizer: PreTrainedTokenizerFast, abc: str) -> list[int]:
    """Token ids of a canonical tune including ``<s>`` and ``</s>``."""
    ids = tokenizer.convert_tokens_to_ids(tune_symbols(abc))
    return [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]


def header_ids(tokenizer: PreTrainedTokenizerFast, header: Header) -> list[int]:
    """The prompt for one tune: ``<s>`` and the three header tokens.

    Raises:
        ValueError: when the meter or key is not in the vocabulary (the model never saw it).
            An unknown rhythm is not an error: it conditions as ``R:none``.
    """
    vocab = tokenizer.get_vocab()
    meter, key, rhythm = header.tokens()
    for token, what in ((meter, "meter"), (key, "key")):
        if token not in vocab:
            raise ValueError(f"unsupported {what} {token[2:]!r}")
    if rhythm not in vocab:
        rhythm = "R:none"
    return [tokenizer.bos_token_id, vocab[meter], vocab[key], vocab[rhythm]]
