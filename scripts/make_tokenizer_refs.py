#!/usr/bin/env python3
"""Writes the Llama-2-style byte-fallback tokenizers of test/text-byte-fallback.test.ts and transformers' answers for them.

Each tokenizer (Metaspace pre-tokenizer, BPE with byte fallback; the llama2 one with the
Replace+ByteFallback+Fuse+Strip decoder, the metaspace one with a Metaspace decoder, and four variants of
the llama2 one) goes to <out>/<name>/ as tokenizer.json, tokenizer_config.json and generation_config.json.
Each is then loaded with `AutoTokenizer.from_pretrained`, and <out>/refs.json gets, for the inputs listed
below: `tok(text).input_ids` (and with add_special_tokens=False), `tok.decode(ids)` (and with
skip_special_tokens=True), `tok.decode([id])` for every id, len(tok), the special-token ids, the ids of the
named tokens, and GenerationConfig's bos/eos ids. refs.json records the transformers and tokenizers
versions it was made with (transformers 5.17.0, tokenizers 0.23.2 for the committed one).

Needs transformers and tokenizers (the GPU machine has them; nothing here uses the GPU):

    python3 scripts/make_tokenizer_refs.py                        # writes test/fixtures/byte-fallback
    python3 scripts/make_tokenizer_refs.py --out /tmp/bf && tar -C /tmp/bf -cf $OUT/byte-fallback.tar .
    python3 scripts/make_tokenizer_refs.py --dirs-only            # the tokenizer directories alone, no transformers

The JSON files are written compactly, key for key as the test used to build them in TypeScript.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import copy
import json
from pathlib import Path

BOS = 1
EOS = 2
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
PIECES = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world", "▁▁"]
MERGES = ["▁ h", "l l", "▁h e", "▁he ll", "▁hell o", "▁ w", "o r", "▁w or", "▁wor l", "▁worl d", "▁ ▁"]

LLAMA2_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}
METASPACE_DECODER = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}

TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "clean_up_tokenization_spaces": False,
}
GENERATION_CONFIG = {"bos_token_id": BOS, "eos_token_id": [EOS, 5]}


def special(id_, content):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


def tokenizer_json(decoder):
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *BYTE_TOKENS, *PIECES])}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(0, "<unk>"), special(BOS, "<s>"), special(EOS, "</s>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}},
        },
        "decoder": copy.deepcopy(decoder),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": list(MERGES),
        },
    }


def replaced(obj, **fields):
    """obj with fields replaced in place (key order kept) or appended, like TypeScript's {...obj, key: value}."""
    out = dict(obj)
    out.update(fields)
    return out


def variants():
    """name -> (tokenizer.json, tokenizer_config.json)."""
    llama2 = tokenizer_json(LLAMA2_DECODER)
    return {
        "llama2": (llama2, TOKENIZER_CONFIG),
        "metaspace": (tokenizer_json(METASPACE_DECODER), TOKENIZER_CONFIG),
        "add-bos-false": (llama2, replaced(TOKENIZER_CONFIG, add_bos_token=False)),
        "no-post-processor": (replaced(llama2, post_processor=None), TOKENIZER_CONFIG),
        # "</s>" only in the model vocab, named as eos_token.
        "eos-in-vocab": (replaced(llama2, added_tokens=llama2["added_tokens"][:2]), TOKENIZER_CONFIG),
        # "ll" named in additional_special_tokens.
        "extra-special": (llama2, replaced(TOKENIZER_CONFIG, additional_special_tokens=["ll"])),
    }


def byte(b):
    return 3 + b


H, L, O, SPACE, HELLO, WORLD = 260, 262, 263, 259, 271, 276

