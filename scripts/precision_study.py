#!/usr/bin/env python3
"""How close a 16-bit GPU engine can get to the float32 references, worked out from the references alone.

    python3 scripts/precision_study.py fixtures/demo fixtures/linear ../shared/fixtures/tiny-llama
    python3 scripts/precision_study.py --budget fixtures/demo      # which rounding costs the most

For each fixture set it runs a float64 Llama + LoRA forward over the stored files that rounds values to a
16-bit type exactly where the CUDA backend stores them in 16 bits, and nowhere else:
  weights      every weight, norms and adapter A/B included (in float16 each A and B times the power of
               two that brings its largest value to [2^14, 2^15), as the engine stores them; the adapter's
               scaling is applied in float32);
  GEMM inputs  every matrix-product input: the RMS-normed hidden, the attention output, silu(gate)*up and
               the final normed hidden. Sums, the residual stream, the LoRA intermediate A x, attention
               scores and logits stay wide, as the engine keeps them in float32;
  q            the query after RoPE;
  KV cache     keys after RoPE and values.
It is teacher-forced over every variant (base and each adapter) and prompt in refs.json and compares the
rows the tests compare: the logits at every prompt position and at each greedy step. Per fixture set and
type it prints the worst row's relative L2 error, the worst row's max|ours - ref| / max|ref|, and how many
greedy steps whose reference top-1/top-2 margin exceeds 0.1 would pick another token.

The float32 line rounds nothing: it checks that this forward is right (about 1e-5) and the script stops
if it is not. bfloat16 keeps float32's range with 8 significant bits, float16 has 11 bits but tops out at
65504; these small models never approach that, so only the precision difference shows here, and it is why
the CUDA backend computes in float16 by default. --budget turns on one rounding at a time to show which
one dominates.

numpy only: safetensors are read from their documented layout (8-byte header length, JSON header, data).
"""

import argparse
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rope_frequencies import rope_inverse_frequencies

Rounding = Callable[[np.ndarray], np.ndarray]
LORA_MODULES = {
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}
# A greedy step is only expected to keep its token when the reference's top two are this far apart.
FLIP_MARGIN = 0.1
# Far above float64-vs-float32 noise (1e-5) and far below the smallest 16-bit error (1e-3 and up).
SELF_CHECK_LIMIT = 1e-3


def keep(values: np.ndarray) -> np.ndarray:
    return values


def round_bfloat16(values: np.ndarray) -> np.ndarray:
    """Round to the nearest bfloat16, ties to even, from float32 bits as the GPU converts float32 values."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def round_float16(values: np.ndarray) -> np.ndarray:
    # Through float32 first, as the engine's values are float32 when they are stored as half.
    return np.asarray(values, np.float32).astype(np.float16).astype(np.float64)


ENGINE_TYPES: dict[str, Rounding] = {"bfloat16": round_bfloat16, "float16": round_float16}


def round_adapter_matrix(rounding: Rounding, values: np.ndarray) -> np.ndarray:
    """An adapter's A or B as the engine's slots hold it: in float16 times a power of two (exact) that keeps small
    values clear of the subnormals, rounded, then divided again; bfloat16 has float32's range and needs none."""
    largest = float(np.abs(values).max())
    if rounding is not round_float16 or largest == 0.0:
        return rounding(values)
    unit = 2.0 ** (15 - math.frexp(largest)[1])
    return rounding(values * unit) / unit


@dataclass(frozen=True)
class RoundedPlaces:
    """Which stored values the emulated engine rounds to its 16-bit type."""
    weights: Rounding = keep
    gemm_inputs: Rounding = keep
    query: Rounding = keep
    kv_cache: Rounding = keep


def every_place(rounding: Rounding) -> RoundedPlaces:
    return RoundedPlaces(rounding, rounding, rounding, rounding)


def one_place(name: str, rounding: Rounding) -> RoundedPlaces:
    return RoundedPlaces(**{name: rounding})


