"""Server fairness: a short request's latency alone and while a long request decodes, side by side
for the two ways the server feeds a model: continuous (a streaming model: the request joins the
running batch at the next decoding step) and in rounds (any other model: it waits for the batch in
progress). Also: a request for 10^9 tokens is refused at once.

    .venv/bin/python bench/serve_latency.py [--model smollm2] [--long 1000] [--short 8] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx

from reactlab.llm.hf import HFLLM
from reactlab.models import parse_model
from reactlab.serve import serve


class Rounds:
    """The same model without its streaming methods: the server then feeds it in rounds."""

    def __init__(self, llm: HFLLM):
        self.llm, self.name = llm, llm.name

    def generate(self, prompts, params):
        return self.llm.generate(prompts, params)


def short_latency(url: str, short: int, reps: int) -> float:
    """Median latency of ``reps`` short requests sent at once."""
    times: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        r = httpx.post(url, json={"prompt": f"Question: who is number {i}?\nThought 1:", "max_tokens": short},
                       timeout=3600)
        r.raise_for_status()
        times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(reps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--long", type=int, default=1000, help="max_tokens of the long request")
    ap.add_argument("--short", type=int, default=8, help="max_tokens of each short request")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    llm = HFLLM(parse_model(args.model).path(), name=args.model, draft_tokens=0)
    long_body = {"prompt": "Question: write a very long story.\nThought 1:", "max_tokens": args.long}
    print(f"model {args.model}; long request {args.long} tokens; {args.reps} short requests of {args.short} tokens "
          "sent at once (median latency)")
    for label, backend in (("continuous (streaming model)", llm), ("rounds (non-streaming model)", Rounds(llm))):
        with serve(backend, max_tokens_cap=max(4096, args.long)) as server:
            url = server.url + "/v1/completions"
            refused = httpx.post(url, json={"prompt": "x", "max_tokens": 10**9})
            alone = short_latency(url, args.short, args.reps)
            t = threading.Thread(target=lambda u=url: httpx.post(u, json=long_body, timeout=3600))
            t.start()
            time.sleep(1.0)  # the long request is decoding
            loaded = short_latency(url, args.short, args.reps)
            t.join()
        print(f"{label:30s} alone {alone * 1000:7.0f} ms   beside a long request {loaded * 1000:8.0f} ms   "
              f"ratio {loaded / alone:6.2f}x   (max_tokens=10^9: HTTP {refused.status_code})")


if __name__ == "__main__":
    main()
