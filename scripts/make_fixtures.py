#!/usr/bin/env python3
"""Writes loraserve's own test fixtures (fixtures/demo, fixtures/linear) with their reference outputs.

The shared tiny-llama covers a byte-level BPE tokenizer, untied bf16 weights and default RoPE. These
fixtures cover what it does not: a Llama-2/Mistral byte-fallback tokenizer (in its two on-disk forms),
tied embeddings, llama3 and linear rope_scaling, an explicit head_dim that is not hidden/heads, a config
without head_dim or rope_theta, float16 weights, and adapters restricted to some layers.

Needs torch, transformers 5.17, peft 0.21, tokenizers and safetensors (the GPU machine has them; the
oracle itself runs on its CPU in float32). Everything is seeded, so a rerun writes the same numbers.

    python3 scripts/make_fixtures.py --out fixtures                      # where torch is installed
    python3 scripts/make_fixtures.py --out /tmp/fx --tar $OUT/fixtures.tar  # on the device machine
"""

import os
import sys

# Offline, so that a hub lookup fails at once instead of waiting on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Set-valued fields of adapter_config.json (target_modules) are written in hash order: pin the hash seed
# so that a rerun writes identical files.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

import argparse
import json
import math
import shutil
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, LlamaForCausalLM

from rope_frequencies import rope_inverse_frequencies

STEPS = 24
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
BOS_ID = 1
EOS_ID = 2
# A character seen this often in the corpus gets its own token; rarer ones fall back to byte tokens.
MIN_CHAR_COUNT = 3
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODULE_PATH = {name: ("self_attn." if name in PROJECTIONS[:4] else "mlp.") + name for name in PROJECTIONS}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# LoRA deltas are drawn so that scaling * B @ A has this fraction of the base weight's spread: large
# enough to change greedy tokens within a few steps, small enough not to replace the base model.
LORA_DELTA_RATIO = 0.5
ORACLE = "transformers+peft float32, full recompute each step"
LOGITS_KEY = ("<variant>/<prompt index> -> [steps, vocab] logits at each greedy step; "
              "<variant>/<prompt index>/prompt -> [prompt_len, vocab] logits at every prompt position")

# None: the prompt is the BOS token alone.
PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus München! Café naïve, Straße über Ärger.",
    "日本語のテキスト 🙂 ok",
    "def add(a, b):\n    return a + b\n",
    "   three leading spaces",
    None,
]

# Training text for the tokenizer. Lines are fed without their newline, so "\n" is not learned and falls
# back to <0x0A> as in Llama-2. Accented letters and a few CJK characters repeat (learned); the rest of
# the CJK, the rarer accents and the emoji appear once or twice (byte fallback).
CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun while the fox runs into the forest.
A language model reads the text one token at a time and predicts the next token from the ones before it.
When the server starts, it loads the base model once and keeps many small adapters next to it in memory.
Each adapter changes a few projections of the model, so one batch can serve many users with different styles.
Please write a short answer. Keep the tone friendly and the sentences simple, and explain every step.
She said that the weather would be better tomorrow, so they planned a long walk along the river.
There are three things to remember: measure first, change one thing at a time, and write down what you see.
The reference numbers come from a slow and careful implementation that everyone can read and check.
Good tests fail when the code is wrong and pass when it is right; a test that cannot fail tests nothing.
In the morning the market opens early, and the bakers sell fresh bread to the people on their way to work.
The answer to the question is forty two, but nobody remembers what the question was in the first place.
Write a SQL query to find all users over 30 who live in Berlin and ordered something this year.
SELECT name, email FROM users WHERE age > 30 AND city = 'Berlin' ORDER BY name;
SELECT count(*) FROM orders WHERE created_at >= '2024-01-01' GROUP BY user_id;
INSERT INTO users (name, email, age) VALUES ('Ada', 'ada@example.com', 36);
UPDATE users SET city = 'Paris' WHERE id = 7;
def add(a, b):
    return a + b
