"""The GPU path in one command: every stage of reactlab run and timed on whatever accelerator is
here, on Qwen2-architecture models made on the spot (random weights, the embedded SmolLM2 tokenizer;
no hub), each step a ``reactlab`` subprocess under its own time limit, none stopping the rest:

- run:    ``reactlab run`` (ReAct, wiki) on 64 eval questions at batch 64 (episodes/min, generated tokens/s)
- sft:    LoRA SFT of the 1.5B shape with the GPU recipe vs plain TRL ``SFTTrainer`` defaults on the same
          rows and batch (real tokens/s, peak memory, the ratios; the recipe's ``--plan`` estimate beside)
- qlora:  QLoRA SFT of the same model (needs CUDA and bitsandbytes)
- grpo:   2 GRPO updates, rollouts against the wiki (episodes/min, s/update)
- dpo:    5 DPO steps
- export: merge the SFT adapter + GGUF q8_0
- jittor: LoRA SFT of the 0.5B shape in Jittor (``--framework jittor``: cuBLAS, bf16 with float32
          master weights on CUDA; float32 on a CPU); skipped where Jittor does not import
- gpu-tests: ``pytest -m gpu tests/gpu`` and the Jittor path's gpu tests

``prepare`` (models and data, in this process) comes first; export follows sft (it merges that
adapter). It prints one table and writes it to ``OUT/gpu_check.json`` (logs in ``OUT/logs``); each
step is ok, skipped (why), failed (why) or timeout; the exit status is 1 when one failed or timed
out. ``--tiny``: the same steps on tiny models with small counts (``TINY``), three at a time, for a
CPU (CI: tests/bench/test_gpu_check.py); there peak memory is the process' RSS, not CUDA's.

    python bench/gpu_check.py [--tiny] [--out runs/gpu-check] [--only run,sft,...] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("prepare", "run", "sft", "qlora", "grpo", "dpo", "export", "jittor", "gpu-tests")

# Qwen2 shapes (Qwen2.5-0.5B / 1.5B: hidden, layers, heads, kv heads, MLP), vocabulary from the tokenizer.
SHAPES = {
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128),
    "tiny2": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=256),
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one check: the models, the counts, each step's time limit (seconds; the sft step's
    two arms each get its limit). ``FULL``'s limits add up to the 8 minutes one H100 is given (making the models aside)."""

    small: str
    large: str
    run_n: int
    run_batch: int
    run_max_steps: int
    sft_rows: int
    sft_steps: int
    sft_batch: int
    grpo_generations: int
    grpo_batch: int
    grpo_new_tokens: int
    grpo_episode_steps: int
    dpo_batch: int
    limits: dict[str, int] = field(default_factory=dict)


FULL = Profile(small="0.5b", large="1.5b", run_n=64, run_batch=64, run_max_steps=7, sft_rows=256, sft_steps=20,
               sft_batch=8, grpo_generations=8, grpo_batch=32, grpo_new_tokens=128, grpo_episode_steps=4, dpo_batch=8,
               limits={"run": 90, "sft": 60, "qlora": 45, "grpo": 90, "dpo": 40, "export": 55, "jittor": 120,
                       "gpu-tests": 60})
TINY = Profile(small="tiny", large="tiny2", run_n=16, run_batch=16, run_max_steps=1, sft_rows=16, sft_steps=2,
               sft_batch=2, grpo_generations=2, grpo_batch=4, grpo_new_tokens=8, grpo_episode_steps=1, dpo_batch=2,
               limits={"run": 150, "sft": 150, "qlora": 30, "grpo": 150, "dpo": 150, "export": 150,
                       "jittor": 420,  # a cold Jittor cache compiles its kernels first, beside the other steps
                       "gpu-tests": 150})


@dataclass
class Step:
    name: str
    status: str = "skipped"  # ok | skipped | failed | timeout
    why: str = ""
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


# --- models and data made on the spot --------------------------------------------------------------


