"""Where a Jittor training step's time goes, and what each speed lever buys, side by side in one run.

One LoRA step (r 16, all-linear, dropout 0) of the embedded SmolLM2-135M on one synthetic row of
``--length`` tokens, the second half labelled, each arm in its own process (fresh memory, its own
kernel compilation warmed by ``--warmup`` steps first), ``--steps`` timed steps:

- ``profile``: the default path under ``jt.profile_scope``: Jittor's per-op report summed by op
  kind (the numpy-BLAS matmuls are ``numpy_code`` ops), and the share of the step's wall time
  spent outside Jittor's ops (Python, graph building, numpy copies between stages);
- the levers, each arm the default with one thing changed:
  ``default`` (numpy-BLAS matmuls, activation checkpointing, labelled-position loss in chunks),
  ``jittor-matmul`` (Jittor's own CPU matmul kernel: ``REACTLAB_JITTOR_MATMUL=jittor``),
  ``no-checkpointing`` (one graph for the whole step), ``bf16`` (half-precision weights and
  activations, float32 products on a CPU).

Prints s/step, tokens/s and peak RSS per arm and each arm's ratio to the default, the CPU named.

    .venv/bin/python bench/jittor_profile.py [--length 128] [--steps 2] [--threads 2] [--arms default,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

from reactlab.hardware import describe_cpu

ARMS = ("default", "jittor-matmul", "no-checkpointing", "bf16")


def worker(arm: str, length: int, warmup: int, steps: int, profile: bool) -> dict:
    from reactlab.models import resolve
    from reactlab.train.jittor import lora
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    model = load_hf(resolve("smollm2"))
    lora.inject(model, r=16, alpha=32, dropout=0.0, target_modules="all-linear", seed=0)
    params = lora.lora_params(model)
    model.checkpoint = arm != "no-checkpointing"
    if arm == "bf16":
        model.set_precision("bfloat16", params)
    model.train()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.args.vocab_size, size=(1, length))
    labels = ids.copy()
    labels[:, : length // 2] = -100
    for _ in range(warmup):
        model.loss_and_grads(ids, labels, params)
        jt.gc()
    t = time.perf_counter()
    for _ in range(steps):
        model.loss_and_grads(ids, labels, params)
        jt.gc()
    wall = (time.perf_counter() - t) / steps
    out = {"arm": arm, "s_per_step": round(wall, 3), "tokens_per_s": round(length / wall, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if profile:
        from reactlab.train.jittor import kernels

        blas: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # calls, seconds: the numpy-BLAS
        # matmuls run in Python callbacks, which Jittor's profiler does not time

        def timed(name, fn):
            def run(np_, data):
                t0 = time.perf_counter()
                fn(np_, data)
                blas[name][0] += 1
                blas[name][1] += time.perf_counter() - t0
            return run

        for name in ("_linear_fwd", "_linear_dx", "_linear_dw", "_bmm_fwd", "_bmm_da", "_bmm_db"):
            setattr(kernels, name, timed(name[1:], getattr(kernels, name)))
        t = time.perf_counter()
        with jt.profile_scope() as report:
            model.loss_and_grads(ids, labels, params)
        wall = time.perf_counter() - t
        head, rows = report[0], report[1:]
        col = {name: i for i, name in enumerate(head)}
        kinds: dict[str, float] = defaultdict(float)
        for r in rows:  # times in ns; a fused op is named by the ops it fuses
            name = str(r[col["Name"]])
            fused = list(dict.fromkeys(re.findall(r"OP:(\w+)", name) or re.findall(r"opkey\d+:(\w+)", name)))
            kinds["fused " + "+".join(fused[:4]) if "opkey" in name else name.split("«")[0]] += \
                float(r[col["TotalTime"]]) / 1e9
        kinds.pop("code", None)  # the numpy_code ops: their callbacks are timed above
        in_ops = sum(kinds.values())
        top = sorted(kinds.items(), key=lambda kv: -kv[1])[:6]
        in_blas = sum(v[1] for v in blas.values())
        out["profile"] = {"wall_s": round(wall, 3), "blas_s": round(in_blas, 3), "jittor_ops_s": round(in_ops, 3),
                          "rest_s": round(wall - in_blas - in_ops, 3),
                          "blas": {k: (v[0], round(v[1], 3)) for k, v in sorted(blas.items())},
                          "top_ops": [(k, round(v, 3), round(v / wall, 3)) for k, v in top]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.length, a.warmup, a.steps, profile=a.worker == "default")))
        return 0
    arms = a.arms.split(",")
    unknown = set(arms) - set(ARMS)
    if unknown:
        ap.error(f"--arms: unknown {sorted(unknown)}; arms: {', '.join(ARMS)}")
    results = []
    for arm in arms:
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": str(a.threads)}
        if arm == "jittor-matmul":
            env["REACTLAB_JITTOR_MATMUL"] = "jittor"
        cmd = [sys.executable, __file__, "--worker", arm, "--length", str(a.length), "--warmup", str(a.warmup),
               "--steps", str(a.steps)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode:
            print(f"{arm}: failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
            continue
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"{describe_cpu()}; {a.threads} thread(s) per arm; one row of {a.length} tokens (half labelled); "
          f"{a.steps} timed step(s) after {a.warmup} warm-up")
    base = next((r for r in results if r["arm"] == "default"), None)
    print(f"{'arm':<18}{'s/step':>9}{'tok/s':>9}{'peak RSS MB':>13}{'time vs default':>17}{'RSS vs default':>16}")
    for r in results:
        tr = f"{r['s_per_step'] / base['s_per_step']:.2f}x" if base else "-"
        mr = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x" if base else "-"
        print(f"{r['arm']:<18}{r['s_per_step']:>9}{r['tokens_per_s']:>9}{r['peak_rss_mb']:>13}{tr:>17}{mr:>16}")
    if base and "profile" in base:
        p = base["profile"]
        w = p["wall_s"]
        print(f"\nprofile of one default step, {w} s: numpy-BLAS matmuls {p['blas_s']} s ({p['blas_s'] / w:.0%}), "
              f"Jittor's other ops {p['jittor_ops_s']} s ({p['jittor_ops_s'] / w:.0%}), the rest (Python, graph "
              f"building, copies between stages) {p['rest_s']} s ({p['rest_s'] / w:.0%}); Jittor's largest ops:")
        print("  numpy-BLAS by kind (calls, s): " + ", ".join(f"{k} {n}, {sec}" for k, (n, sec) in p["blas"].items()))
        for name, sec, share in p["top_ops"]:
            print(f"  {name[:60]:<62}{sec:>8} s {share:>7.1%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": describe_cpu(), "threads": a.threads, "length": a.length, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