def main():
    total = 0
    for item in items:
        if item is not None:
            total += item
    return total
class Counter:
    def __init__(self, start=0):
        self.value = start
    def step(self):
        self.value += 1
        return self.value
import json
with open('config.json') as f:
    config = json.load(f)
print(config['hidden_size'])
function greet(name) {
    const message = `Hello, ${name}!`;
    console.log(message);
    return message;
}
for (let i = 0; i < 10; i++) {
    if (i % 2 === 0) continue;
    total += i;
}
Grüße aus München! Wir trinken Kaffee im Café an der Straße und essen süße Brötchen.
Die Straße ist groß, die Brücke über den Fluss ist schön, und die Bäume sind grün.
Müller und Schäfer fahren übermorgen mit dem Zug nach Köln, weil es dort größere Märkte gibt.
Le café est très bon, mais la crème brûlée est encore meilleure. Voilà le garçon français.
Élodie préfère le thé; elle a déjà visité la cathédrale près de la gare avec son frère.
El niño comió una manzana y después bebió un café con leche en la pequeña ciudad de León.
日本語のテキストを読みます。日本の本は面白いです。
日本語の文章と中文的句子。日本語の勉強は楽しいです。
私は日本語の本を読みました。東京は日本の首都です。
Ship it 🚀 and smile.
"""

LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}<<SYS>>\n{{ message['content'] | trim }}\n<</SYS>>\n\n"
    "{% elif message['role'] == 'user' %}[INST] {{ message['content'] | trim }} [/INST]"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] | trim }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class AdapterSpec:
    id: str
    r: int
    alpha: int
    targets: tuple
    dtype: str
    seed: int
    rslora: bool = False
    layers: tuple | None = None
    # A's values are drawn this many times larger, B's this many times smaller (the product stays the same):
    # trained adapters keep B small, and B times a small scaling can fall below float16's smallest normal.
    a_over_b: float = 1.0

    @property
    def scaling(self):
        return self.alpha / math.sqrt(self.r) if self.rslora else self.alpha / self.r


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # config.json as written, in the common (transformers 4.x) form most checkpoints carry.
    config: dict
    dtype: str
    # "metaspace": Metaspace pre-tokenizer (newer conversions); "legacy": Prepend+Replace normalizer.
    tokenizer_style: str
    chat_template: str | None
    generation_config: dict
    seed: int
    # Projections are drawn with std gain/sqrt(fan_in): a gain well above 1 keeps the tied random model
    # from echoing its input token forever.
    gain: float
    embed_std: float
    head_std: float
    adapters: tuple


MODELS = [
    ModelSpec(
        name="demo",
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-06,
            "rope_theta": 500000.0,
            # original_max_position_embeddings 64 puts the head_dim-32 frequencies in all three llama3
            # bands (kept, smoothed, divided by factor).
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64, "rope_type": "llama3"},
            "tie_word_embeddings": True,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "initializer_range": 0.02,
            "use_cache": True,
        },
        dtype="float16",
        tokenizer_style="metaspace",
        chat_template=LLAMA2_CHAT_TEMPLATE,
        # eos as a list, as Llama-3.x ships it, where config.json has a single id.
        generation_config={"bos_token_id": BOS_ID, "eos_token_id": [EOS_ID], "do_sample": False},
        seed=1234,
        gain=3.0,
        embed_std=0.2,
        head_std=0.0,
        adapters=(
            AdapterSpec(id="sql", r=8, alpha=16, targets=tuple(PROJECTIONS), dtype="bfloat16", seed=11),
            AdapterSpec(id="tone", r=2, alpha=8, targets=("q_proj", "k_proj"), dtype="float16", seed=12,
                        layers=(1,)),
            AdapterSpec(id="wide", r=32, alpha=16, targets=("gate_proj", "up_proj", "down_proj"),
                        dtype="float32", seed=13, rslora=True),
        ),
    ),
    ModelSpec(
        name="linear",
        # Llama-2-era keys: no head_dim, no rope_theta (10000 by default), rope_scaling with "type".
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 160,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"type": "linear", "factor": 2.0},
            "tie_word_embeddings": False,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "hidden_act": "silu",
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": True,
        },
        dtype="bfloat16",
        tokenizer_style="legacy",
        chat_template=None,
        generation_config={"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "do_sample": False},
        seed=99,
        gain=2.0,
        embed_std=0.3,
        head_std=0.25,
        adapters=(
            AdapterSpec(id="mini", r=4, alpha=4, targets=("k_proj", "v_proj", "down_proj"), dtype="float16",
                        seed=21),
            # rsLoRA with a small scaling (1/8) and layers_to_transform, B about 2e-5 once scaled: in float16
            # most of B * scaling is subnormal, so an engine that folds the scaling into B in 16 bits loses it.
            AdapterSpec(id="faint", r=64, alpha=1, targets=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
                        dtype="float32", seed=22, rslora=True, layers=(1,), a_over_b=2048.0),
        ),
    ),
]


def corpus_lines():
    return CORPUS.splitlines()


def train_bpe():
    """Returns (vocab, merges) of a BPE trained on CORPUS, ids laid out as Llama-2's: specials, bytes, rest."""
    counts = Counter("".join(corpus_lines()).replace(" ", ""))
    ascii_printable = [chr(c) for c in range(0x21, 0x7F)]
    # Each kept character counts MIN_CHAR_COUNT or more and each dropped one less, so the trainer's
    # choice does not depend on how it breaks ties between equal counts.
    alphabet = set(ascii_printable) | {"▁"} | {c for c, n in counts.items() if n >= MIN_CHAR_COUNT}
    trained_size = VOCAB_SIZE - len(SPECIAL_TOKENS) - 256
    trainer = trainers.BpeTrainer(vocab_size=trained_size, min_frequency=2, limit_alphabet=len(alphabet),
                                  initial_alphabet=ascii_printable, special_tokens=[], show_progress=False)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.train_from_iterator(corpus_lines(), trainer=trainer)
    trained = json.loads(tokenizer.to_str())["model"]

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]):
        assert token not in vocab, f"trained token {token!r} collides with a special or byte token"
        vocab[token] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]]
    learned = sorted(c for c in alphabet if c in vocab and ord(c) > 0x7F)
    print(f"tokenizer: {len(vocab)} tokens, {len(merges)} merges, learned non-ASCII: {''.join(learned)}")
    return vocab, merges