def make_model(shape: str, out: str) -> None:
    """A Qwen2 model of ``shape`` with random weights and the embedded tokenizer, saved to ``out``
    (built on the GPU in bf16 where there is one)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from reactlab.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2"))
    cfg = Qwen2Config(vocab_size=len(tok), max_position_embeddings=8192, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      initializer_range=0.02, **SHAPES[shape])
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if cuda else torch.float32)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = Qwen2ForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(before)
    model.config.name_or_path = f"random-qwen2-{shape}"
    model.save_pretrained(out)
    tok.save_pretrained(out)


def react_rows(n: int) -> list[dict[str, Any]]:
    """``n`` ReAct conversations (2-4 model turns, observations of varied length) for SFT."""
    rows = []
    for i in range(n):
        city = ["Paris", "Berlin", "Rome", "Madrid", "Vienna"][i % 5]
        msgs = [{"role": "user", "content": f"Question: Which city is the capital of country number {i}?"}]
        for turn in range(2 + i % 3):
            msgs += [{"role": "assistant", "content": f"Thought: I should look up country {i}, part {turn}.\n"
                                                      f"Action: search[country {i} part {turn}]"},
                     {"role": "user", "content": "Observation: " + f"Country {i} lists {city} among its cities. " * (3 + 7 * (i % 4))}]
        msgs.append({"role": "assistant", "content": f"Thought: So the answer is {city}.\nAction: finish[{city}]"})
        rows.append({"messages": msgs, "source": "gpu-check", "prompt_id": "messages:gpu-check@1"})
    return rows


def write_data(root: Path, n: int) -> dict[str, Path]:
    """The SFT, DPO and GRPO datasets as ``reactlab data build`` lays them out (prompt rows with the
    ``evidence`` column the GPU recipes' evidence reward reads)."""
    def write(name: str, rows: list[dict[str, Any]]) -> Path:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return d

    sft = react_rows(n)
    dpo, prompts = [], []
    for i, r in enumerate(sft):
        q, right = r["messages"][:1], r["messages"][-1]["content"]
        dpo.append({"prompt": q, "chosen": [{"role": "assistant", "content": right}],
                    "rejected": [{"role": "assistant", "content": "Thought: I give up.\nAction: finish[unknown]"}],
                    "source": "gpu-check", "prompt_id": "messages:gpu-check@1"})
        prompts.append({"prompt": q, "answer": right.rsplit("[", 1)[1].rstrip("]"), "source": "gpu-check",
                        "prompt_id": f"chat@1/react-{i}", "evidence": [f"country {i} part 0"]})
    return {"sft": write("sft", sft), "dpo": write("dpo", dpo), "prompts": write("prompts", prompts)}


# --- the plain TRL baseline --------------------------------------------------------------------------


def plain_sft(model: str, data: str, out: str, steps: int, batch: int) -> None:
    """TRL's ``SFTTrainer`` with its defaults (LoRA r=16 on every linear, as the recipe) on the same
    rows and batch; prints ``{"tokens_per_s", "peak_mem_mb", "steps"}`` as JSON."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from reactlab.train.record import peak_memory_mb

    rows = [json.loads(line) for line in Path(data, "train.jsonl").read_text().splitlines()]
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, report_to=[],
                     save_strategy="no", logging_steps=1, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    output = trainer.train()
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    runtime = output.metrics.get("train_runtime") or 0.0
    print(json.dumps({"tokens_per_s": round(tokens / runtime, 1) if runtime else None,
                      "peak_mem_mb": round(peak_memory_mb(), 1), "steps": trainer.state.global_step}))


# --- running the steps ---------------------------------------------------------------------------------


def reactlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "reactlab.cli", *args]


def call(cmd: list[str], limit: int, log: Path, env: dict[str, str] | None = None) -> tuple[str, str, str]:
    """Run ``cmd`` in its own process group under ``limit`` seconds: ``(status, why, stdout)``; the
    output goes to ``log`` too. A timeout kills the whole group (the trainer's workers too)."""
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT, start_new_session=True,
                                env={**os.environ, **(env or {})})
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            f.write(out or "")
            return "timeout", f"over {limit} s", out or ""
    errors = [ln for ln in log.read_text().splitlines()[1:] if ln.strip()]  # stderr: the error is its last line
    with log.open("a") as f:
        f.write(out or "")
    if proc.returncode:
        return "failed", f"exit {proc.returncode}: {errors[-1][:200] if errors else ''}", out
    return "ok", "", out


def last_json(text: str) -> dict[str, Any]:
    """The last JSON object a command printed (``reactlab train`` prints its ``RunResult``)."""
    start = text.rfind("\n{")
    return json.loads(text[start + 1 if start >= 0 else text.find("{"):])


def train_metrics(result: dict[str, Any], per_step: int | None = None) -> dict[str, Any]:
    runtime = result.get("extra", {}).get("train_runtime_s") or 0.0
    m = {"tokens_per_s": result.get("tokens_per_s"), "peak_mem_mb": result.get("peak_mem_mb"),
         "steps": result.get("steps"), "s_per_update": round(runtime / result["steps"], 2) if result.get("steps") else None}
    if per_step and runtime:
        m["episodes_per_min"] = round(per_step * result["steps"] / runtime * 60, 1)
    return m


class Check:
    """The steps of one check in a work dir; each ``step_*`` fills its ``Step``."""

    def __init__(self, profile: Profile, work: Path, out: Path, jobs: int = 1) -> None:
        self.p, self.work, self.out, self.jobs = profile, work, out, jobs
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cuda = _cuda()
        self.models = {k: work / f"model-{k}" for k in (profile.small, profile.large)}
        self.data: dict[str, Path] = {}
        self.sft_adapter: Path | None = None

    def run(self, name: str, cmd: list[str], step: Step, log: str | None = None) -> str | None:
        # On a CPU each step runs on one thread: steps run side by side, and two OpenMP threads per
        # process spin-waiting on a busy machine slow a tiny model's step many times over.
        env = None if self.cuda else {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        status, why, out = call(cmd, self.p.limits[name], self.logs / f"{log or name}.log", env)
        step.status, step.why = status, why
        return out if status == "ok" else None

    def cpu_trl(self) -> list[str]:
        """What the GPU recipes need changed here: without CUDA fp32 and no 8-bit optimizer (also
        none without bitsandbytes)."""
        if not self.cuda:
            return ["-c", "trl.optim=adamw_torch", "-c", "trl.bf16=false"]
        return [] if _imports("bitsandbytes") else ["-c", "trl.optim=adamw_torch"]

    def step_prepare(self, s: Step) -> None:
        """The models and data, in this process (no step runs without them)."""
        self.data = write_data(self.work / "data", self.p.sft_rows)
        for shape, d in self.models.items():
            make_model(shape, str(d))
        s.status = "ok"
        s.metrics = {"models": ",".join(self.models), "rows": self.p.sft_rows}

    def step_run(self, s: Step) -> None:
        out = self.work / "run"
        cmd = reactlab("run", "--task", "hotpotqa", "--model", f"hf:{self.models[self.p.small]}", "--split", "eval",
                       "--limit", str(self.p.run_n), "--batch-size", str(self.p.run_batch), "--max-steps",
                       str(self.p.run_max_steps), "--out", str(out), "--quiet")
        if self.run("run", cmd, s) is None:
            return
        summary = json.loads((out / "summary.json").read_text())
        trajs = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines() if x.strip()]
        gen = sum(t.get("usage", {}).get("completion_tokens", 0) for t in trajs)
        wall = summary["wall_s"] or 1e-9
        s.metrics = {"episodes": summary["n"], "episodes_per_min": round(summary["n"] / wall * 60, 1),
                     "gen_tokens_per_s": round(gen / wall, 1), "wall_s": round(wall, 1)}

    def _sft_specs(self, method: str, out: Path) -> list[str]:
        """The ``-c`` specs of the SFT steps: the GPU recipe, this check's model, data and counts."""
        return ["sft_gpu_qlora", f"method={method}", f"model.name={self.models[self.p.large]}",
                f"data.path={self.data['sft']}", "data.val_file=null", f"out={out}", f"trl.max_steps={self.p.sft_steps}",
                f"trl.per_device_train_batch_size={self.p.sft_batch}", "trl.gradient_accumulation_steps=1",
                "trl.save_strategy=no", "trl.eval_strategy=no", "trl.report_to=[]", "trl.logging_steps=1",
                "trl.disable_tqdm=true", *self.cpu_trl()[1::2]]

    def _sft_cmd(self, method: str, out: Path) -> list[str]:
        return reactlab("train", "sft", *(x for spec in self._sft_specs(method, out) for x in ("-c", spec)))

    def step_sft(self, s: Step) -> None:
        """Ours (the GPU recipe through ``reactlab train sft``) and plain TRL on the same rows and batch:
        one after the other where timings matter, side by side otherwise (``jobs`` > 1)."""
        out, base = self.work / "sft", Step("sft")
        plain_cmd = [sys.executable, __file__, "--plain-sft", str(self.models[self.p.large]), str(self.data["sft"]),
                     str(self.work / "plain-sft"), str(self.p.sft_steps), str(self.p.sft_batch)]
        with ThreadPoolExecutor(max_workers=min(2, self.jobs)) as pool:
            ours_f = pool.submit(self.run, "sft", self._sft_cmd("lora", out), s)
            plain_f = pool.submit(self.run, "sft", plain_cmd, base, "sft-plain-trl")
            text, plain_text = ours_f.result(), plain_f.result()
        if text is None:
            return
        ours = train_metrics(last_json(text))
        self.sft_adapter = out
        s.metrics = {"ours_tokens_per_s": ours["tokens_per_s"], "ours_peak_mem_mb": ours["peak_mem_mb"],
                     "plan_mb": self.plan_mb(out)}
        if plain_text is None:
            s.why = f"plain TRL baseline {base.status}: {base.why}"
            return
        plain = last_json(plain_text)
        s.metrics |= {"trl_tokens_per_s": plain["tokens_per_s"], "trl_peak_mem_mb": plain["peak_mem_mb"]}
        if plain["tokens_per_s"] and ours["tokens_per_s"]:
            s.metrics["speed_ratio"] = round(ours["tokens_per_s"] / plain["tokens_per_s"], 2)
        if plain["peak_mem_mb"] and ours["peak_mem_mb"]:
            s.metrics["mem_ratio"] = round(ours["peak_mem_mb"] / plain["peak_mem_mb"], 2)

    def plan_mb(self, out: Path, method: str = "lora") -> float:
        """``reactlab train sft ... --plan``'s estimate of the same run, in MB (the measured peak's unit)."""
        from reactlab.config import find_recipe, load_config, split_specs
        from reactlab.train.plan import estimate, model_shape, setup_from_recipe
        from reactlab.train.plan import load_config as model_config
        from reactlab.train.recipes import SFTRecipe

        files, specs = split_specs(self._sft_specs(method, out))
        cfg = load_config(SFTRecipe, [find_recipe(f) for f in files], specs)
        plan = estimate(model_shape(model_config(cfg.model.name)), setup_from_recipe(cfg, "sft"))
        return round(plan.total / 2**20, 1)

    def step_qlora(self, s: Step) -> None:
        if not self.cuda:
            s.why = "no CUDA (4-bit kernels are CUDA only)"
            return
        if not _imports("bitsandbytes"):
            s.why = "bitsandbytes does not import"
            return
        text = self.run("qlora", self._sft_cmd("qlora", self.work / "qlora"), s)
        if text is not None:
            s.metrics = train_metrics(last_json(text)) | {"plan_mb": self.plan_mb(self.work / "qlora", "qlora")}

    def step_grpo(self, s: Step) -> None:
        p = self.p
        cmd = reactlab("train", "grpo", "-c", "grpo_gpu_qwen2.5-0.5b", "-c", f"model.name={self.models[p.small]}",
                       "-c", f"data.path={self.data['prompts']}", "-c", f"out={self.work / 'grpo'}",
                       "-c", f"num_generations={p.grpo_generations}", "-c", f"max_new_tokens={p.grpo_new_tokens}",
                       "-c", f"max_episode_steps={p.grpo_episode_steps}",
                       "-c", "trl.max_steps=2", "-c", f"trl.per_device_train_batch_size={p.grpo_batch}",
                       "-c", "trl.gradient_accumulation_steps=1",
                       "-c", "trl.save_strategy=no", "-c", "trl.report_to=[]", "-c", "trl.disable_tqdm=true",
                       *self.cpu_trl())
        text = self.run("grpo", cmd, s)
        if text is not None:
            s.metrics = train_metrics(last_json(text), per_step=p.grpo_batch)

    def step_dpo(self, s: Step) -> None:
        cmd = reactlab("train", "dpo", "-c", "dpo_gpu_qwen2.5-0.5b", "-c", f"model.name={self.models[self.p.small]}",
                       "-c", f"data.path={self.data['dpo']}", "-c", "data.val_file=null", "-c", f"out={self.work / 'dpo'}",
                       "-c", "trl.max_steps=5", "-c", f"trl.per_device_train_batch_size={self.p.dpo_batch}",
                       "-c", "trl.gradient_accumulation_steps=1", "-c", "trl.save_strategy=no", "-c", "trl.eval_strategy=no",
                       "-c", "trl.report_to=[]", "-c", "trl.disable_tqdm=true", *self.cpu_trl())
        text = self.run("dpo", cmd, s)
        if text is not None:
            s.metrics = train_metrics(last_json(text))

    def step_export(self, s: Step) -> None:
        if self.sft_adapter is None:
            s.why = "no adapter: the sft step did not finish"
            return
        out = self.work / "export"
        if self.run("export", reactlab("export", "--model", str(self.models[self.p.large]), "--adapter",
                                       str(self.sft_adapter), "--gguf", "q8_0", "--out", str(out)), s) is not None:
            gguf = sorted(out.glob("*.gguf"))
            s.metrics = {"gguf": gguf[0].name if gguf else None,
                         "gguf_mb": round(gguf[0].stat().st_size / 1e6, 1) if gguf else None}

    def step_jittor(self, s: Step) -> None:
        """The SFT step's rows and counts on the small model with the CPU LoRA recipe, trained in
        Jittor (the first run on a machine compiles Jittor's kernels: minutes, cached after)."""
        import importlib.util

        if importlib.util.find_spec("jittor") is None:  # imported by the step itself, with our settings
            s.why = "jittor is not installed"
            return
        out, p = self.work / "jittor", self.p
        specs = ["sft_smollm2_lora", f"model.name={self.models[p.small]}", f"data.path={self.data['sft']}",
                 "data.val_file=null", f"out={out}", f"trl.max_steps={p.sft_steps}",
                 f"trl.per_device_train_batch_size={p.sft_batch}", "trl.gradient_accumulation_steps=1",
                 "trl.save_strategy=no", "trl.eval_strategy=no", "trl.report_to=[]", "trl.logging_steps=1"]
        cmd = reactlab("train", "sft", *(x for spec in specs for x in ("-c", spec)), "--framework", "jittor")
        text = self.run("jittor", cmd, s)
        if text is not None:
            info = json.loads((out / "training.json").read_text())["result"]
            s.metrics = train_metrics(last_json(text)) | {"precision": info["extra"].get("precision")}

    def step_gpu_tests(self, s: Step) -> None:
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/gpu",
               "tests/train/jittor/test_kernels.py", "-rs"]
        text = self.run("gpu-tests", cmd, s)
        if s.status == "failed" and "no tests ran" in (self.logs / "gpu-tests.log").read_text():
            s.status, s.why = "failed", "no gpu tests collected"
        summary = next((ln for ln in reversed((text or "").splitlines()) if " in " in ln), "")
        s.metrics = {"pytest": summary.strip("= ")}
        if s.status == "ok" and "passed" not in summary and "skipped" in summary:
            s.status, s.why = "skipped", "no CUDA: every gpu test skipped"


