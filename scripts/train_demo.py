#!/usr/bin/env python3
"""Trains fixtures/trained: a small Llama model that answers in a chat format, and three LoRA adapters that
each change its answer in a checkable way (upper: capitals, reverse: word order, sql: one SQL statement).

Steps, all seeded: a byte-level BPE tokenizer with a chat template; pre-training from scratch on the text
demo_tasks.py generates (sentences, numbers, word operations, SQL, and chat turns the base answers by
repeating the user); one PEFT LoRA adapter per task, trained on chat turns, until its greedy answers to
validation prompts are right; then greedy exact-match accuracy on held-out prompts (words and numbers the
training never saw, another seed), loaded back from the saved 16-bit files; and the transformers + peft
float32 references of scripts/make_fixtures.py, which test/e2e-trained-demo.test.ts checks the served
tokens and logprobs against.

Needs a CUDA GPU, torch, transformers 5.17, peft 0.21 and tokenizers (the device machine has them):

    python3 scripts/train_demo.py --out /tmp/trained --tar $OUT/trained.tar

Training stops early where a phase would overrun --budget-seconds; the log and train.json say how many
steps each phase took (same seeds and steps give the same weights, up to GPU nondeterminism).
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# make_fixtures re-executes the script with PYTHONHASHSEED=0 (stable adapter_config.json) when imported.
import make_fixtures  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

import demo_tasks as tasks  # noqa: E402
from make_fixtures import AdapterSpec, load_adapter_model, load_base, summarize, write_json, write_refs  # noqa: E402

SEED = 20261203
HELD_OUT_SEED = 777
VALIDATION_SEED = 555
HELD_OUT_COUNT = 200
VALIDATION_COUNT = 200

# Few merges: unseen words are spelled in small pieces, which capitals and reversal can be learned on.
VOCAB_SIZE = 512
BOS_ID, EOS_ID = 0, 1
MAX_LEN = 128
MAX_NEW_TOKENS = 96
PRETRAIN_STEPS = 8000
PRETRAIN_BATCH = 256
PRETRAIN_LR = 2e-3
ADAPTER_MAX_STEPS = 3000
ADAPTER_BATCH = 128
ADAPTER_LR = 2e-3
EVAL_EVERY = 300
# An adapter stops training once this share of its validation answers is exact.
TARGET_ACCURACY = 0.995

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "initializer_range": 0.02,
    "use_cache": True,
    "vocab_size": VOCAB_SIZE,
    "torch_dtype": "bfloat16",
}

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTERS = (
    AdapterSpec(id="upper", r=8, alpha=16, targets=("q_proj", "v_proj"), dtype="bfloat16", seed=31),
    AdapterSpec(id="reverse", r=16, alpha=32, targets=ALL_PROJECTIONS, dtype="float32", seed=32),
    AdapterSpec(id="sql", r=8, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj", "down_proj"),
                dtype="float16", seed=33, rslora=True),
)

# The reference prompts: three chat turns as the template renders them (BOS comes from the post-processor)
# and one plain sentence.
REF_PROMPTS = [
    tasks.render_chat("hello world")[len(tasks.BOS):],
    tasks.render_chat("one two three")[len(tasks.BOS):],
    tasks.render_chat("How many users live in Paris?")[len(tasks.BOS):],
    "the small cat sees the red ball.",
]
# Shown in the log for each variant: the README's requests.
SHOWCASE = ["hello world", "one two three", "How many users live in Paris?"]


class Budget:
    """Seconds since the start against --budget-seconds, so that each phase can stop in time."""

    def __init__(self, seconds):
        self.start, self.seconds = time.time(), seconds

    def elapsed(self):
        return time.time() - self.start

    def left(self):
        return self.seconds - self.elapsed()


def log(budget, message):
    print(f"[{budget.elapsed():6.1f}s] {message}", flush=True)


# ---- tokenizer -------------------------------------------------------------------------------------------

def text_segments(documents):
    """The documents' text without the special tokens, which must not be learned as merges."""
    for document in documents:
        for special in tasks.SPECIAL_TOKENS:
            document = document.replace(special, "\n")
        yield from (part for part in document.split("\n") if part)