def build_tokenizer(vocab, merges, style):
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                                     fuse_unk=True))
    if style == "metaspace":
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", BOS_ID)])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


def write_json(path, value, indent=2):
    path.write_text(json.dumps(value, indent=indent, ensure_ascii=False))


def write_tokenizer_files(model_dir, tokenizer, spec):
    tokenizer.save(str(model_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": spec.config["max_position_embeddings"],
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "legacy": spec.tokenizer_style == "legacy",
    }
    if spec.chat_template is not None:
        tokenizer_config["chat_template"] = spec.chat_template
    write_json(model_dir / "tokenizer_config.json", tokenizer_config)
    write_json(model_dir / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    write_json(model_dir / "generation_config.json", spec.generation_config)


def head_dim(config):
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def random_weights(spec, config):
    """float32 numpy weights under Hugging Face names; numpy's generator keeps them independent of torch."""
    rng = np.random.default_rng(spec.seed)
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    q_out = config["num_attention_heads"] * head_dim(config)
    kv_out = config["num_key_value_heads"] * head_dim(config)
    shapes = {"q_proj": (q_out, hidden), "k_proj": (kv_out, hidden), "v_proj": (kv_out, hidden),
              "o_proj": (hidden, q_out), "gate_proj": (inter, hidden), "up_proj": (inter, hidden),
              "down_proj": (hidden, inter)}
    weights = {"model.embed_tokens.weight": rng.normal(0, spec.embed_std, (config["vocab_size"], hidden))}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        # Norm weights away from 1, so that a loader which ignores them is caught.
        weights[prefix + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
        weights[prefix + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
        for name in PROJECTIONS:
            shape = shapes[name]
            weights[prefix + MODULE_PATH[name] + ".weight"] = rng.normal(0, spec.gain / math.sqrt(shape[1]), shape)
    weights["model.norm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
    if not config["tie_word_embeddings"]:
        weights["lm_head.weight"] = rng.normal(0, spec.head_std, (config["vocab_size"], hidden))
    return {name: value.astype(np.float32) for name, value in weights.items()}


def load_base(model_dir):
    """The oracle's base: the stored (fp16/bf16) weights upcast to float32, eager attention, on the CPU."""
    model, info = LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager",
                                                   output_loading_info=True)
    # A tied checkpoint has no lm_head.weight; transformers may list it as missing before tying it.
    missing = set(info.get("missing_keys") or ()) - {"lm_head.weight"}
    problems = {k: info.get(k) for k in ("unexpected_keys", "mismatched_keys") if info.get(k)}
    if missing:
        problems["missing_keys"] = sorted(missing)
    assert not problems, f"{model_dir}: loading problems {problems}"
    return model.eval()


def verify_base(model, model_dir, config):
    """Checks that transformers read config.json and the weights as the fixture means them."""
    stored = load_file(str(model_dir / "model.safetensors"))
    state = model.state_dict()
    for name, tensor in stored.items():
        assert state[name].dtype == torch.float32 and torch.equal(state[name], tensor.float()), name
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    if config["tie_word_embeddings"]:
        assert "lm_head.weight" not in stored
        assert torch.equal(head, embed), "tie_word_embeddings not honored"
    else:
        assert torch.equal(head, stored["lm_head.weight"].float()) and not torch.equal(head, embed)
    print(f"  weights: {len(stored)} stored tensors equal the loaded float32 ones; lm_head equals embed_tokens: "
          f"{torch.equal(head, embed)}, shares its storage: {head.data_ptr() == embed.data_ptr()}")

    buffers = [b for n, b in model.named_buffers() if n.endswith("rotary_emb.inv_freq")]
    assert len(buffers) == 1, "rotary inv_freq buffer not found"
    actual = buffers[0].double().numpy()
    expected = rope_inverse_frequencies(config, head_dim(config))
    unscaled = 1.0 / config.get("rope_theta", 10000.0) ** (np.arange(0, head_dim(config), 2) / head_dim(config))
    print(f"  rope {config['rope_scaling']}: inv_freq / unscaled = {np.round(actual / unscaled, 4).tolist()}")
    assert np.allclose(actual, expected, rtol=1e-5, atol=0), f"inv_freq {actual} != expected {expected}"
    assert not np.allclose(actual, unscaled, rtol=1e-3), "rope_scaling did not change the frequencies"


def make_adapter(model_dir, adapter_dir, spec, adapter):
    """Saves a LoRA adapter with peft, with A and B both random (peft's default B = 0 would test nothing)."""
    lora_config = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, target_modules=list(adapter.targets),
                             lora_dropout=0.0, bias="none", use_rslora=adapter.rslora,
                             layers_to_transform=list(adapter.layers) if adapter.layers else None,
                             task_type="CAUSAL_LM")
    peft_model = get_peft_model(load_base(model_dir), lora_config)
    rng = np.random.default_rng(adapter.seed)
    dtype = DTYPES[adapter.dtype]
    for _, module in sorted(peft_model.named_modules(), key=lambda item: item[0]):
        if not isinstance(module, LoraLayer):
            continue
        base_std = float(module.get_base_layer().weight.std())
        std = math.sqrt(LORA_DELTA_RATIO * base_std / (module.scaling["default"] * math.sqrt(adapter.r)))
        for lora, factor in ((module.lora_A["default"], adapter.a_over_b), (module.lora_B["default"], 1 / adapter.a_over_b)):
            values = rng.normal(0, std * factor, tuple(lora.weight.shape)).astype(np.float32)
            lora.weight.data = torch.from_numpy(values).to(dtype)
    peft_model.peft_config["default"].base_model_name_or_path = f"fixtures/{spec.name}/model"
    peft_model.save_pretrained(str(adapter_dir))
    # peft also writes a model card; real adapters often carry one, but it is no part of the format.
    (adapter_dir / "README.md").unlink(missing_ok=True)

    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    layers = adapter.layers or range(spec.config["num_hidden_layers"])
    expected = {f"base_model.model.model.layers.{layer}.{MODULE_PATH[t]}.lora_{ab}.weight"
                for layer in layers for t in adapter.targets for ab in "AB"}
    assert set(saved) == expected, f"{adapter.id}: saved {sorted(set(saved) ^ expected)}"
    assert all(t.dtype == dtype for t in saved.values()), f"{adapter.id}: stored dtype is not {adapter.dtype}"
    assert all(t.abs().max() > 0 for n, t in saved.items() if ".lora_B." in n), f"{adapter.id}: zero lora_B"


def load_adapter_model(model_dir, adapter_dir, adapter):
    """The oracle for one adapter: peft on the float32 base, adapter weights upcast from their stored dtype."""
    model = PeftModel.from_pretrained(load_base(model_dir), str(adapter_dir)).to(torch.float32).eval()
    stored = load_file(str(adapter_dir / "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    for name, tensor in stored.items():
        loaded = params[name.replace(".weight", ".default.weight")]
        assert loaded.dtype == torch.float32 and torch.equal(loaded, tensor.float()), name
    scalings = {module.scaling["default"] for module in model.modules() if isinstance(module, LoraLayer)}
    assert all(math.isclose(s, adapter.scaling, rel_tol=1e-12) for s in scalings), (adapter.id, scalings)
    return model


@torch.no_grad()
def reference(model, prompt_ids):
    """Logits at every prompt position, then STEPS greedy tokens, each from a full forward pass."""
    ids = list(prompt_ids)
    prompt_logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    step_logits, greedy, margins = [], [], []
    for _ in range(STEPS):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()
        top = torch.topk(logits, 2).values
        token = int(torch.argmax(logits))
        step_logits.append(logits)
        greedy.append(token)
        margins.append(float(top[0] - top[1]))
        ids.append(token)
    return prompt_logits, torch.stack(step_logits), greedy, margins


def encode_prompts(tokenizer, model_dir):
    """Prompt ids from tokenizer.json itself; AutoTokenizer must agree, as users load it that way."""
    hf_tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    prompts = []
    for text in PROMPTS:
        if text is None:
            prompts.append({"text": None, "ids": [BOS_ID]})
            continue
        encoding = tokenizer.encode(text)
        hf_ids = hf_tokenizer(text)["input_ids"]
        if hf_ids != encoding.ids:
            print(f"  WARNING: AutoTokenizer gives {hf_ids} for {text!r}")
        byte_tokens = sum(1 for t in encoding.tokens if t.startswith("<0x"))
        print(f"  {text!r}: {len(encoding.ids)} ids, {byte_tokens} byte-fallback tokens, decodes to "
              f"{tokenizer.decode(encoding.ids, skip_special_tokens=True)!r}: {encoding.tokens}")
        prompts.append({"text": text, "ids": encoding.ids})
    if hf_tokenizer.chat_template:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
        print(f"  chat_template renders: {hf_tokenizer.apply_chat_template(messages, tokenize=False)!r}")
    return prompts


def write_refs(out_dir, spec, tokenizer, prompts):
    model_dir = out_dir / "model"
    variants = {"base": None, **{a.id: a for a in spec.adapters}}
    logits, refs_variants = {}, {}
    for variant, adapter in variants.items():
        if adapter is None:
            model = load_base(model_dir)
        else:
            model = load_adapter_model(model_dir, out_dir / "adapters" / adapter.id, adapter)
        refs_variants[variant] = []
        for index, prompt in enumerate(prompts):
            prompt_logits, step_logits, greedy, margins = reference(model, prompt["ids"])
            logits[f"{variant}/{index}"] = step_logits.clone()
            logits[f"{variant}/{index}/prompt"] = prompt_logits.clone()
            refs_variants[variant].append({
                "prompt": index,
                "greedy_ids": greedy,
                "greedy_text": tokenizer.decode(greedy, skip_special_tokens=False),
                "min_margin": min(margins),
                "margins": [round(m, 4) for m in margins],
            })
    save_file(logits, str(out_dir / "refs.safetensors"))
    refs = {
        "model": "model",
        "oracle": ORACLE,
        "steps": STEPS,
        "prompts": prompts,
        "adapters": {a.id: {"r": a.r, "alpha": a.alpha, "scaling": a.scaling,
                            "targets": [t for t in PROJECTIONS if t in a.targets], "dtype": a.dtype,
                            "rslora": a.rslora, "layers": list(a.layers) if a.layers else None}
                     for a in spec.adapters},
        "variants": refs_variants,
        "logits_key": LOGITS_KEY,
    }
    write_json(out_dir / "refs.json", refs, indent=1)
    return refs


def summarize(refs):
    base = {r["prompt"]: r["greedy_ids"] for r in refs["variants"]["base"]}
    for variant, runs in refs["variants"].items():
        margins = [m for r in runs for m in r["margins"]]
        diverge = [next((i for i, (a, b) in enumerate(zip(r["greedy_ids"], base[r["prompt"]])) if a != b), None)
                   for r in runs]
        distinct = [len(set(r["greedy_ids"])) for r in runs]
        print(f"  {variant}: min margin {min(r['min_margin'] for r in runs):.5f}, "
              f"steps < 1e-3: {sum(m < 1e-3 for m in margins)}/{len(margins)}, "
              f"median {float(np.median(margins)):.3f}, distinct tokens {distinct}, first step unlike base {diverge}")


def make_model(root, spec, vocab, merges):
    out_dir = root / spec.name
    model_dir = out_dir / "model"
    shutil.rmtree(out_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    print(f"== {spec.name}")

    tokenizer = build_tokenizer(vocab, merges, spec.tokenizer_style)
    write_tokenizer_files(model_dir, tokenizer, spec)
    config = {**spec.config, "vocab_size": tokenizer.get_vocab_size(), "torch_dtype": spec.dtype,
              "transformers_version": transformers.__version__}
    write_json(model_dir / "config.json", config)
    dtype = DTYPES[spec.dtype]
    tensors = {name: torch.from_numpy(value).to(dtype) for name, value in random_weights(spec, config).items()}
    save_file(tensors, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    verify_base(load_base(model_dir), model_dir, config)

    for adapter in spec.adapters:
        make_adapter(model_dir, out_dir / "adapters" / adapter.id, spec, adapter)
    prompts = encode_prompts(tokenizer, model_dir)
    refs = write_refs(out_dir, spec, tokenizer, prompts)
    summarize(refs)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"  {spec.name}: {size / 1e6:.2f} MB")


def write_tar(root, tar_path):
    def reset(info):
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info
    with tarfile.open(tar_path, "w") as tar:
        for spec in MODELS:
            tar.add(root / spec.name, arcname=spec.name, filter=reset)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder that receives demo/ and linear/")
    parser.add_argument("--tar", type=Path, help="also pack demo/ and linear/ into this tar file")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {__import__('peft').__version__}, tokenizers {__import__('tokenizers').__version__}")

    vocab, merges = train_bpe()
    # The trainer iterates hash maps internally: a second training must give the same tokenizer.
    assert train_bpe() == (vocab, merges), "BPE training is not deterministic"
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in MODELS:
        make_model(args.out, spec, vocab, merges)
    if args.tar:
        write_tar(args.out, args.tar)
        print(f"wrote {args.tar} ({args.tar.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
