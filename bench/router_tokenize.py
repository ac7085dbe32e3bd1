"""What the router's tokenizing costs per request: tokenizers' encode() against encode_batch_fast() (no character
offsets), on the bench vocabulary, for prompt lengths the workloads use. CPU time of the whole process (all threads),
median of repeats. Writes bench/results/router_tokenize.{json,md}.
Run: ``.venv/bin/python -m bench.router_tokenize``."""

from __future__ import annotations

import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

from bench.workloads.vocabulary import write_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS = (256, 1024, 4096)
CALLS = 200
REPEATS = 5


def cpu_ms_per_call(call, text: str) -> float:
    samples = []
    for _ in range(REPEATS):
        began = time.process_time()
        for _ in range(CALLS):
            call(text)
        samples.append((time.process_time() - began) / CALLS * 1000)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        tokenizer = Tokenizer.from_file(str(write_tokenizer(Path(work)) / "tokenizer.json"))
    vocabulary = [w for w in tokenizer.get_vocab() if w.isalpha()][:2000]
    rng = random.Random(7)
    rows = []
    for length in LENGTHS:
        text = " ".join(rng.choice(vocabulary) for _ in range(length))
        plain = tokenizer.encode(text).ids
        fast = tokenizer.encode_batch_fast([text])[0].ids
        assert plain == fast
        rows.append(
            {
                "prompt_tokens": len(plain),
                "encode_ms": round(cpu_ms_per_call(lambda t: tokenizer.encode(t).ids, text), 3),
                "encode_batch_fast_ms": round(
                    cpu_ms_per_call(lambda t: tokenizer.encode_batch_fast([t])[0].ids, text), 3
                ),
            }
        )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "tokenizers": tokenizers.__version__,
        "calls": CALLS,
        "repeats": REPEATS,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "router_tokenize.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Router tokenizing cost (CPU ms per call, median of repeats)",
        "",
        f"{meta}",
        "",
        "| prompt tokens | encode() | encode_batch_fast() | saved |",
        "|---|---|---|---|",
    ]
    for row in rows:
        saved = 1 - row["encode_batch_fast_ms"] / row["encode_ms"]
        lines.append(f"| {row['prompt_tokens']} | {row['encode_ms']} | {row['encode_batch_fast_ms']} | {saved:.0%} |")
    (RESULTS / "router_tokenize.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