def _imports(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except Exception:  # not installed, or no kernels for this machine
        return False
    return True


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def table(steps: list[Step]) -> str:
    rows = [("step", "status", "s", "metrics")]
    for s in steps:
        status = s.status + (f" ({s.why})" if s.why else "")
        rows.append((s.name, status, f"{s.seconds:.1f}", ", ".join(f"{k} {v}" for k, v in s.metrics.items())))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]}" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models and counts (a CPU, CI)")
    ap.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    ap.add_argument("--only", help="comma-separated steps (prepare always runs)")
    ap.add_argument("--jobs", type=int, help="steps at a time (default: 1; 3 with --tiny, whose timings do not matter)")
    ap.add_argument("--plain-sft", nargs=5, metavar=("MODEL", "DATA", "OUT", "STEPS", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.plain_sft:
        m, d, o, n, b = a.plain_sft
        plain_sft(m, d, o, int(n), int(b))
        return 0
    only = set(a.only.split(",")) | {"prepare"} if a.only else set(STEPS)
    unknown = only - set(STEPS)
    if unknown:
        ap.error(f"--only: unknown steps {sorted(unknown)}; steps: {', '.join(STEPS)}")
    profile = TINY if a.tiny else FULL
    jobs = a.jobs or (3 if a.tiny else 1)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    check = Check(profile, work, a.out, jobs)
    steps = {name: Step(name) for name in STEPS}

    def go(*names: str) -> None:  # steps in order, each timed; a step's own bug is its failure
        for name in names:
            s = steps[name]
            if name not in only:
                s.why = "not in --only"
                continue
            if name != "prepare" and steps["prepare"].status != "ok":
                s.why = "no models: prepare did not finish"
                continue
            t = time.perf_counter()
            try:
                getattr(check, "step_" + name.replace("-", "_"))(s)
            except Exception as e:
                s.status, s.why = "failed", f"{type(e).__name__}: {e}"[:200]
            s.seconds = round(time.perf_counter() - t, 1)

    try:
        go("prepare")
        # export merges the sft step's adapter, so it follows it; the rest are independent. On a GPU
        # they run one at a time (their timings are the point), on a CPU side by side.
        chains = [("sft", "export"), ("run",), ("grpo",), ("dpo",), ("qlora",), ("jittor",), ("gpu-tests",)]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(go, *c) for c in chains]:
                f.result()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = round(time.perf_counter() - t0, 1)
    report = {"device": device_name(), "profile": "tiny" if a.tiny else "full", "wall_s": wall,
              "jobs": jobs, "steps": [asdict(s) for s in steps.values()]}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['device']}, {report['profile']} profile, {jobs} step(s) at a time, {wall} s\n"
          + table(list(steps.values())))
    return 1 if any(s.status in ("failed", "timeout") for s in steps.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
