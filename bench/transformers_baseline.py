"""The baseline a user would otherwise run: transformers + PEFT on the same GPU, with the same Llama-3-8B shape
and random bf16 weights as bench/cuda-decode.ts (which runs this with --baseline and prints both side by side).

Measures greedy decode tokens/s (prompt of 512 random tokens; decode time = generate(N) - generate(1), so the
prefill cancels out) at batch 1 plain, batch 1 with a static KV cache, for which generate compiles the
decoding forward with torch.compile (the strongest transformers set-up), batch 32 plain, and batch 32 with 32 distinct rank-16 all-target LoRA adapters through
PEFT's adapter_names. Progress goes to stderr; the last stdout line is one JSON object of the numbers (null
where a set-up failed)."""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT = 512
NEW_TOKENS = 32
ADAPTERS = 32
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def decode_tokens_per_second(model, batch, **generate_args):
    ids = torch.randint(0, model.config.vocab_size, (batch, PROMPT), device="cuda")

    def run(new_tokens):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, **generate_args)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    run(4)  # warm-up (and compilation, where compiled)
    run(4)
    one = min(run(1) for _ in range(2))
    many = min(run(NEW_TOKENS) for _ in range(2))
    return batch * (NEW_TOKENS - 1) / (many - one)


def main():
    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=8192,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    results = {}

    def measure(name, fn):
        try:
            results[name] = fn()
            log(f"{name}: {results[name]:.1f}")
        except Exception as error:  # a failed set-up is reported, the others still run
            log(f"{name}: failed: {error!r}")
            results[name] = None

    with torch.inference_mode():
        measure("plain batch 1 tokens/s", lambda: decode_tokens_per_second(model, 1))
        measure("plain batch 32 tokens/s", lambda: decode_tokens_per_second(model, 32))

        # With a static cache, generate compiles the decoding forward itself (torch.compile, CUDA graphs);
        # compiling model.forward by hand breaks on this transformers' cache update under CUDA graphs.
        measure("static+compile batch 1 tokens/s",
                lambda: decode_tokens_per_second(model, 1, cache_implementation="static"))

        lora = LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False)
        peft_model = get_peft_model(model, lora, adapter_name="a0")
        for i in range(1, ADAPTERS):
            peft_model.add_adapter(f"a{i}", lora)
        peft_model.eval()
        names = [f"a{i}" for i in range(ADAPTERS)]
        measure("PEFT batch 32 mixed adapters tokens/s",
                lambda: decode_tokens_per_second(peft_model, 32, adapter_names=names))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