def train_tokenizer():
    rng = random.Random(f"{SEED}-tokenizer")
    documents = [tasks.pretraining_document(rng) for _ in range(20000)]
    documents += [p + a for task in tasks.TASKS for p, a in (tasks.task_document(rng, task) for _ in range(2000))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=tasks.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(text_segments(documents), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tasks.BOS}:0 $A:0", pair=f"{tasks.BOS}:0 $A:0 {tasks.BOS}:1 $B:1",
        special_tokens=[(tasks.BOS, BOS_ID)])
    assert [tokenizer.token_to_id(t) for t in tasks.SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tokenizer.get_vocab_size() == VOCAB_SIZE, tokenizer.get_vocab_size()
    return tokenizer


def write_tokenizer_files(model_dir, tokenizer):
    tokenizer.save(str(model_dir / "tokenizer.json"))
    write_json(model_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tasks.BOS,
        "eos_token": tasks.EOS,
        "model_max_length": CONFIG["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
        "chat_template": tasks.CHAT_TEMPLATE,
    })
    write_json(model_dir / "special_tokens_map.json", {"bos_token": tasks.BOS, "eos_token": tasks.EOS})
    write_json(model_dir / "generation_config.json",
               {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "do_sample": False})


def check_tokenizer_files(model_dir, tokenizer):
    """transformers must load the files as meant: the same ids, and the template rendering as render_chat."""
    ids = tokenizer.encode(tasks.render_chat("hello world"), add_special_tokens=False).ids
    assert ids[:2] == [BOS_ID, 2] and ids[-2:] == [EOS_ID, 3], ids
    # Disagreements with transformers are reported, not fatal: the run's other products stay worth having.
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    for text in ["hello world", "HELLO WORLD", "SELECT COUNT(*) FROM users WHERE city = 'Qzv';"]:
        same = hf(text)["input_ids"] == tokenizer.encode(text).ids
        print(f"  {text!r}: {tokenizer.encode(text).tokens}{'' if same else ' WARNING: AutoTokenizer differs'}")
    messages = [{"role": "user", "content": "hello world"}]
    rendered = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered != tasks.render_chat("hello world"):
        print(f"  WARNING: transformers renders the chat template as {rendered!r}")


# ---- data ------------------------------------------------------------------------------------------------

_worker_tokenizer = None


def _init_worker(tokenizer_json):
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def _encode_chunk(job):
    """(kind, seed, count) -> (ids, labels) int16 arrays [count, MAX_LEN]; labels -100 where no loss is taken."""
    kind, seed, count = job
    rng = random.Random(seed)
    ids = np.full((count, MAX_LEN), EOS_ID, dtype=np.int16)
    labels = np.full((count, MAX_LEN), -100, dtype=np.int16)
    for row in range(count):
        if kind == "pretrain":
            tokens = _worker_tokenizer.encode(tasks.pretraining_document(rng), add_special_tokens=False).ids
            loss_from = 1
        else:
            prompt, answer = tasks.task_document(rng, kind)
            prompt_ids = _worker_tokenizer.encode(prompt, add_special_tokens=False).ids
            tokens = prompt_ids + _worker_tokenizer.encode(answer, add_special_tokens=False).ids
            loss_from = len(prompt_ids)
        tokens = tokens[:MAX_LEN]
        ids[row, :len(tokens)] = tokens
        labels[row, loss_from:len(tokens)] = tokens[loss_from:]
    return ids, labels


def make_data(pool, kind, rows, chunk=4096):
    jobs = [(kind, f"{SEED}-{kind}-{i}", min(chunk, rows - start)) for i, start in enumerate(range(0, rows, chunk))]
    parts = pool.map(_encode_chunk, jobs)
    ids = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    truncated = int((labels[:, -1] != -100).sum())
    print(f"  {kind}: {rows} sequences, {truncated} reach MAX_LEN {MAX_LEN}")
    return ids, labels


# ---- training --------------------------------------------------------------------------------------------

def batch_at(ids, labels, step, size, device):
    rows = slice(step * size, (step + 1) * size)
    x, y = ids[rows].to(device).long(), labels[rows].to(device).long()
    length = int((y != -100).any(0).nonzero().max()) + 1
    return x[:, :length], y[:, :length]


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def training_step(model, optimizer, x, y):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=x, use_cache=False).logits
    loss = F.cross_entropy(logits.float()[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1),
                           ignore_index=-100)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    return loss


def pretrain(model, data, budget, deadline):
    """PRETRAIN_STEPS of AdamW, fewer when the first steps' pace says they would not end by `deadline`."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=True)
    total, start = PRETRAIN_STEPS, None
    model.train()
    for step in range(PRETRAIN_STEPS):
        if step == 20:
            torch.cuda.synchronize()
            start = time.time()
        if step == 120:
            torch.cuda.synchronize()
            pace = (time.time() - start) / 100
            total = min(PRETRAIN_STEPS, int(120 + (deadline - budget.elapsed()) / pace))
            log(budget, f"pretrain: {pace * 1000:.1f} ms/step, {total} steps fit")
        if step >= total:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, PRETRAIN_LR, 200)
        loss = training_step(model, optimizer, *batch_at(*data, step, PRETRAIN_BATCH, "cuda"))
        if step % 500 == 0 or step == total - 1:
            log(budget, f"pretrain step {step}: loss {loss.item():.4f}")
    return min(total, PRETRAIN_STEPS)


def train_adapter(peft_model, data, validation, tokenizer, budget, deadline):
    """AdamW on the LoRA weights until TARGET_ACCURACY on validation, ADAPTER_MAX_STEPS, or `deadline`."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=ADAPTER_LR, betas=(0.9, 0.99), weight_decay=0.0, fused=True)
    step, accuracy = 0, 0.0
    while step < ADAPTER_MAX_STEPS and budget.elapsed() < deadline:
        peft_model.train()
        for _ in range(EVAL_EVERY):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, ADAPTER_MAX_STEPS, ADAPTER_LR, 50)
            loss = training_step(peft_model, optimizer, *batch_at(*data, step, ADAPTER_BATCH, "cuda"))
            step += 1
        accuracy = exact_match(peft_model, tokenizer, validation)[0]
        log(budget, f"  step {step}: loss {loss.item():.4f}, validation exact match {accuracy:.3f}")
        if accuracy >= TARGET_ACCURACY:
            break
    return step, accuracy


