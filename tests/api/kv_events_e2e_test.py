#!/usr/bin/env python3
"""End-to-end test of `tern serve --kv-events-endpoint`: a ZeroMQ SUB socket bound as llm-d's KV-cache
indexer binds it receives tern's events - topic kv@<pod>@<model>, sequence numbers, msgpack batches of
BlockStored / BlockRemoved / AllBlocksCleared - and every block hash is checked against a reference
computation written here from llm-d's definition (the last 8 bytes, big-endian, of SHA-256 over the
canonical CBOR of [parent, tokens, null], the root from the CBOR of the hash seed), with cbor2 and
hashlib: an independent implementation, not tern's code.

    python tests/api/kv_events_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the packages are missing.
"""
import hashlib
import subprocess
import sys
import time
import unittest

try:
    import cbor2
    import msgpack
    import openai
    import zmq
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, free_port, run_with_tern

TERN = None
MODEL = "smollm2-135m"
POD = "pod-a"


def reference_hash(parent, tokens):
    digest = hashlib.sha256(cbor2.dumps([parent, list(tokens), None], canonical=True)).digest()
    return int.from_bytes(digest[24:], "big")


ROOT = int.from_bytes(hashlib.sha256(cbor2.dumps("", canonical=True)).digest()[24:], "big")


class KvEvents(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.context = zmq.Context()
        cls.sub = cls.context.socket(zmq.SUB)
        port = free_port()
        cls.sub.bind(f"tcp://127.0.0.1:{port}")  # as llm-d's indexer: it binds, model servers connect
        cls.sub.setsockopt_string(zmq.SUBSCRIBE, "kv@")
        # A small KV cache (a few hundred blocks) so that distinct prompts evict.
        cls.server = TernServe(TERN, ["-m", MODEL, "--context", "512", "--kv-cache-memory", "12M",
                                      "--kv-events-endpoint", f"tcp://127.0.0.1:{port}", "--kv-events-pod", POD])
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)
        cls.messages = []

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.sub.close(linger=0)
        cls.context.term()

    def receive(self, until, timeout=15):
        """Collects messages until `until(all messages)` holds."""
        deadline = time.time() + timeout
        while not until(self.messages) and time.time() < deadline:
            if self.sub.poll(100):
                topic, seq, payload = self.sub.recv_multipart()
                self.messages.append((topic.decode(), int.from_bytes(seq, "big"), msgpack.unpackb(payload, raw=False)))
        return self.messages

    @staticmethod
    def events(messages):
        return [event for _, _, batch in messages for event in batch[1]]

    def tokens_of(self, text):
        out = subprocess.run([TERN, "tokenize", "-m", MODEL, text], capture_output=True, text=True, timeout=60, check=True)
        return [int(t) for t in out.stdout.strip().strip("[]").split(",") if t.strip()]

    def test_stored_blocks_carry_the_hashes_an_indexer_recomputes(self):
        prompt = "The quick brown fox jumps over the lazy dog while the river keeps running to the sea. " * 4
        prompt_tokens = self.tokens_of(prompt)
        full_blocks = len(prompt_tokens) // 16
        self.assertGreaterEqual(full_blocks, 3)
        first_block = prompt_tokens[:16]
        self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
        messages = self.receive(lambda m: any(e[0] == "BlockStored" and e[3] == first_block for e in self.events(m)) and
                                sum(e[0] == "BlockStored" for e in self.events(m)) >= full_blocks)
        for topic, _, batch in messages:
            self.assertEqual(topic, f"kv@{POD}@{MODEL}")
            self.assertIsInstance(batch[0], float)
        seqs = [seq for _, seq, _ in messages]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "consecutive sequence numbers")
        stored = [e for e in self.events(messages) if e[0] == "BlockStored"]
        start = next(i for i, e in enumerate(stored) if e[3] == first_block)
        stored = stored[start:]
        # The prompt's blocks, in order: a chain from the root, each hash recomputed here.
        parent = ROOT
        for i in range(full_blocks):
            tag, hashes, parent_hash, tokens, block_size, lora_id = stored[i]
            self.assertEqual(block_size, 16)
            self.assertIsNone(lora_id)
            self.assertEqual(tokens, prompt_tokens[16 * i:16 * (i + 1)], f"block {i} holds the prompt's tokens")
            self.assertEqual(parent_hash, None if i == 0 else parent)
            self.assertEqual(hashes, [reference_hash(parent, tokens)], f"block {i}'s hash")
            parent = hashes[0]
        # The same prompt again: its blocks are already cached, nothing new is stored for them.
        before = len(self.events(self.messages))
        self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
        later = self.events(self.receive(lambda m: False, timeout=0.5))[before:]
        prompt_blocks = [prompt_tokens[16 * i:16 * (i + 1)] for i in range(full_blocks)]
        self.assertEqual([e for e in later if e[0] == "BlockStored" and e[3] in prompt_blocks], [])

    def test_evicted_blocks_are_removed(self):
        # Distinct prompts until the small cache has to evict.
        for i in range(40):
            words = " ".join(f"w{i}x{j}" for j in range(60))
            self.client.completions.create(model=MODEL, prompt=words, max_tokens=1, temperature=0)
            if any(e[0] == "BlockRemoved" for e in self.events(self.receive(lambda m: False, timeout=0.05))):
                break
        messages = self.receive(lambda m: any(e[0] == "BlockRemoved" for e in self.events(m)))
        events = self.events(messages)
        removed = [h for e in events if e[0] == "BlockRemoved" for h in e[1]]
        self.assertTrue(removed, "a full cache evicts, and says so")
        stored = {h for e in events if e[0] == "BlockStored" for h in e[1]}
        self.assertTrue(set(removed) <= stored, "only hashes that were stored are removed")
        self.assertEqual(events[0], ["AllBlocksCleared"], "held until the indexer subscribed: nothing lost, the clear first")


if __name__ == "__main__":
    run_with_tern()
