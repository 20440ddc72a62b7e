"""The tune model's forward pass for decoding, in plain torch over a preallocated key/value cache.

``transformers`` runs a general-purpose forward pass on every decoding step: it builds masks, asks
its cache object where to append, recomputes the rotary angles, dispatches through attention
back-ends and wraps every result in output classes. For a 1.9M-parameter model that bookkeeping
costs several times the arithmetic itself. :class:`LlamaStep` keeps the same weights (it reads them
from the loaded ``LlamaForCausalLM``, so the checkpoint and ``from_pretrained`` stay as they are)
and does only the arithmetic:

* one matrix product for the query, key and value projections of a layer, and one for the gate
  and up projections of its MLP (their weights concatenated once, at load);
* the rotary cosines and sines computed once for every position, by the model's own rotary module;
* a key/value cache allocated once per batch for the longest tune it may write; a step writes its
  keys and values in place and attends to the filled part;
* RMSNorm, SiLU, residual additions and ``scaled_dot_product_attention`` as the model's layers
  compute them, in the same order, so that the logits are bit for bit those of the model's own
  forward pass (tested on the evaluation's tunes). One caveat: torch's element-wise kernels run
  whole vectors of floats and finish a row's remainder one float at a time, with a last-bit
  difference in a few functions (``exp`` in SiLU). Here the joined projections split rows
  differently from the model's separate ones, so bit-for-bit holds when the widths (hidden,
  MLP, heads x head size) are multiples of the vector width, 32 floats, as in the shipped
  checkpoints; otherwise a logit may differ in its last bit.

Grouped-query attention (fewer key/value heads than query heads), tied or separate output
weights and projection biases follow the checkpoint's config; anything else the Llama config can
say that changes the arithmetic (dynamic rotary scaling, other activations, tensor-parallel
slices) is refused by name, and the caller keeps the ``transformers`` loop for it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F


class UnsupportedModel(ValueError):
    """The checkpoint asks for arithmetic that :class:`LlamaStep` does not implement."""


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: torch.Tensor  # [q; k; v] projection weights, one matrix
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    out_bias: torch.Tensor | None
    mlp_norm: torch.Tensor
    gate_up: torch.Tensor  # [gate; up] projection weights, one matrix
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


class KVCache:
    """Keys and values of every layer for ``rows`` sequences of up to ``length`` positions.

    Allocated uninitialised: a step only ever reads the positions already written.
    """

    def __init__(self, layers: int, rows: int, kv_heads: int, length: int, head_dim: int, dtype: torch.dtype):
        self.keys = [torch.empty(rows, kv_heads, length, head_dim, dtype=dtype) for _ in range(layers)]
        self.values = [torch.empty(rows, kv_heads, length, head_dim, dtype=dtype) for _ in range(layers)]
        self.length = length
        self.filled = 0  # positions written so far


class LlamaStep:
    """Next-token logits of a loaded ``LlamaForCausalLM``, without its per-step framework overhead.

    Args:
        model: the loaded model (in eval mode); its weights are shared, not copied, except the
            concatenated projections.

    Raises:
        UnsupportedModel: naming the config field this step does not implement.
    """

    def __init__(self, model):
        config = model.config
        _check(config)
        self.config = config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.scale = self.head_dim**-0.5
        self.gqa = self.kv_heads != self.heads
        self.max_positions = int(config.max_position_embeddings)
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.dtype = self.embed.dtype
        self.layers = [_layer(layer) for layer in inner.layers[: config.num_hidden_layers]]
        self.norm = inner.norm.weight.detach()
        self.lm_head = model.lm_head.weight.detach()  # the embedding itself when the weights are tied
        self.lm_head_bias = _bias(model.lm_head)
        # what _forward reads, in its order; projections transposed (views), as F.linear hands them to mm
        self.weights = [self.embed]
        self.biases: list[torch.Tensor | None] = []
        for layer in self.layers:
            self.weights += [layer.input_norm, layer.qkv.t(), layer.out.t(), layer.mlp_norm, layer.gate_up.t(),
                             layer.down.t()]
            self.biases += [layer.qkv_bias, layer.out_bias, layer.gate_up_bias, layer.down_bias]
        self.weights += [self.norm, self.lm_head.t()]
        self.biases.append(self.lm_head_bias)
        # eps and the width as tensors: a Python number is wrapped into a tensor on every use
        self.constants = [torch.tensor(self.eps, dtype=self.dtype), torch.tensor(float(config.hidden_size), dtype=self.dtype)]
        # the model's own rotary module, asked once for every position
        positions = torch.arange(self.max_positions)[None]
        with torch.inference_mode():
            cos, sin = inner.rotary_emb(self.embed[:1], positions)
        half = self.head_dim // 2
        # rotate_half(x) * sin == swap_halves(x) * (sin with its first half negated), exactly
        signed = torch.cat((-sin[0, :, :half], sin[0, :, half:]), -1)
        self.cos = cos[0, :, None, :].contiguous()  # position, 1 (head), head_dim
        self.sin = signed[:, None, :].contiguous()
        self.half = half

    def new_cache(self, rows: int, length: int) -> KVCache:
        """A cache for ``rows`` sequences of up to ``length`` positions (at most the model's context)."""
        if length > self.max_positions:
            raise ValueError(f"the model's context is {self.max_positions} positions, not {length}")
        return KVCache(len(self.layers), rows, self.kv_heads, length, self.head_dim, self.dtype)

    def __call__(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append ``ids`` (rows x new positions) to every row and return the logits after the last one.

        Args:
            ids: token ids, shape ``(rows, positions)``: the prompt on the first call, then one token
                per row.
            cache: the rows' cache, advanced in place.

        Returns:
            Logits, shape ``(rows, vocab)``.
        """
        start = cache.filled
        end = start + ids.shape[1]
        if end > cache.length:
            raise ValueError(f"the cache holds {cache.length} positions; step {end} does not fit")
        logits = _FORWARD(ids, self.cos[start:end], self.sin[start:end], self.weights, self.biases, self.constants,
                          cache.keys, cache.values, start, self.heads, self.kv_heads, self.head_dim, self.half,
                          self.scale, self.gqa)
        cache.filled = end
        return logits


def _forward(ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, weights: List[torch.Tensor],
             biases: List[Optional[torch.Tensor]], constants: List[torch.Tensor], keys: List[torch.Tensor],
             values: List[torch.Tensor], start: int, heads: int, kv_heads: int, dim: int, half: int, scale: float,
             gqa: bool) -> torch.Tensor:
    """The step's arithmetic, written in the subset of Python that ``torch.jit.script`` compiles.

    ``weights`` holds the embedding, then six tensors per layer (input norm, [q; k; v]ᵀ, outputᵀ,
    MLP norm, [gate; up]ᵀ, downᵀ), then the final norm and the output layerᵀ; ``biases`` the four
    projections' biases per layer, then the output layer's; ``constants`` the norm's epsilon and
    the hidden width. Activations are kept as (rows x positions, hidden) matrices, so each
    projection is the one ``mm`` (``addmm`` with a bias) that ``F.linear`` would call, without
    its dispatch through ``linear``, ``t`` and ``matmul``.
    """
    rows, count = ids.shape[0], ids.shape[1]
    end = start + count
    eps, width = constants[0], constants[1]
    x = F.embedding(ids.reshape(-1), weights[0])
    for i in range(len(keys)):
        w, b = 1 + 6 * i, 4 * i  # this layer's first weight and bias
        layer_keys, layer_values = keys[i], values[i]
        qkv = _project(_rms_norm(x, weights[w], eps, width), weights[w + 1], biases[b])
        qkv = qkv.view(rows, count, heads + 2 * kv_heads, dim)
        qk = qkv[:, :, : heads + kv_heads]
        qk = qk * cos + qk.roll(half, -1) * sin  # roll by half a head swaps its halves
        layer_keys[:, :, start:end] = qk[:, :, heads:].transpose(1, 2)
        layer_values[:, :, start:end] = qkv[:, :, heads + kv_heads:].transpose(1, 2)
        attended = F.scaled_dot_product_attention(
            qk[:, :, :heads].transpose(1, 2), layer_keys[:, :, :end], layer_values[:, :, :end],
            is_causal=count > 1, scale=scale, enable_gqa=gqa,
        )
        x = x + _project(attended.transpose(1, 2).reshape(rows * count, heads * dim), weights[w + 2], biases[b + 1])
        gate_up = _project(_rms_norm(x, weights[w + 3], eps, width), weights[w + 4], biases[b + 2])
        inner = gate_up.shape[1] // 2
        x = x + _project(F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:]), weights[w + 5], biases[b + 3])
    last = x.view(rows, count, -1)[:, -1]
    return _project(_rms_norm(last, weights[-2], eps, width), weights[-1], biases[-1])


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm`` in float32, op for op: ``mean`` is ``sum`` then a division by the width."""
    variance = torch.addcdiv(eps, x.pow(2).sum(-1, keepdim=True), width)  # eps + (sum / width), rounded as two ops
    return weight * (x * torch.rsqrt(variance))


def _project(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(x, weight_t.T, bias)`` for a matrix ``x``: the ``mm``/``addmm`` it runs."""
    if bias is None:
        return torch.mm(x, weight_t)
    return torch.addmm(bias, x, weight_t)


def scripted(function):
    """``function`` compiled by TorchScript (about 20 ms), which runs its ops with less per-op
    overhead than Python; the plain function where TorchScript is missing or refuses it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, not removed
            return torch.jit.script(function)
    except Exception:  # noqa: BLE001 - any refusal leaves the eager function, same arithmetic
        return function


_FORWARD = scripted(_forward)


def _check(config) -> None:
    """Refuse, by field, a Llama config whose arithmetic :class:`LlamaStep` would get wrong."""
    if getattr(config, "model_type", None) != "llama":
        raise UnsupportedModel(f"model_type {getattr(config, 'model_type', None)!r}: only 'llama' is implemented")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModel(f"hidden_act {config.hidden_act!r}: only 'silu' is implemented")
    if int(getattr(config, "pretraining_tp", 1) or 1) != 1:
        raise UnsupportedModel(f"pretraining_tp {config.pretraining_tp}: only 1 is implemented")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in ("dynamic", "longrope"):  # their angles depend on the sequence length
        raise UnsupportedModel(f"rope_type {kind!r}: angles that change with the length are not implemented")
    if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        raise UnsupportedModel(f"attention implementation {config._attn_implementation!r}")


def _bias(linear) -> torch.Tensor | None:
    return None if linear.bias is None else linear.bias.detach()


def _joined_bias(*linears) -> torch.Tensor | None:
    if all(linear.bias is None for linear in linears):
        return None
    return torch.cat([
        linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features, dtype=linear.weight.dtype)
        for linear in linears
    ])


def _layer(layer) -> _Layer:
    attention, mlp = layer.self_attn, layer.mlp
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    return _Layer(
        input_norm=layer.input_layernorm.weight.detach(),
        qkv=torch.cat([p.weight.detach() for p in projections]),
        qkv_bias=_joined_bias(*projections),
        out=attention.o_proj.weight.detach(),
        out_bias=_bias(attention.o_proj),
        mlp_norm=layer.post_attention_layernorm.weight.detach(),
        gate_up=torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()]),
        gate_up_bias=_joined_bias(mlp.gate_proj, mlp.up_proj),
        down=mlp.down_proj.weight.detach(),
        down_bias=_bias(mlp.down_proj),
    )
