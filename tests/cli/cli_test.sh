#!/usr/bin/env bash
# End-to-end checks of the `tern` binary as a user runs it. Usage: cli_test.sh TERN DATA_DIR
set -u
tern="$1"
data="$2"
failures=0
check() {  # check NAME EXPECTED_SUBSTRING OUTPUT
  if [[ "$3" != *"$2"* ]]; then
    echo "FAIL $1: expected to find: $2"
    echo "---- output ----"; echo "$3"; echo "----------------"
    failures=$((failures + 1))
  else
    echo "ok   $1"
  fi
}

out=$("$tern" models 2>&1); check "models lists the default" "smollm2-135m" "$out"

out=$("$tern" inspect smollm2-135m 2>&1)
check "smollm2 architecture" "architecture       llama" "$out"
check "smollm2 parameters" "134.5M (134515008)" "$out"
check "smollm2 quant mix" "Q4_1 68.7% (210 tensors)" "$out"
check "smollm2 context" "context length     8192" "$out"
check "smollm2 vocab" "49152 tokens, byte-level BPE (gpt2, pre-tokenizer smollm)" "$out"
check "smollm2 specials" "bos 1 '<|im_start|>'" "$out"
check "smollm2 template" "{% for message in messages %}" "$out"
check "smollm2 memory" "92.1 MiB weights" "$out"

out=$("$tern" inspect gemma3-270m 2>&1)
check "gemma3 architecture" "architecture       gemma3" "$out"
check "gemma3 parameters" "268.1M (268098176)" "$out"
check "gemma3 vocab" "262144 tokens, SentencePiece" "$out"
check "gemma3 quant mix" "Q8_0 72.9% (10 tensors), Q5_0 17.7% (81 tensors), Q4_K 5.4% (27 tensors), Q6_K 3.9% (9 tensors)" "$out"
check "gemma3 context" "context length     32768" "$out"

out=$("$tern" inspect gemma3-270m --tensors --metadata 2>&1)
check "tensor listing" "token_embd.weight" "$out"
check "metadata listing" "gemma3.attention.sliding_window" "$out"

# Token ids: same as llama.cpp's for the first hand-written strings of the goldens.
out=$("$tern" tokenize -m smollm2-135m "Hello world" 2>&1); check "tokenize arg" "[19556, 905]" "$out"
out=$(printf '<|im_start|>user' | "$tern" tokenize -m smollm2-135m --special 2>&1); check "tokenize stdin special" "[1, 4093]" "$out"
out=$("$tern" tokenize -m gemma3-270m "Hello world" 2>&1); check "tokenize gemma adds bos" "[2, 9259, 1902]" "$out"

# Generation: greedy text and speed figures; same seed, same text; a prompt over the context is an error.
out=$("$tern" run -m smollm2-135m -p "The capital of France is" -n 8 --temperature 0 -t 2 2>&1)
check "run greedy text" "Paris" "$out"
check "run speeds" "decode: 8 tokens" "$out"
a=$("$tern" run -p "Once upon a time" -n 12 --temperature 0.9 --seed 7 2>/dev/null)
b=$("$tern" run -p "Once upon a time" -n 12 --temperature 0.9 --seed 7 2>/dev/null)
check "run same seed same text" "$a" "$b"
out=$("$tern" run -p "$(printf 'word %.0s' {1..40})" -c 16 2>&1); rc=$?
check "run prompt over context" "the context holds 16" "$out"
[[ $rc == 1 ]] || { echo "FAIL run over context exit code $rc"; failures=$((failures + 1)); }
out=$(printf 'Hi\n' | "$tern" chat -n 4 --temperature 0 2>&1); check "chat one turn" "context 4096" "$out"
# A LoRA adapter (the fixtures scripts/test.sh makes): applied, and a mismatched one refused by name.
lora="${TERN_HOME:-$HOME/.cache/tern}/fixtures/lora"
if [[ -f "$lora/smollm2-r16.gguf" ]]; then
  out=$("$tern" run -p "The capital of France is" -n 8 --temperature 0 --lora "$lora/smollm2-r16.gguf" 2>&1)
  check "run with a LoRA adapter" "LoRA adapter $lora/smollm2-r16.gguf: rank 16, scale 2" "$out"
  out=$("$tern" run -p "Hi" -n 2 --lora "$lora/gemma3-r8.gguf" 2>&1)
  check "run with a mismatched adapter" "is an adapter for architecture 'gemma3' but the base model is 'llama'" "$out"
fi
out=$("$tern" chat -m gemma3-270m -n 4 </dev/null 2>&1); check "chat without template" "has no chat template" "$out"

# Errors: clear, naming the problem, non-zero exit, no crash.
tmp=$(mktemp -d)
printf 'GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff' > "$tmp/bad.gguf"
out=$("$tern" inspect "$tmp/bad.gguf" 2>&1); rc=$?
check "bad file error" "$tmp/bad.gguf: truncated" "$out"
[[ $rc == 1 ]] || { echo "FAIL bad file exit code $rc"; failures=$((failures + 1)); }
out=$("$tern" inspect no-such-model 2>&1); rc=$?
check "unknown model error" "'no-such-model' is neither a file nor a known model (known: smollm2-135m, gemma3-270m)" "$out"
[[ $rc == 1 ]] || { echo "FAIL unknown model exit code $rc"; failures=$((failures + 1)); }
out=$("$tern" pull no-such-model 2>&1); check "pull unknown" "unknown model 'no-such-model'" "$out"
rm -rf "$tmp"

echo "$failures failed"
exit $((failures > 0))