# ---- evaluation ------------------------------------------------------------------------------------------

@torch.no_grad()
def greedy_answers(model, tokenizer, users):
    """Greedy answers to single user turns, float32, until EOS; prompts of one length share a batch (no padding)."""
    model.eval()
    device = next(model.parameters()).device
    encoded = [tokenizer.encode(tasks.render_chat(u), add_special_tokens=False).ids for u in users]
    by_length = {}
    for index, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(index)
    answers = [None] * len(users)
    for indices in by_length.values():
        x = torch.tensor([encoded[i] for i in indices], device=device)
        finished = torch.zeros(len(indices), dtype=torch.bool, device=device)
        for _ in range(MAX_NEW_TOKENS):
            token = model(input_ids=x, use_cache=False).logits[:, -1].float().argmax(-1)
            finished |= token == EOS_ID
            x = torch.cat([x, token[:, None]], dim=1)
            if bool(finished.all()):
                break
        for row, index in enumerate(indices):
            generated = x[row, len(encoded[index]):].tolist()
            if EOS_ID in generated:
                generated = generated[:generated.index(EOS_ID)]
            answers[index] = tokenizer.decode(generated, skip_special_tokens=True)
    return answers


def exact_match(model, tokenizer, pairs):
    answers = greedy_answers(model, tokenizer, [p["prompt"] for p in pairs])
    right = [a == p["answer"] for a, p in zip(answers, pairs)]
    return sum(right) / len(pairs), answers


def evaluation_sets():
    held_out = {task: tasks.held_out_set(task, HELD_OUT_SEED + i, HELD_OUT_COUNT) for i, task in enumerate(tasks.TASKS)}
    validation = {}
    for i, task in enumerate(tasks.TASKS):
        test_prompts = {p["prompt"] for p in held_out[task]}
        candidates = tasks.held_out_set(task, VALIDATION_SEED + i, VALIDATION_COUNT * 2)
        validation[task] = [p for p in candidates if p["prompt"] not in test_prompts][:VALIDATION_COUNT]
    return held_out, validation


# ---- saving ----------------------------------------------------------------------------------------------

def save_base(model, model_dir):
    state = {name: tensor.detach().to(torch.bfloat16).cpu().contiguous() for name, tensor in model.state_dict().items()
             if name != "lm_head.weight"}
    save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    write_json(model_dir / "config.json", {**CONFIG, "transformers_version": transformers.__version__})


def save_adapter(peft_model, adapter_dir, adapter):
    dtype = make_fixtures.DTYPES[adapter.dtype]
    for name, parameter in peft_model.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.to(dtype)
    peft_model.peft_config["default"].base_model_name_or_path = "fixtures/trained/model"
    peft_model.save_pretrained(str(adapter_dir))
    (adapter_dir / "README.md").unlink(missing_ok=True)


class RefsSpec:
    """What make_fixtures.write_refs reads of a model spec."""
    adapters = ADAPTERS


