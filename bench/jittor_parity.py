"""Jittor vs torch on the embedded SmolLM2-135M in fp32 on this CPU: logits, a LoRA loss curve,
merged weights, speed and memory.

1. logits: the chat prompts (first user turn + generation prompt) of the first 8 data rows through
   transformers and through ``reactlab.train.jittor``: max |logit difference| and the share of
   positions whose greedy next token agrees;
2. training: ``--updates`` LoRA updates (r 16, alpha 32, all-linear, dropout 0) on the first
   ``--rows`` rows (cut to ``--max-length`` tokens, taken in order, ``--per-update`` rows per update
   as micro-batches of one: gradient accumulation), the same LoRA init (A from PEFT's init, copied
   into Jittor; B = 0), AdamW (weight decay 0, as the Trainer's default) with a cosine schedule after
   ``--warmup`` steps and gradient clipping at 1.0: torch's loop is PEFT + ``torch.optim.AdamW`` +
   ``transformers.get_scheduler`` + ``clip_grad_norm_``; Jittor's is the Jittor path's own pieces
   (``model.loss``, ``optim.AdamW``, ``clip_grads``, ``lr_factor``). Each framework trains in its
   own process, so its peak RSS is its own. Prints both curves, their ratio, and the max
   difference of the merged weights (``W + alpha/r * B @ A``);
3. speed: real tokens per second of each training loop and peak RSS; ``--naive-updates N`` also
   times N updates with Jittor's own CPU matmul (``REACTLAB_JITTOR_MATMUL=jittor``).

``--lengths 128,700`` runs only a scaling sweep instead: for each length, both frameworks train
``--updates`` updates of ``--per-update`` rows of exactly that many tokens (the data's rows repeated
to the length, or synthetic ids without ``--data``: speed and memory do not depend on the text),
each in its own process, with activation checkpointing (torch's ``gradient_checkpointing`` and the
Jittor path's; ``--no-checkpointing`` turns both off); it prints tokens/s after the first update
(Jittor compiles its kernels there), peak RSS, and Jittor's ratio to torch.

    .venv/bin/python bench/jittor_parity.py --data runs/demo/data [--updates 50] [--rows 64] [--json OUT]
    .venv/bin/python bench/jittor_parity.py --lengths 128,700 --updates 3 --per-update 1 --threads 2
    .venv/bin/python bench/jittor_parity.py --lengths 128 --updates 3 --per-update 1 --qwen2-0.5b
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reactlab.hardware import describe_cpu


def load_rows(data: Path, n: int) -> list[dict]:
    from reactlab.train.rows import load_rows as read

    return read(data / "train.jsonl", n)


def tokenizer():
    from transformers import AutoTokenizer

    from reactlab.models import resolve

    return AutoTokenizer.from_pretrained(resolve("smollm2"))


def logits_parity(rows: list[dict]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from reactlab.models import resolve
    from reactlab.train.jittor.convert import load_hf
    from reactlab.train.jittor.runtime import import_jittor

    jt = import_jittor()
    tok, path = tokenizer(), resolve("smollm2")
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ours = load_hf(path)
    ours.eval()
    diffs, agree, last, n = [], 0, 0, 0
    for row in rows[:8]:
        first = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        ids = np.array([tok.apply_chat_template(row["messages"][:first], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"]])
        with torch.no_grad():
            a = ref(input_ids=torch.tensor(ids)).logits.numpy()[0]
        with jt.no_grad():
            b = ours(jt.array(ids.astype(np.int32))).numpy()[0]
        diffs.append(float(np.abs(a - b).max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        last += int(a[-1].argmax() == b[-1].argmax())
        n += len(a)
    return {"prompts": len(diffs), "positions": n, "max_abs_diff": max(diffs), "per_prompt_max_abs_diff": diffs,
            "greedy_agree_all_positions": agree / n, "greedy_agree_next_token": last / len(diffs)}


def encoded(args) -> list[tuple[list[int], list[int]]]:
    from reactlab.train.jittor.train import encode

    if args.length:
        return fixed_length(args)
    return encode(tokenizer(), load_rows(args.data, args.rows), "assistant", str(args.data), args.max_length)


def fixed_length(args) -> list[tuple[list[int], list[int]]]:
    """``--rows`` rows of exactly ``args.length`` tokens: the data's rows repeated to that length,
    or (no data dir) random ids of the tokenizer's vocabulary with the first third unlabelled."""
    from reactlab.train.jittor.train import encode

    n = args.length
    if args.data.is_dir():
        rows = encode(tokenizer(), load_rows(args.data, args.rows), "assistant", str(args.data), None)
        return [((ids * (n // len(ids) + 1))[:n], (lab * (n // len(lab) + 1))[:n]) for ids, lab in rows]
    rng, vocab = np.random.default_rng(args.seed), len(tokenizer())
    out = []
    for _ in range(args.rows):
        ids = rng.integers(0, vocab, n).tolist()
        out.append((ids, [-100] * (n // 3) + ids[n // 3 :]))
    return out


def schedule(args, step: int) -> float:
    from reactlab.train.jittor.optim import lr_factor

    return args.lr * lr_factor("cosine", step, args.warmup, args.updates)


def update_rows(data: list, args, step: int) -> list:
    return [data[(step * args.per_update + j) % len(data)] for j in range(args.per_update)]


def worker_torch(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    from reactlab.models import resolve

    data = encoded(args)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(args.base or resolve("smollm2"), dtype=torch.float32)
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}
    np.savez(args.init, **{n.replace(".default", ""): p.detach().numpy() for n, p in names.items()})
    params = list(names.values())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = get_scheduler("cosine", opt, num_warmup_steps=args.warmup, num_training_steps=args.updates)
    losses, tokens, t0, times = [], 0, time.perf_counter(), []
    for step in range(args.updates):
        rows = update_rows(data, args, step)
        n_items = sum(sum(1 for x in lab[1:] if x != -100) for _, lab in rows)
        total = 0.0
        times.append(time.perf_counter())
        for ids, lab in rows:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(lab[1:]), ignore_index=-100,
                                                     reduction="sum") / n_items
            loss.backward()
            total += loss.item()
            tokens += len(ids)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total)
        print(f"torch {step + 1}/{args.updates} loss {total:.4f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    np.savez(args.final, **{n.replace(".default", ""): p.detach().numpy() for n, p in names.items()})
    return {"losses": losses, "tokens": tokens, "wall_s": wall, "threads": torch.get_num_threads(),
            "update_starts": [t - t0 for t in times]}


def worker_jittor(args) -> dict:
    from reactlab.models import resolve
    from reactlab.train.jittor import convert, lora
    from reactlab.train.jittor.optim import AdamW, clip_grads
    from reactlab.train.jittor.runtime import import_jittor
    from reactlab.train.jittor.train import pad

    jt = import_jittor()
    data = encoded(args)
    model = convert.load_hf(args.base or resolve("smollm2"))
    lora.inject(model, 16, 32, 0.0, "all-linear")
    with np.load(args.init) as z:
        lora.set_lora_state(model, {k: z[k] for k in z.files}, where=str(args.init))
    model.train()
    model.checkpoint = bool(args.checkpointing)
    params = lora.lora_params(model)
    opt = AdamW([tuple(p.shape) for p in params], weight_decay=0.0)
    losses, tokens, t0, times = [], 0, time.perf_counter(), []
    for step in range(args.updates):
        rows = update_rows(data, args, step)
        n_items = sum(sum(1 for x in lab[1:] if x != -100) for _, lab in rows)
        grads = [np.zeros(tuple(p.shape), np.float32) for p in params]
        total = 0.0
        times.append(time.perf_counter())
        for row in rows:
            loss, _, found = model.loss_and_grads(*pad([row], 0), params, scale=n_items)
            for g, d in zip(grads, found, strict=True):
                g += d
            total += loss
            tokens += len(row[0])
            jt.gc()
        clip_grads(grads, 1.0)
        for p, new in zip(params, opt.step([p.numpy() for p in params], grads, schedule(args, step)), strict=True):
            p.assign(jt.array(new))
        losses.append(total)
        print(f"jittor {step + 1}/{args.updates} loss {total:.4f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    np.savez(args.final, **lora.lora_state(model))
    return {"losses": losses, "tokens": tokens, "wall_s": wall, "threads": os.environ.get("OMP_NUM_THREADS"),
            "update_starts": [t - t0 for t in times]}


def run_worker(kind: str, args, tmp: Path, updates: int, env: dict | None = None) -> dict:
    out = tmp / f"{kind}-{updates}.json"
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(args.data), "--rows", str(args.rows),
           "--max-length", str(args.max_length), "--per-update", str(args.per_update), "--updates", str(updates),
           "--warmup", str(args.warmup), "--lr", str(args.lr), "--seed", str(args.seed),
           "--init", str(tmp / "init.npz"), "--final", str(tmp / f"{kind}-final.npz"), "--json", str(out),
           "--length", str(args.length or 0), "--base", args.base] + ([] if args.checkpointing else ["--no-checkpointing"])
    threads = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} \
        if args.threads else {}
    subprocess.run(cmd, check=True, env={**os.environ, **threads, **(env or {})})
    return json.loads(out.read_text())


def merged_diff(tmp: Path, scaling: float = 2.0) -> float:
    """Max |merged W (torch) - merged W (Jittor)|: the base W is the same tensor, so the merged
    weights differ by ``scaling * (B_t A_t - B_j A_j)``."""
    with np.load(tmp / "torch-final.npz") as t, np.load(tmp / "jittor-final.npz") as j:
        worst = 0.0
        for k in t.files:
            if k.endswith("lora_A.weight"):
                kb = k.replace("lora_A", "lora_B")
                worst = max(worst, float(np.abs(scaling * (t[kb] @ t[k] - j[kb] @ j[k])).max()))
        return worst


QWEN2_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True, "rope_theta": 1000000.0,
             "rms_norm_eps": 1e-6, "max_position_embeddings": 32768}
"""Qwen2-0.5B's shape (its config.json's numbers)."""


def random_qwen2_05b(out: Path) -> str:
    """An HF dir with a Qwen2 of Qwen2-0.5B's shape and random weights (fp32), for ``--qwen2-0.5b``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN2_05B), dtype=torch.float32)
    model.save_pretrained(str(out))
    return str(out)


def steady_rate(r: dict, per_update_tokens: int) -> float:
    """Tokens/s over the updates after the first (Jittor compiles its kernels in the first)."""
    starts = r["update_starts"]
    if len(starts) < 2:
        return r["tokens"] / r["wall_s"]
    return per_update_tokens * (len(starts) - 1) / (r["wall_s"] - starts[1])


def sweep(args) -> None:
    """The ``--lengths`` scaling sweep (see the module doc)."""
    print(f"CPU: {describe_cpu()}; {args.threads or 'default'} thread(s) per worker; checkpointing "
          f"{'on' if args.checkpointing else 'off'}; model: "
          f"{'random Qwen2 of Qwen2-0.5B shape' if args.qwen2_05b else args.base or 'smollm2'}")
    report: dict = {"cpu_start": describe_cpu(), "threads": args.threads, "checkpointing": args.checkpointing,
                    "model": "random Qwen2, Qwen2-0.5B's shape" if args.qwen2_05b else args.base or "smollm2",
                    "updates": args.updates, "per_update": args.per_update, "lengths": {}}
    print(f"{'length':>6} {'torch tok/s':>11} {'jittor tok/s':>12} {'speed':>6} {'torch RSS MB':>12} "
          f"{'jittor RSS MB':>13} {'memory':>7}")
    for n in [int(x) for x in args.lengths.split(",")]:
        args.length = n
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            if args.qwen2_05b:
                args.base = random_qwen2_05b(tmp / "qwen2-0.5b")
            t = run_worker("torch", args, tmp, args.updates)
            j = run_worker("jittor", args, tmp, args.updates)
        ts, js = steady_rate(t, n * args.per_update), steady_rate(j, n * args.per_update)
        print(f"{n:>6} {ts:>11.1f} {js:>12.1f} {js / ts:>5.2f}x {t['peak_rss_mb']:>12.0f} {j['peak_rss_mb']:>13.0f} "
              f"{j['peak_rss_mb'] / t['peak_rss_mb']:>6.2f}x", flush=True)
        report["lengths"][n] = {"torch": t, "jittor": j, "torch_tokens_per_s": ts, "jittor_tokens_per_s": js}
    report["cpu_end"] = describe_cpu()
    print(f"CPU at the end: {report['cpu_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="a `data build` dir (messages rows)")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--per-update", type=int, default=2, help="rows per update (micro-batches of one row)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--naive-updates", type=int, default=0, help="also time N updates on Jittor's own matmul")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP/OpenBLAS/MKL threads of the training workers (0: the libraries' default, all cores); "
                         "1 on a machine shared with other jobs, where spinning threads wait on each other")
    ap.add_argument("--lengths", default="", help="comma-separated token lengths: the scaling sweep only")
    ap.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                    help="train without activation checkpointing (both frameworks)")
    ap.add_argument("--base", default="", help="the sweep's model: an HF dir (default: the embedded SmolLM2-135M)")
    ap.add_argument("--qwen2-0.5b", dest="qwen2_05b", action="store_true",
                    help="the sweep's model: a random Qwen2 of Qwen2-0.5B's shape, made from its config")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--length", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=["torch", "jittor"], help=argparse.SUPPRESS)
    ap.add_argument("--init", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--final", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        res = (worker_torch if args.worker == "torch" else worker_jittor)(args)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        args.json.write_text(json.dumps(res))
        return
    if args.lengths:
        sweep(args)
        return

    print(f"CPU: {describe_cpu()}")
    report: dict = {"cpu_start": describe_cpu()}
    report["logits"] = lg = logits_parity(load_rows(args.data, 8))
    print(f"logits, {lg['prompts']} prompts ({lg['positions']} positions), fp32: max |diff| {lg['max_abs_diff']:.2e}; "
          f"greedy agreement {lg['greedy_agree_all_positions']:.1%} of positions, {lg['greedy_agree_next_token']:.0%} "
          f"of next tokens")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = run_worker("torch", args, tmp, args.updates)
        j = run_worker("jittor", args, tmp, args.updates)
        report["merged_max_abs_diff"] = merged_diff(tmp)
        if args.naive_updates:
            report["jittor_naive"] = run_worker("jittor", args, tmp, args.naive_updates, {"REACTLAB_JITTOR_MATMUL": "jittor"})
    ratios = [b / a for a, b in zip(t["losses"], j["losses"], strict=True)]
    print(f"\n{'step':>4} {'torch':>9} {'jittor':>9} {'ratio':>8}")
    for i, (a, b, r) in enumerate(zip(t["losses"], j["losses"], ratios, strict=True), 1):
        print(f"{i:>4} {a:>9.5f} {b:>9.5f} {r:>8.5f}")
    worst = max(abs(r - 1) for r in ratios)
    print(f"max |ratio - 1| = {worst:.2e} ({'within' if worst <= 0.01 else 'NOT within'} 1% at every step); "
          f"merged weights max |diff| = {report['merged_max_abs_diff']:.2e}")
    print(f"\nspeed (CPU: {describe_cpu()}; {args.threads or 'default'} thread(s) per worker; the machine was shared "
          "with other jobs):")
    arms = [("torch (PEFT)", t), ("jittor (numpy BLAS matmul)", j)]
    if "jittor_naive" in report:
        arms.append(("jittor (its own CPU matmul)", report["jittor_naive"]))
    for name, r in arms:
        print(f"  {name:<28} {r['tokens'] / r['wall_s']:7.1f} tokens/s  peak RSS {r['peak_rss_mb']:8.0f} MB  "
              f"({r['tokens']} tokens in {r['wall_s']:.0f} s)")
    report |= {"threads": args.threads, "torch": t, "jittor": j, "ratios": ratios, "max_abs_ratio_minus_1": worst, "cpu_end": describe_cpu()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