# Inputs, per tokenizer: texts for tok(text).input_ids, texts for add_special_tokens=False, id lists for decode.
LLAMA2_ENCODE = [
    "hello world",
    "hello",
    " hello",
    "hello  world",
    "h\u00e9llo \u2713 \U0001f642",
    "",
    "<s>hello",
    "hello</s> world",
    "\u65e5\u672c",
    "\n",
    "world hello world",
    "  ",
]
LLAMA2_DECODE = [
    [271, 276],
    [1, 271, 276],
    [229, 159, 150],
    [271, 259, 243, 162, 156, 133],
    [260, 198, 172, 262, 262, 263],
    [35, 271],
    [277, 271],
    [259, 259, 271],
    [271, 229, 159, 276],
    [131, 131],
    [229, 159, 150, 131],
    [243, 162],
    [68, 258],
    [2, 271],
    [271, 1, 271],
    [242, 190, 194, 271],
    [0],
    [3],
    [1],
    [1, 259, 271],
    [259],
    # The id lists the test streams token by token that the ones above do not already cover.
    [HELLO, SPACE, byte(0xF0), byte(0x9F), byte(0x99), byte(0x82), WORLD],
    [HELLO, HELLO, WORLD],
]
METASPACE_DECODE = [
    [271, 276],
    [1, 271, 276],
    [229, 159, 150],
    [35, 271],
    [277, 271],
    [259, 259, 271],
    [2, 271],
    [271, 1, 271],
    [1, 259, 271],
    [259],
]
INPUTS = {
    "llama2": {"encode": LLAMA2_ENCODE, "encode_no_special": ["hello world"], "decode": LLAMA2_DECODE, "decode_each": True},
    "metaspace": {"decode": METASPACE_DECODE, "decode_each": True},
    "add-bos-false": {"encode": ["hello world"]},
    "no-post-processor": {"encode": ["hello world"]},
    "eos-in-vocab": {"encode": ["hello</s> world"]},
    "extra-special": {"encode": ["hello world"], "decode": [[268, 271]]},
}
NAMED_TOKENS = ["<unk>", "<s>", "</s>", "<0x00>", "<0x20>", "<0xE2>", "▁", "h", "l", "o", "ll", "▁hello", "▁world", "▁▁"]


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_dirs(out: Path):
    for name, (tok_json, config) in variants().items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "tokenizer.json").write_text(dumps(tok_json), encoding="utf-8")
        (d / "tokenizer_config.json").write_text(dumps(config), encoding="utf-8")
        (d / "generation_config.json").write_text(dumps(GENERATION_CONFIG), encoding="utf-8")


def refs_for(d: Path, inputs):
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(d))
    gen = GenerationConfig.from_pretrained(str(d))
    r = {
        "class": type(tok).__name__,
        "len": len(tok),
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "all_special_ids": sorted(tok.all_special_ids),
        "generation_config": {"bos_token_id": gen.bos_token_id, "eos_token_id": gen.eos_token_id},
        "token_ids": {t: tok.convert_tokens_to_ids(t) for t in NAMED_TOKENS},
    }
    if "encode" in inputs:
        r["encode"] = [{"text": t, "ids": tok(t).input_ids} for t in inputs["encode"]]
    if "encode_no_special" in inputs:
        r["encode_no_special"] = [{"text": t, "ids": tok(t, add_special_tokens=False).input_ids} for t in inputs["encode_no_special"]]
    if "decode" in inputs:
        r["decode"] = [{"ids": ids, "text": tok.decode(ids), "skipped": tok.decode(ids, skip_special_tokens=True)} for ids in inputs["decode"]]
    if inputs.get("decode_each"):
        r["decode_each"] = [tok.decode([i]) for i in range(len(tok))]
        try:  # an id past the vocab
            r["decode_out_of_range"] = {"id": len(tok), "text": tok.decode([len(tok)])}
        except Exception as e:  # noqa: BLE001 - recorded, for the test to see
            r["decode_out_of_range"] = {"id": len(tok), "error": f"{type(e).__name__}: {e}"}
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="test/fixtures/byte-fallback", help="folder for the tokenizer directories and refs.json")
    ap.add_argument("--dirs-only", action="store_true", help="write the tokenizer directories only (needs no transformers)")
    args = ap.parse_args()
    out = Path(args.out)
    write_dirs(out)
    if args.dirs_only:
        return
    import tokenizers
    import transformers

    refs = {
        "generated_by": "python3 scripts/make_tokenizer_refs.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "tokenizers": {name: refs_for(out / name, INPUTS[name]) for name in variants()},
    }
    (out / "refs.json").write_text(json.dumps(refs, ensure_ascii=True, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} with transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