BUDGET_PLACES = {"weights": "weights", "gemm_inputs": "GEMM inputs", "query": "q", "kv_cache": "KV cache"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as float64 (exact for the F32/BF16/F16 it may hold)."""
    data = path.read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_length])
    body = 8 + header_length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[body + begin:body + end]
        if entry["dtype"] == "F32":
            values = np.frombuffer(raw, "<f4")
        elif entry["dtype"] == "BF16":
            values = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif entry["dtype"] == "F16":
            values = np.frombuffer(raw, "<f2")
        else:
            raise ValueError(f"{path}: {name} has dtype {entry['dtype']}; only F32, BF16 and F16 are expected")
        tensors[name] = values.astype(np.float64).reshape(entry["shape"])
    return tensors


@dataclass
class Model:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    inverse_frequencies: np.ndarray
    weights: dict[str, np.ndarray]


def read_model(model_dir: Path) -> Model:
    config = json.loads((model_dir / "config.json").read_text())
    num_heads = config["num_attention_heads"]
    head_dim = config.get("head_dim", config["hidden_size"] // num_heads)
    weights = read_safetensors(model_dir / "model.safetensors")
    if config.get("tie_word_embeddings", False):
        # Tied checkpoints store no lm_head: the output projection is the embedding table.
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    return Model(
        num_layers=config["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=config.get("num_key_value_heads", num_heads),
        head_dim=head_dim,
        rms_norm_eps=config["rms_norm_eps"],
        inverse_frequencies=rope_inverse_frequencies(config, head_dim),
        weights=weights,
    )


@dataclass
class Adapter:
    scaling: float
    # (layer, module) -> (A [rank, in], B [out, rank])
    pairs: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def lora_scaling(adapter_config: dict) -> float:
    # rsLoRA divides by sqrt(rank) so that the update's size does not shrink as the rank grows.
    rank, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / math.sqrt(rank) if adapter_config.get("use_rslora", False) else alpha / rank


def read_adapter(adapter_dir: Path, num_layers: int, expected_scaling: float | None) -> Adapter:
    """An adapter's LoRA pairs, with which layers and modules it targets taken from adapter_config.json."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    for unsupported in ("rank_pattern", "alpha_pattern"):
        if config.get(unsupported):
            raise ValueError(f"{adapter_dir}: {unsupported} is not handled by this study")
    if config.get("use_dora", False) or not isinstance(config["target_modules"], list):
        raise ValueError(f"{adapter_dir}: only plain LoRA with a list of target_modules is handled")
    scaling = lora_scaling(config)
    if expected_scaling is not None and not math.isclose(scaling, expected_scaling, rel_tol=1e-9):
        raise ValueError(f"{adapter_dir}: scaling {scaling} from adapter_config.json, refs.json says {expected_scaling}")
    layers = config.get("layers_to_transform")
    if layers is None:
        layers = list(range(num_layers))
    elif isinstance(layers, int):
        layers = [layers]
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    adapter = Adapter(scaling)
    for layer in layers:
        for module in config["target_modules"]:
            prefix = f"base_model.model.model.layers.{layer}.{LORA_MODULES[module]}.{module}"
            adapter.pairs[(layer, module)] = (tensors.pop(f"{prefix}.lora_A.weight"),
                                              tensors.pop(f"{prefix}.lora_B.weight"))
    if tensors:
        raise ValueError(f"{adapter_dir}: tensors outside the configured targets: {sorted(tensors)[:3]}")
    return adapter


def rms_norm(hidden: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return hidden / np.sqrt((hidden * hidden).mean(-1, keepdims=True) + eps) * weight


def apply_rope(heads: np.ndarray, inverse_frequencies: np.ndarray) -> np.ndarray:
    """Rotate [tokens, heads, head_dim] by position, pairing dimension i with i + head_dim/2 as Llama does."""
    angles = np.arange(heads.shape[0])[:, None, None] * inverse_frequencies[None, None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = np.split(heads, 2, axis=-1)
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def causal_attention(query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[tokens, heads, head_dim] attention, each group of query heads sharing one KV head (GQA)."""
    group = query.shape[1] // keys.shape[1]
    keys, values = np.repeat(keys, group, axis=1), np.repeat(values, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", query, keys) / math.sqrt(query.shape[-1])
    tokens = query.shape[0]
    scores[:, np.triu(np.ones((tokens, tokens), bool), 1)] = -np.inf
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", probabilities, values).reshape(tokens, -1)


def forward(model: Model, adapter: Adapter | None, token_ids: list[int], places: RoundedPlaces) -> np.ndarray:
    """Logits [tokens, vocab] of one sequence; model and adapter weights must already be rounded."""
    weights = model.weights
    eps = model.rms_norm_eps

    def project(inputs: np.ndarray, layer: int, module: str) -> np.ndarray:
        output = inputs @ weights[f"model.layers.{layer}.{LORA_MODULES[module]}.{module}.weight"].T
        pair = adapter.pairs.get((layer, module)) if adapter else None
        if pair:
            lora_a, lora_b = pair
            output = output + adapter.scaling * ((inputs @ lora_a.T) @ lora_b.T)
        return output

    tokens = len(token_ids)
    hidden = weights["model.embed_tokens.weight"][token_ids]
    for layer in range(model.num_layers):
        prefix = f"model.layers.{layer}."
        normed = places.gemm_inputs(rms_norm(hidden, weights[prefix + "input_layernorm.weight"], eps))
        query = project(normed, layer, "q_proj").reshape(tokens, model.num_heads, model.head_dim)
        keys = project(normed, layer, "k_proj").reshape(tokens, model.num_kv_heads, model.head_dim)
        values = project(normed, layer, "v_proj").reshape(tokens, model.num_kv_heads, model.head_dim)
        query = places.query(apply_rope(query, model.inverse_frequencies))
        keys = places.kv_cache(apply_rope(keys, model.inverse_frequencies))
        values = places.kv_cache(values)
        attended = places.gemm_inputs(causal_attention(query, keys, values))
        hidden = hidden + project(attended, layer, "o_proj")
        normed = places.gemm_inputs(rms_norm(hidden, weights[prefix + "post_attention_layernorm.weight"], eps))
        gate, up = project(normed, layer, "gate_proj"), project(normed, layer, "up_proj")
        activated = places.gemm_inputs(gate / (1 + np.exp(-gate)) * up)
        hidden = hidden + project(activated, layer, "down_proj")
    final = places.gemm_inputs(rms_norm(hidden, weights["model.norm.weight"], eps))
    return final @ weights["lm_head.weight"].T


@dataclass
class FixtureSet:
    name: str
    model: Model
    adapters: dict[str, Adapter]
    refs: dict
    reference_logits: dict[str, np.ndarray]


def read_fixture_set(root: Path) -> FixtureSet:
    model = read_model(root / "model")
    refs = json.loads((root / "refs.json").read_text())
    adapters = {
        adapter_id: read_adapter(root / "adapters" / adapter_id, model.num_layers,
                                 refs.get("adapters", {}).get(adapter_id, {}).get("scaling"))
        for adapter_id in refs["variants"] if adapter_id != "base"
    }
    return FixtureSet(root.resolve().name, model, adapters, refs, read_safetensors(root / "refs.safetensors"))


def with_rounded_weights(fixtures: FixtureSet, rounding: Rounding) -> tuple[Model, dict[str, Adapter]]:
    model = fixtures.model
    rounded_model = Model(model.num_layers, model.num_heads, model.num_kv_heads, model.head_dim,
                          model.rms_norm_eps, model.inverse_frequencies,
                          {name: rounding(tensor) for name, tensor in model.weights.items()})
    rounded_adapters = {
        adapter_id: Adapter(adapter.scaling, {target: (round_adapter_matrix(rounding, a), round_adapter_matrix(rounding, b))
                                               for target, (a, b) in adapter.pairs.items()})
        for adapter_id, adapter in fixtures.adapters.items()
    }
    return rounded_model, rounded_adapters


@dataclass
class Errors:
    worst_l2: float = 0.0
    worst_max: float = 0.0
    flips: int = 0
    decisive_steps: int = 0  # greedy steps whose reference margin exceeds FLIP_MARGIN


def compare(fixtures: FixtureSet, places: RoundedPlaces) -> Errors:
    model, adapters = with_rounded_weights(fixtures, places.weights)
    errors = Errors()
    for variant, runs in fixtures.refs["variants"].items():
        for run in runs:
            prompt_index = run["prompt"]
            prompt_ids = fixtures.refs["prompts"][prompt_index]["ids"]
            greedy_ids = run["greedy_ids"]
            # Teacher forcing: feeding the reference's own greedy tokens puts every step's row in one pass.
            logits = forward(model, adapters.get(variant), prompt_ids + greedy_ids[:-1], places)
            prompt_ref = fixtures.reference_logits[f"{variant}/{prompt_index}/prompt"]
            steps_ref = fixtures.reference_logits[f"{variant}/{prompt_index}"]
            # Greedy step 0 is the last prompt row: the steps start there.
            ours = np.concatenate([logits[:len(prompt_ids)], logits[len(prompt_ids) - 1:]])
            ref = np.concatenate([prompt_ref, steps_ref])
            difference = ours - ref
            errors.worst_l2 = max(errors.worst_l2,
                                  (np.linalg.norm(difference, axis=1) / np.linalg.norm(ref, axis=1)).max())
            errors.worst_max = max(errors.worst_max, (np.abs(difference).max(1) / np.abs(ref).max(1)).max())
            top_two = np.sort(steps_ref, axis=1)[:, -2:]
            decisive = top_two[:, 1] - top_two[:, 0] > FLIP_MARGIN
            chosen = logits[len(prompt_ids) - 1:].argmax(1)
            errors.decisive_steps += int(decisive.sum())
            errors.flips += int((decisive & (chosen != np.array(greedy_ids))).sum())
    return errors


def studied_configurations(budget: bool) -> list[tuple[str, str, RoundedPlaces]]:
    """(engine type, what is rounded, places) for each line of a fixture set's table."""
    lines = [("float32", "nothing", RoundedPlaces())]
    for type_name, rounding in ENGINE_TYPES.items():
        lines.append((type_name, "all", every_place(rounding)))
        if budget:
            lines += [(type_name, f"{label} only", one_place(place, rounding))
                      for place, label in BUDGET_PLACES.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture_dirs", nargs="+", type=Path,
                        help="fixture sets with model/, adapters/, refs.json and refs.safetensors")
    parser.add_argument("--budget", action="store_true",
                        help="also round one place at a time (weights, GEMM inputs, q, KV cache)")
    args = parser.parse_args()

    print(f"{'fixture set':<12} {'type':<9} {'rounded':<18} {'worst L2 rel':>12} {'worst max rel':>13}"
          f"  greedy flips (margin > {FLIP_MARGIN})")
    for fixture_dir in args.fixture_dirs:
        fixtures = read_fixture_set(fixture_dir)
        for type_name, rounded, places in studied_configurations(args.budget):
            errors = compare(fixtures, places)
            print(f"{fixtures.name:<12} {type_name:<9} {rounded:<18} {errors.worst_l2:>12.2e} "
                  f"{errors.worst_max:>13.2e}  {errors.flips} of {errors.decisive_steps}", flush=True)
            if type_name == "float32" and errors.worst_l2 > SELF_CHECK_LIMIT:
                sys.exit(f"{fixture_dir}: the unrounded forward is {errors.worst_l2:.2e} from the references "
                         f"(limit {SELF_CHECK_LIMIT}): this study's forward is wrong for these files")


if __name__ == "__main__":
    main()