def write_tar(out_dir, tar_path):
    def reset(info):
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info
    with tarfile.open(tar_path, "w") as tar:
        tar.add(out_dir, arcname="trained", filter=reset)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder that receives model/, adapters/, refs")
    parser.add_argument("--tar", type=Path, help="also pack the folder into this tar file")
    parser.add_argument("--budget-seconds", type=float, default=480)
    args = parser.parse_args()
    budget = Budget(args.budget_seconds)
    log(budget, f"torch {torch.__version__}, transformers {transformers.__version__}, "
                f"peft {__import__('peft').__version__}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    out_dir = args.out
    model_dir = out_dir / "model"
    shutil.rmtree(out_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)

    tokenizer = train_tokenizer()
    assert train_tokenizer().to_str() == tokenizer.to_str(), "BPE training is not deterministic"
    write_tokenizer_files(model_dir, tokenizer)
    try:
        check_tokenizer_files(model_dir, tokenizer)
    except Exception as error:  # noqa: BLE001 (a check of transformers' loading must not end the run)
        print(f"  WARNING: checking the tokenizer files with transformers failed: {error!r}")
    log(budget, f"tokenizer: {tokenizer.get_vocab_size()} tokens")

    held_out, validation = evaluation_sets()
    write_json(out_dir / "heldout.json", {
        "about": "held-out chat prompts (words and numbers the training never saw) and each adapter's exact answer",
        "seed": HELD_OUT_SEED, "max_new_tokens": MAX_NEW_TOKENS, "adapters": held_out})

    with Pool(min(16, os.cpu_count() or 1), initializer=_init_worker, initargs=(tokenizer.to_str(),)) as pool:
        pretrain_data = make_data(pool, "pretrain", PRETRAIN_STEPS * PRETRAIN_BATCH)
        adapter_data = {a.id: make_data(pool, a.id, ADAPTER_MAX_STEPS * ADAPTER_BATCH) for a in ADAPTERS}
    # CUDA only after the worker processes are gone: they are forked.
    log(budget, f"data ready; training on {torch.cuda.get_device_name()}")

    def checkpoint():
        """Packs what is written so far: a run stopped later still brings back the finished phases."""
        if args.tar:
            write_tar(out_dir, args.tar)
            log(budget, f"packed {args.tar}")

    record = {"seed": SEED, "pretrain_batch": PRETRAIN_BATCH, "adapters": {}}
    try:
        train_all(out_dir, tokenizer, pretrain_data, adapter_data, validation, held_out, record, budget,
                  args.budget_seconds, checkpoint)
    finally:
        write_json(out_dir / "train.json", record)
        checkpoint()


def train_all(out_dir, tokenizer, pretrain_data, adapter_data, validation, held_out, record, budget, seconds,
              checkpoint):
    model_dir = out_dir / "model"
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig.from_dict(CONFIG)).float().cuda()
    log(budget, f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    # Pre-training gets what the adapters, the evaluation and the references leave of the budget.
    record["pretrain_steps"] = pretrain(model, pretrain_data, budget, deadline=seconds - 230)
    save_base(model, model_dir)
    del model
    checkpoint()

    adapter_share = (seconds - 80 - budget.elapsed()) / len(ADAPTERS)
    for adapter in ADAPTERS:
        log(budget, f"adapter {adapter.id}: r {adapter.r}, alpha {adapter.alpha}, rslora {adapter.rslora}, "
                    f"targets {adapter.targets}")
        torch.manual_seed(adapter.seed)
        base = LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).cuda()
        lora = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, target_modules=list(adapter.targets),
                          lora_dropout=0.0, bias="none", use_rslora=adapter.rslora, task_type="CAUSAL_LM")
        peft_model = get_peft_model(base, lora)
        steps, accuracy = train_adapter(peft_model, adapter_data[adapter.id], validation[adapter.id], tokenizer,
                                        budget, deadline=budget.elapsed() + adapter_share)
        save_adapter(peft_model, out_dir / "adapters" / adapter.id, adapter)
        record["adapters"][adapter.id] = {"steps": steps, "batch": ADAPTER_BATCH, "validation_exact_match": accuracy}
        del peft_model, base
        checkpoint()

    log(budget, "held-out evaluation of the saved files (float32, greedy)")
    base = load_base(model_dir).cuda()
    print(f"  base: {dict(zip(SHOWCASE, greedy_answers(base, tokenizer, SHOWCASE)))}")
    record["base_matches"] = {}
    for task, pairs in held_out.items():
        share = exact_match(base, tokenizer, pairs)[0]
        record["base_matches"][task] = share
        print(f"  base on {task}'s held-out prompts: exact match {share:.3f}")
    del base
    for adapter in ADAPTERS:
        model = load_adapter_model(model_dir, out_dir / "adapters" / adapter.id, adapter).cuda()
        accuracy, answers = exact_match(model, tokenizer, held_out[adapter.id])
        record["adapters"][adapter.id]["held_out_exact_match"] = accuracy
        wrong = [(p["prompt"], p["answer"], a) for p, a in zip(held_out[adapter.id], answers) if a != p["answer"]]
        print(f"  {adapter.id}: held-out exact match {accuracy:.3f}; wrong: {wrong[:5]}")
        print(f"  {adapter.id}: {dict(zip(SHOWCASE, greedy_answers(model, tokenizer, SHOWCASE)))}")
        del model
    write_json(out_dir / "train.json", record)
    checkpoint()

    log(budget, "references (transformers + peft float32 on the CPU)")
    prompts = [{"text": text, "ids": tokenizer.encode(text).ids} for text in REF_PROMPTS]
    summarize(write_refs(out_dir, RefsSpec, tokenizer, prompts))
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    log(budget, f"{out_dir}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
