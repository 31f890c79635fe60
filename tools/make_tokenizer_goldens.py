#!/usr/bin/env python3
"""Makes the tokenizer goldens that tests/tokenizer/tokenizer_golden_test.cpp checks tern against.

The reference is llama.cpp's tokenizer, through llama-cpp-python (dev venv), loading only the vocab
of each real model. For every string of tests/data/tokenizer/strings.json (written by this script
from the hand-written cases below plus seeded random mixtures) it records the token ids for:
  - add_special=True,  parse_special=False  (how a prompt from a user is encoded)
  - add_special=False, parse_special=True   (how a rendered chat template is encoded)

Usage: .venv/bin/python tools/make_tokenizer_goldens.py MODEL_ALIAS=MODEL.gguf [...]
"""
import json
import os
import random
import sys

from llama_cpp import Llama

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer")
SEED = 1127

HAND_WRITTEN = [
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \n ", "\r\n", "a", "A", "Hello", "Hello world",
    " Hello world", "Hello  world", "Hello   world ", "hello\nworld", "hello\n\nworld", "   leading", "trailing   ",
    "The quick brown fox jumps over the lazy dog.", "I'm here; you're there. We've done it, they'll see, he'd go.",
    "DON'T SHOUT! It's OK's.", "1", "12", "123", "1234", "12345", "3.14159", "1,000,000", "2026-11-27", "0x1F",
    "v1.2.3", "+1 (555) 010-9999", "100%", "$9.99", "€10", "¥1000", "½ ¾ ⅓", "Ⅻ", "١٢٣", "४२", "𝟙𝟚𝟛",
    "Bonjour, ça va ? Très bien !", "Grüße aus München, Straße", "¿Dónde está la biblioteca?", "Ærøskøbing",
    "Привет, как дела?", "Ελληνικά γράμματα", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "বাংলা ভাষা",
    "தமிழ்", "ภาษาไทย", "Tiếng Việt có dấu", "你好，世界！", "我爱自然语言处理。", "日本語のテキストです。",
    "カタカナとひらがな", "한국어 텍스트입니다", "ᚠᛇᚻ᛫ᛒᛦᚦ", "ሰላም", "Ꭰ Ꭱ Ꭲ", "ㄅㄆㄇ",
    "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "I ❤️ NY 🗽", "emoji at end 🎉", "🎉 emoji at start",
    "∀x∈ℝ: x²≥0", "E = mc²", "α + β = γ", "→ ← ↑ ↓", "≤ ≥ ≠ ≈", "∑_{i=1}^{n} i", "√2 ≈ 1.414",
    "def f(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1:\n        pass\n    else:\n        raise ValueError('bad')", "const f = (a, b) => a ?? b;",
    "SELECT * FROM users WHERE id = 42;", "<div class=\"x\">Hi</div>", "{\"key\": [1, 2, 3], \"ok\": true}",
    "#include <stdio.h>", "// comment\n/* block */", "x+=1;y-=2;z*=3", "a && b || !c", "path/to/file.txt",
    "C:\\Windows\\System32", "https://example.com/a?b=c&d=e#f", "user@example.com", "@mention #hashtag",
    "snake_case_name", "camelCaseName", "PascalCaseName", "SCREAMING_CASE", "kebab-case-name",
    "    indented with spaces", "\tindented with a tab", "mixed \t whitespace \n here",
    "trailing newline\n", "many\n\n\n\n\nnewlines", "spaces          between", "end with spaces     ",
    "!!!", "???", "...", "---", "***", "___", "~~~", "``` code ```", "'''", "\"\"\"", "((()))", "[[]]", "{{}}",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "text <|im_start|> inside", "<bos>", "<eos>", "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<pad><unk><mask>", "<unused0>", "<start_of_image>", "[multimodal]", "<not_a_token>", "<|not special|>",
    "<", ">", "<<>>", "< |im_start| >", "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "soft\u00adhyphen",
    "line\u2028separator", "nel\u0085char", "ideographic\u3000space", "en\u2002space", "tab\u000bvertical",
    "form\u000cfeed", "bell\u0007char", "null\u0000char", "\ufeffBOM start", "replacement \ufffd char",
    "combining e\u0301 accent", "precomposed é accent", "Å vs Å", "ﬁ ligature", "ｆｕｌｌｗｉｄｔｈ", "ⓒⓘⓡⓒⓛⓔ",
    "a" * 100, "ab" * 50, " " * 33, "\n" * 17, "9" * 40, "😀" * 10, "。" * 9, "-" * 64, "=" * 31,
    "word " * 40, "The end.",
]


def random_strings(rng, count):
    alphabet = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list(" \n\t.,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`") +
                list("éèçñüößøåæœ") + list("αβγδεζηθλμπσω") + list("абвгдежзийкл") + list("你好世界中文字") +
                list("あいうえおかきくけこ") + list("한국어") + list("😀👍🎉🔥✨") + ["\u00a0", "\u3000", "\u200b"])
    words = ["the", " the", "token", "izer", " hello", " world", "<|im_start|>", "<|im_end|>", "<bos>", "\n\n",
             "    ", "123", " 456", "'s", "'ll", "don't", "C++", "naïve", "日本", "🙂", "x=1", "<eos>"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.5:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(SEED)
    strings = HAND_WRITTEN + random_strings(rng, 320 - len(HAND_WRITTEN))
    with open(os.path.join(OUT, "strings.json"), "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=False, indent=0)
    for arg in sys.argv[1:]:
        alias, path = arg.split("=", 1)
        llm = Llama(model_path=path, vocab_only=True, verbose=False)
        cases = []
        for text in strings:
            data = text.encode("utf-8")
            cases.append({
                "plain": llm.tokenize(data, add_bos=True, special=False),
                "special": llm.tokenize(data, add_bos=False, special=True),
            })
        with open(os.path.join(OUT, f"{alias}.json"), "w") as f:
            json.dump({"model": os.path.basename(path), "cases": cases}, f)
        print(f"{alias}: {len(cases)} strings", file=sys.stderr)


if __name__ == "__main__":
    main()
