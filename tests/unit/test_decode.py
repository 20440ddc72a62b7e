"""The fast decode loop gives the transformers loop's tunes, token for token, and LlamaStep its logits, bit for bit."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith import paths
from tunesmith.generator.decode import LlamaStep, UnsupportedModel
from tunesmith.generator.evaluate import eval_headers
from tunesmith.generator.model import LOOPS, TuneGenerator
from tunesmith.music.abc import Header

CHECKPOINT = paths.CHECKPOINTS / "tune-generator"


@pytest.fixture(scope="module")
def gen():
    return TuneGenerator.from_pretrained(CHECKPOINT, threads=1)


def both_loops(gen, *args, **kwargs) -> dict[str, list[str]]:
    """The same call through each loop."""
    tunes = {}
    for loop in LOOPS:
        gen.loop = loop
        try:
            tunes[loop] = gen.generate(*args, **kwargs)
        finally:
            gen.loop = LOOPS[0]
    return tunes


def test_the_fast_loop_is_the_default(gen):
    assert gen.loop == "fast" and LOOPS == ("fast", "transformers")
    with pytest.raises(ValueError, match="loop must be one of fast, transformers"):
        TuneGenerator(gen.model, gen.tokenizer, loop="compiled")


def test_the_evaluation_tunes_are_the_same_in_both_loops(gen):
    """``make eval``'s 48 seeded tunes, generated as it does (batches of 16, bar-aware with the key prior)."""
    headers, seeds = eval_headers(48), list(range(48))
    for first in range(0, 48, 16):
        tunes = both_loops(gen, headers[first:first + 16], seeds[first:first + 16])
        assert tunes["fast"] == tunes["transformers"]


@pytest.mark.parametrize("mode", ["no key prior", "plain sampling"])
def test_the_other_decoding_modes_are_the_same_in_both_loops(gen, mode):
    headers, seeds = eval_headers(48)[::6], list(range(0, 48, 6))
    weight = gen.key_weight
    try:
        if mode == "no key prior":
            gen.key_weight = 0.0
            tunes = both_loops(gen, headers, seeds)
        else:
            tunes = both_loops(gen, headers, seeds, constrained=False)
    finally:
        gen.key_weight = weight
    assert tunes["fast"] == tunes["transformers"]


def test_openings_temperatures_and_lengths_per_row_are_the_same_in_both_loops(gen):
    jig, reel = Header(meter="6/8", key="D", rhythm="jig"), Header(meter="4/4", key="G", rhythm="reel")
    tunes = both_loops(gen, [jig, reel, jig], [1, 2, 3], temperature=[0.6, 1.0, 1.4], bars=[4, 8, 12],
                       prefixes=["A2B c2d | e2f g", None, "d2B A2F |"])
    assert tunes["fast"] == tunes["transformers"]
    single = both_loops(gen, [reel], [5], bars=6)
    assert single["fast"] == single["transformers"]


def tiny_llama(**config) -> LlamaForCausalLM:
    """A random Llama; widths are multiples of 32 floats, as the shipped ones (see the decode module)."""
    torch.manual_seed(0)
    settings = dict(vocab_size=50, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, head_dim=16, max_position_embeddings=64)
    return LlamaForCausalLM(LlamaConfig(**{**settings, **config})).eval()


def assert_same_logits(model, rows: int = 3, steps: int = 20) -> None:
    step = LlamaStep(model)
    ids = torch.randint(3, model.config.vocab_size, (rows, 4), generator=torch.Generator().manual_seed(1))
    cache = step.new_cache(rows, 4 + steps)
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        ours = step(ids, cache)
        for i in range(steps):
            assert torch.equal(out.logits[:, -1], ours), f"step {i}"
            ids = torch.randint(3, model.config.vocab_size, (rows, 1), generator=torch.Generator().manual_seed(i))
            out = model(input_ids=ids, cache=out.cache, use_cache=True, logits_to_keep=1)
            ours = step(ids, cache)


@pytest.mark.parametrize("checkpoint", ["tune-generator", "tune-generator-v2"])
def test_llama_step_gives_the_models_own_logits(checkpoint):
    model = TuneGenerator.from_pretrained(paths.CHECKPOINTS / checkpoint).model
    assert_same_logits(model)


@pytest.mark.parametrize("config", [
    {"num_key_value_heads": 2},  # grouped-query attention
    {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False},
])
def test_llama_step_follows_the_config(config):
    assert_same_logits(tiny_llama(**config))


def test_a_model_the_step_does_not_implement_is_refused_by_name_and_keeps_the_reference_loop(gen):
    model = tiny_llama(hidden_act="gelu", vocab_size=gen.model.config.vocab_size)
    with pytest.raises(UnsupportedModel, match="hidden_act 'gelu'"):
        LlamaStep(model)
    assert TuneGenerator(model, gen.tokenizer).loop == "transformers"
    cache = LlamaStep(gen.model).new_cache(1, 8)
    with pytest.raises(ValueError, match="the cache holds 8 positions"):
        LlamaStep(gen.model)(torch.ones(1, 9, dtype=torch.long), cache)
