"""GRPO and RLOO with ReAct episodes as rollouts, on tiny random Llamas (CPU): the flattened
episode keeps its token / mask invariant, the env mask zeroes the gradient on observation tokens
(and the same check fails without it), the mean reward rises on a toy bandit whose optimum is known,
rollouts come from the current weights, resume is exact, RLOO runs, bad recipes fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reactlab.config import ConfigError, load_config
from reactlab.train.recipes import GRPORecipe, RLOORecipe

pytest.importorskip("trl")

QUESTION = [{"role": "user", "content": "Say something."}]
TARGET = "Alpine"
"""On ``tiny_model_dir`` at temperature 0.15, the first token of a reply to ``QUESTION`` is
`` pleasant`` with p 0.72, `` Alpine`` 0.15, `` chlorine`` 0.10 (measured): a bandit whose optimum,
always `` Alpine``, is reachable but rarely sampled at first."""


def toy_reward(prompts, completions, **_):
    """1 when the episode's first model turn starts with ``TARGET``."""
    from reactlab.train.rewards import assistant_texts

    return [float(assistant_texts(c)[0].lstrip().startswith(TARGET)) for c in completions]


@pytest.fixture(autouse=True)
def _toy_reward(monkeypatch):
    from reactlab.train.rewards import REWARDS

    monkeypatch.setitem(REWARDS, "toy_reward", toy_reward)


@pytest.fixture(scope="session")
def prompt_data(tmp_path_factory) -> str:
    """8 prompt rows as ``data build --format prompts`` writes them (one question, so the bandit's
    arms are the same every step)."""
    d = tmp_path_factory.mktemp("prompts")
    rows = [{"prompt": QUESTION, "answer": "Alpine", "source": "test", "prompt_id": "chat@1/react"}] * 8
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(d)


FAST = dict(max_steps=2, per_device_train_batch_size=4, logging_steps=1, learning_rate=1e-2,
            save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
            bf16=False)  # fp32 whatever the CPU: tests compare log-probs at 1e-4


def recipe(cls, model: str, data: str, out: Path, **keys):
    trl = FAST | keys.pop("trl", {})
    base = dict(model=model, data={"path": data}, out=str(out), lora={"r": 8, "alpha": 16, "dropout": 0.0},
                env="none", rewards={"toy_reward": 1.0, "format_reward": 0.0}, num_generations=4,
                max_episode_steps=2, max_new_tokens=4, temperature=0.15)
    return cls(**base | keys, trl=trl)


def lora_state(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


# --- the rollout -----------------------------------------------------------------------------------


def policy(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.llm.hf import HFLLM

    model = AutoModelForCausalLM.from_pretrained(path)
    return HFLLM.from_model(model, AutoTokenizer.from_pretrained(path))


def test_rollout_invariant_and_mask(tiny_model_dir):
    """Multi-turn episodes: ids, logprobs and mask align; the text is the chat template's; the
    masked tokens are exactly the observation / template tokens between turns."""
    from reactlab.train.rollout import RolloutSpec, check_rollout, run_rollouts

    llm = policy(tiny_model_dir)
    tok = llm.tokenizer
    outs = run_rollouts(llm, [QUESTION] * 3, RolloutSpec(max_steps=3, max_new_tokens=6, temperature=1.0))
    for r in outs:
        check_rollout(tok, QUESTION, r)
        assert r.status == "max_steps" and len([m for m in r.messages if m["role"] == "assistant"]) == 3
        # Two observation turns between three model turns: mask 1-runs alternate with 0-runs.
        runs = [k for i, k in enumerate(r.env_mask) if i == 0 or r.env_mask[i - 1] != k]
        assert runs == [1, 0, 1, 0, 1]
        masked = tok.decode([t for t, m in zip(r.completion_ids, r.env_mask, strict=True) if not m])
        assert masked.count("Observation: Invalid action") == 2 and "<|im_start|>assistant" in masked
        assert all(lp < 0 for lp, m in zip(r.logprobs, r.env_mask, strict=True) if m)
    # Same seed, same weights: the same episodes.
    again = run_rollouts(llm, [QUESTION] * 3, RolloutSpec(max_steps=3, max_new_tokens=6, temperature=1.0))
    assert [r.completion_ids for r in again] == [r.completion_ids for r in outs]


def test_wiki_rollouts_step_the_environment(tiny_model_dir, vendored_index):
    """With ``WikiEnv`` as the environment, each observation turn is what the env answered to the
    action parsed from the model's turn (the random model's turns are invalid actions)."""
    from reactlab.agents.parsing import parse_action
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.train.rollout import RolloutSpec, check_rollout, run_rollouts

    llm = policy(tiny_model_dir)
    (r,) = run_rollouts(llm, [QUESTION], RolloutSpec(max_steps=2, max_new_tokens=5), lambda: WikiEnv(vendored_index))
    check_rollout(llm.tokenizer, QUESTION, r)
    turn, obs = r.messages[0]["content"], r.messages[1]["content"]
    env = WikiEnv(vendored_index)
    assert obs == "Observation: " + env.step(parse_action(turn.strip()))[0]
    assert obs.startswith("Observation: Invalid action: ") and "no tools" not in obs  # WikiEnv's, not NoToolEnv's


def test_single_turn_rollout(tiny_model_dir):
    from reactlab.train.rollout import RolloutSpec, run_rollouts

    llm = policy(tiny_model_dir)
    (r,) = run_rollouts(llm, [QUESTION], RolloutSpec(multi_turn=False, max_new_tokens=5))
    assert len(r.completion_ids) == 5 and r.env_mask == [1] * 5 and len(r.logprobs) == 5
    assert r.messages == [{"role": "assistant", "content": llm.tokenizer.decode(r.completion_ids)}]


@pytest.mark.parametrize("fast", [False, True])
def test_rl_configs_take_bf16_where_the_cpu_multiplies_it_fast(fast, prompt_data, tmp_path, monkeypatch):
    """GRPO and RLOO ask ``trl_defaults`` for CPU bf16 as SFT does (measured: docs/training.md); the
    recipe's ``trl.bf16`` wins either way."""
    import reactlab.hardware
    from reactlab.train.grpo import grpo_config
    from reactlab.train.rloo import rloo_config

    monkeypatch.setattr(reactlab.hardware, "bf16_matmuls_fast", lambda flags=None: fast)
    monkeypatch.setattr("reactlab.train.args.cuda_available", lambda: False)
    for cls, make in ((GRPORecipe, grpo_config), (RLOORecipe, rloo_config)):
        cfg = recipe(cls, "m", prompt_data, tmp_path)
        unset = cfg.model_copy(update={"trl": {k: v for k, v in cfg.trl.items() if k != "bf16"}})
        assert make(unset).bf16 is fast
        assert make(recipe(cls, "m", prompt_data, tmp_path, trl={"bf16": False})).bf16 is False


# --- GRPO ------------------------------------------------------------------------------------------


def grpo_trainer(model_dir: str, data: str, out: Path, **keys):
    """A GRPOTrainer as ``train_grpo`` builds it (not trained)."""
    from trl import GRPOTrainer

    from reactlab.train.grpo import grpo_config
    from reactlab.train.online import EpisodeRollouts, rl_dataset, rl_rewards, rollout_spec
    from reactlab.train.policy import load_policy

    cfg = recipe(GRPORecipe, model_dir, data, out, **keys)
    args = grpo_config(cfg)
    policy = load_policy(cfg)
    model, tok, peft = policy.model, policy.tokenizer, policy.peft_config
    rows = [json.loads(x) for x in (Path(data) / "train.jsonl").read_text().splitlines()]
    rollouts = EpisodeRollouts(rollout_spec(cfg, 0))
    trainer = GRPOTrainer(model=model, args=args, train_dataset=rl_dataset(rows), processing_class=tok,
                          peft_config=peft, reward_funcs=rl_rewards(cfg), rollout_func=rollouts)
    return trainer, rollouts


def obs_logit_grads(trainer, use_mask: bool):
    """The gradient of the GRPO loss w.r.t. the final hidden state (what the LM head turns into the
    logits) at each position that scores a completion token, max |.| over features, and the batch's
    env and completion masks; advantages set to +-1 (a real step's are 0 when a group's rewards
    tie). After the last layer, position t's hidden state feeds only the logits scoring token t+1:
    its gradient is exactly that token's loss term's (TRL's fused LM head never materialises logits
    as a module output, so they cannot be hooked themselves)."""
    import torch

    batch = [trainer.train_dataset[i] for i in range(4)]
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    mask = inputs["tool_mask"].clone()
    if not use_mask:
        del inputs["tool_mask"]
    inputs["advantages"] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    grads = []

    def keep(module, args, out):
        out.retain_grad()
        grads.append(out)

    hook = trainer.model.get_base_model().model.norm.register_forward_hook(keep)
    try:
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
    finally:
        hook.remove()
    (hidden,) = grads
    p, c = inputs["prompt_ids"].size(1), inputs["completion_ids"].size(1)
    per_pos = hidden.grad[:, p - 1 : p + c - 1].abs().amax(-1)  # position p-1+j scores completion token j
    return per_pos, mask, inputs["completion_mask"]


def test_rollouts_decode_outside_the_bf16_autocast_that_the_loss_runs_in(tiny_model_dir, prompt_data, tmp_path):
    """Under ``trl.bf16`` accelerate wraps the policy's ``forward`` in autocast when training starts;
    the rollouts take the model's own ``forward`` (fp32, as the engine's old-policy log-probs are
    meant to be) and the loss's forwards keep the wrapper."""
    import torch

    trainer, rollouts = grpo_trainer(tiny_model_dir, prompt_data, tmp_path, trl={"bf16": True})
    phase, seen = ["loss"], []
    sample = rollouts.rollouts

    def tagged(*args, **kwargs):
        phase[0] = "rollout"
        try:
            return sample(*args, **kwargs)
        finally:
            phase[0] = "loss"

    rollouts.rollouts = tagged
    hook = trainer.model.get_base_model().model.norm.register_forward_hook(
        lambda *_: seen.append((phase[0], torch.is_autocast_enabled("cpu"))))
    try:
        trainer.train()
    finally:
        hook.remove()
    assert {on for p, on in seen if p == "rollout"} == {False}
    assert {on for p, on in seen if p == "loss"} == {True}


def test_env_mask_zeroes_observation_gradients(tiny_model_dir, prompt_data, tmp_path):
    """With the env mask, the loss's gradient w.r.t. the logits that score observation / template
    tokens is exactly 0 and non-zero on the model's tokens; without it, it is non-zero there."""
    trainer, _ = grpo_trainer(tiny_model_dir, prompt_data, tmp_path / "a")
    g, mask, cm = obs_logit_grads(trainer, use_mask=True)
    obs = (mask == 0) & (cm == 1)
    assert obs.sum() > 10 and (mask * cm).sum() > 10
    assert (g[obs] == 0).all()
    assert (g[(mask == 1) & (cm == 1)] > 0).float().mean() > 0.9
    trainer.model.zero_grad()
    g2, _, _ = obs_logit_grads(trainer, use_mask=False)
    assert (g2[obs] > 0).float().mean() > 0.9  # the check above fails without the mask


def test_rollouts_come_from_the_current_policy(tiny_model_dir, prompt_data, tmp_path):
    """After optimizer steps, the engine's logprobs of a fresh rollout equal TRL's recomputed ones
    for the same tokens (fp32, 1e-4), and they differ from the starting model's."""
    import torch

    from reactlab.train.rollout import RolloutSpec, run_rollouts

    trainer, rollouts = grpo_trainer(tiny_model_dir, prompt_data, tmp_path / "b", trl={"learning_rate": 5e-2})
    trainer.train()
    model = trainer.model
    model.eval()
    outs = run_rollouts(rollouts.llm, [QUESTION] * 2, RolloutSpec(max_steps=2, max_new_tokens=6, temperature=0.15,
                                                                   seed=7))
    diffs, moved = [], []
    for r in outs:
        ids = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            logps, *_ = trainer._get_per_token_logps_and_entropies(model, ids, torch.ones_like(ids),
                                                                   len(r.completion_ids))
            with model.disable_adapter():
                base, *_ = trainer._get_per_token_logps_and_entropies(model, ids, torch.ones_like(ids),
                                                                     len(r.completion_ids))
        m = torch.tensor(r.env_mask, dtype=torch.bool)
        engine = torch.tensor(r.logprobs)
        diffs.append((logps[0] - engine)[m].abs().max().item())
        moved.append((base[0] - engine)[m].abs().max().item())
    print(f"max |engine - trainer| logprob: {max(diffs):.2e}; vs the starting model: {min(moved):.3f}")
    assert max(diffs) < 1e-4
    assert min(moved) > 1e-2  # the check would pass trivially if training had not moved the policy


def test_each_process_samples_its_slice_of_the_global_batch(tiny_model_dir, prompt_data, tmp_path, monkeypatch):
    """Under several processes, process 1's two prompts are entries 2 and 3 of a global batch of 4:
    its episodes are those one process samples there, not a copy of process 0's."""
    trainer, rollouts = grpo_trainer(tiny_model_dir, prompt_data, tmp_path / "s", temperature=1.0)
    whole = rollouts([QUESTION] * 4, trainer)["completion_ids"]
    assert whole[:2] != whole[2:]  # else a copy of process 0's slice would pass too
    monkeypatch.setattr(type(trainer.accelerator), "process_index", property(lambda self: 1))
    assert rollouts([QUESTION] * 2, trainer)["completion_ids"] == whole[2:]


def test_grpo_mean_reward_rises(tiny_model_dir, prompt_data, tmp_path):
    """The toy bandit (``TARGET``): the last steps' mean reward clearly beats the first steps'."""
    from reactlab.train.grpo import train_grpo
    from reactlab.train.record import read_training_record

    cfg = recipe(GRPORecipe, tiny_model_dir, prompt_data, tmp_path / "g", num_generations=8,
                 trl={"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 1e-2})
    result = train_grpo(cfg)
    curve = [r["reward"] for r in result.extra["rewards"]]
    print("GRPO toy reward per step:", [round(x, 3) for x in curve])  # measured: 0.25, then 1.0 from step 2
    first, last = sum(curve[:2]) / 2, sum(curve[-2:]) / 2
    assert len(curve) == 6 and last > first + 0.3, curve
    assert result.train_tokens > 0 and result.tokens_per_s
    out = Path(cfg.out)
    assert (out / "reward.png").is_file() and (out / "loss.png").is_file()
    info = read_training_record(out)
    assert info["trainer"] == "grpo" and info["recipe"]["rewards"] == {"toy_reward": 1.0, "format_reward": 0.0}


def test_a_group_split_into_micro_batches_is_one_update(tiny_model_dir, prompt_data, tmp_path, monkeypatch):
    """8 episodes of one question per update, backpropagated 4 at a time (what keeps a CPU's memory
    down): the rollouts are asked for once per update, for the whole group of one question."""
    from reactlab.train import grpo

    calls = []
    original = grpo.EpisodeRollouts.__call__

    def counted(self, prompts, trainer):
        calls.append([json.dumps(p, sort_keys=True) for p in prompts])
        return original(self, prompts, trainer)

    monkeypatch.setattr(grpo.EpisodeRollouts, "__call__", counted)
    cfg = recipe(GRPORecipe, tiny_model_dir, prompt_data, tmp_path / "g", num_generations=8,
                 trl={"max_steps": 2, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2})
    result = grpo.train_grpo(cfg)
    assert result.steps == 2 and len(result.extra["rewards"]) == 2
    assert [(len(c), len(set(c))) for c in calls] == [(8, 1), (8, 1)]


def test_grpo_resume_equals_uninterrupted(tiny_model_dir, prompt_data, tmp_path):
    """Interrupted after checkpoint-2 and resumed: the same adapter as a run of 4 steps (rollouts are
    seeded by the global step, so the resumed run samples the same episodes)."""
    from transformers import TrainerCallback

    from reactlab.train.grpo import train_grpo

    kw = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2}
    train_grpo(recipe(GRPORecipe, tiny_model_dir, prompt_data, tmp_path / "full", trl=kw))

    class StopAt2(TrainerCallback):
        def on_step_end(self, args, state, control, **k):
            if state.global_step == 2:
                control.should_training_stop = True  # an interruption right after checkpoint-2 is written

    part = recipe(GRPORecipe, tiny_model_dir, prompt_data, tmp_path / "part", trl=kw)
    assert train_grpo(part, callbacks=[StopAt2()]).steps == 2
    result = train_grpo(part, resume=True)
    assert result.steps == 4 and result.extra["resumed"]
    a, b = lora_state(tmp_path / "full"), lora_state(tmp_path / "part")
    assert a.keys() == b.keys() and a
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)  # it trained


# --- RLOO ------------------------------------------------------------------------------------------


def test_rloo_runs(tiny_model_dir, prompt_data, tmp_path):
    from reactlab.train.record import read_training_record
    from reactlab.train.rloo import train_rloo

    cfg = recipe(RLOORecipe, tiny_model_dir, prompt_data, tmp_path / "r", trl={"max_steps": 3})
    result = train_rloo(cfg)
    assert result.steps == 3 and len(result.extra["rewards"]) == 3
    assert read_training_record(cfg.out)["trainer"] == "rloo"
    assert (Path(cfg.out) / "adapter_model.safetensors").is_file()


def test_rloo_mask_zeroes_observation_logps(tiny_model_dir, prompt_data, tmp_path):
    """RLOO's per-token log-probabilities (which its sequence loss, ratio and KL sum) are 0 on
    observation tokens, and so is their gradient."""
    import torch

    from reactlab.train.online import EpisodeRollouts, rl_dataset, rl_rewards, rollout_spec
    from reactlab.train.policy import load_policy
    from reactlab.train.rloo import episode_rloo_trainer, rloo_config

    cfg = recipe(RLOORecipe, tiny_model_dir, prompt_data, tmp_path / "m")
    policy = load_policy(cfg)
    model, tok, peft = policy.model, policy.tokenizer, policy.peft_config
    rows = [json.loads(x) for x in (Path(prompt_data) / "train.jsonl").read_text().splitlines()]
    trainer = episode_rloo_trainer(model=model, args=rloo_config(cfg), train_dataset=rl_dataset(rows),
                                   processing_class=tok, peft_config=peft, reward_funcs=rl_rewards(cfg),
                                   rollouts=EpisodeRollouts(rollout_spec(cfg, 0)))
    trainer.model.train()
    inputs = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in range(4)])
    env = inputs["env_mask"]
    obs = (env == 0) & (inputs["completion_mask"] == 1)
    assert obs.sum() > 10
    trainer._active_mask = env
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    logps, *_ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, env.size(1))
    assert (logps[obs] == 0).all() and (logps[env == 1] < 0).all()
    inputs["advantages"] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    trainer._compute_loss(trainer.model, inputs).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters() if p.requires_grad)


# --- recipes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys, match", [
    ({"rewards": {"exact_match": 1.0}}, "unknown reward 'exact_match'"),
    ({"num_generations": 1}, "num_generations"),
    ({"env": "web"}, "env"),
])
def test_bad_recipe_names_the_field(prompt_data, tmp_path, keys, match):
    with pytest.raises(ConfigError, match=match):
        load_config(GRPORecipe, values={"data": {"path": prompt_data}, "out": str(tmp_path), **keys})


@pytest.mark.parametrize("trl, match", [
    ({"temperature": 0.5}, "trl.temperature: this is the recipe's own key"),
    ({"max_completion_length": 64}, "never cut"),
    ({"mask_truncated_completions": True}, "mask every one"),
    ({"learning_rte": 1e-3}, "learning_rate"),
])
def test_bad_trl_keys_fail_before_loading(tiny_model_dir, prompt_data, tmp_path, trl, match):
    from reactlab.train.grpo import train_grpo

    with pytest.raises(ValueError, match=match):
        train_grpo(recipe(GRPORecipe, "/nonexistent-model", prompt_data, tmp_path, trl=trl))


def test_full_from_an_sft_adapter_with_a_kl_term_is_refused(prompt_data, tmp_path):
    """TRL would re-load the bare base as a full fine-tune's reference, not the SFT model."""
    from reactlab.train.rloo import train_rloo

    cfg = recipe(RLOORecipe, "/nonexistent-model", prompt_data, tmp_path, method="full", trl={"beta": 0.05})
    cfg.model.adapter = "/some/sft"
    with pytest.raises(ValueError, match="method: full with model.adapter and trl.beta > 0"):
        train_rloo(cfg)


def test_packaged_rl_recipes_validate():
    """The packaged recipes load and their ``trl:`` keys are TRL's (the GPU one is never run here)."""
    from trl import GRPOConfig, RLOOConfig

    from reactlab.train.args import check_trl_keys

    for name, cls, conf in (("grpo_smollm2_lora", GRPORecipe, GRPOConfig), ("rloo_smollm2_lora", RLOORecipe, RLOOConfig),
                            ("grpo_gpu_qwen2.5-0.5b", GRPORecipe, GRPOConfig),
                            ("rloo_gpu_qwen2.5-0.5b", RLOORecipe, RLOOConfig)):
        cfg = load_config(cls, [name])
        check_trl_keys(cfg.trl, conf)
        assert cfg.multi_turn and cfg.env == "wiki"
    for name, cls in (("grpo_gpu_qwen2.5-0.5b", GRPORecipe), ("rloo_gpu_qwen2.5-0.5b", RLOORecipe)):
        gpu = load_config(cls, [name])
        assert gpu.trl["bf16"] is True and gpu.num_generations >= 8
        per_round = gpu.trl["per_device_train_batch_size"] * gpu.trl["gradient_accumulation_steps"]
        assert gpu.sampling.dynamic and per_round % gpu.num_generations == 0  # whole groups per round
        assert gpu.sampling.max_rollouts is not None and gpu.sampling.max_rollouts >= per_round


@pytest.mark.parametrize("args, message", [
    (["train", "grpo", "-c", "data.path={d}", "-c", "out={o}", "-c", "rewards={{nope: 1}}"], "unknown reward 'nope'"),
    (["train", "rloo", "-c", "data.path={d}", "-c", "out={o}", "-c", "trl.temperature=0.5"],
     "trl.temperature: this is the recipe's own key"),
    (["train", "grpo", "-c", "data.path={d}", "-c", "out={o}", "--resume"], "--resume: no checkpoint-N directory"),
])
def test_cli_user_errors_are_one_line(prompt_data, tmp_path, args, message):
    from typer.testing import CliRunner

    from reactlab.cli import app

    res = CliRunner().invoke(app, [a.format(d=prompt_data, o=tmp_path / "o") for a in args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


# --- dynamic sampling ---------------------------------------------------------------------------------


def parity_reward(prompts, completions, answer, **_):
    """For a ``vary`` question, the parity of the first turn's length (a random policy's groups
    differ); for a ``flat`` one always 0 (every group has equal rewards: nothing to learn)."""
    from reactlab.train.rewards import assistant_texts

    return [float(len(assistant_texts(c)[0]) % 2) if a == "vary" else 0.0 for c, a in zip(completions, answer, strict=True)]


def q(kind: str, i: int) -> dict:
    return {"prompt": [{"role": "user", "content": f"Question {kind} {i}?"}], "answer": kind, "source": "test",
            "prompt_id": "chat@1/react"}


@pytest.fixture()
def mixed_data(tmp_path, monkeypatch) -> tuple[str, list[dict]]:
    """3 flat and 3 vary questions (``parity_reward``)."""
    from reactlab.train.rewards import REWARDS

    monkeypatch.setitem(REWARDS, "parity_reward", parity_reward)
    rows = [q("flat", i) for i in range(3)] + [q("vary", i) for i in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path), rows


DYNAMIC = dict(rewards={"parity_reward": 1.0}, temperature=1.0, max_new_tokens=5,
               sampling={"dynamic": True, "max_rollouts": 16, "pass_reward": "parity_reward"},
               trl={"per_device_train_batch_size": 8})


def dynamic_rollouts(tiny_model_dir, data, rows, out, **keys):
    from reactlab.train.online import EpisodeRollouts, Sampling, episode_scorer, rollout_spec

    trainer, _ = grpo_trainer(tiny_model_dir, data, out, **DYNAMIC | keys)
    cfg = recipe(GRPORecipe, tiny_model_dir, data, out, **DYNAMIC | keys)
    return trainer, EpisodeRollouts(rollout_spec(cfg, 0), None, Sampling(cfg.sampling, rows, episode_scorer(cfg), 4))


def check_groups(out: dict, budget: int, log: dict) -> list[str]:
    """Every group the loss sees has rewards that differ; the others are masked out; the budget
    held. The answers of the trained groups."""
    assert len(out["episode"]) == 8 and log["rollouts"] <= budget
    rewards = parity_reward(None, out["episode"], out["answer"])
    trained = []
    for k in range(0, 8, 4):
        masks = out["env_mask"][k:k + 4]
        if any(any(m) for m in masks):
            assert len(set(rewards[k:k + 4])) > 1 and len(set(out["answer"][k:k + 4])) == 1
            trained.append(out["answer"][k])
        else:
            assert not any(any(m) for m in masks)
    assert len(trained) == log["kept"] and 2 - len(trained) == log["masked"]
    return trained


def test_dynamic_sampling_trains_only_on_groups_that_differ(tiny_model_dir, mixed_data, tmp_path, monkeypatch):
    """TRL draws two flat questions: both groups are dropped and refilled with vary questions whose
    rewards differ, within the budget of 16 episodes; the next update skips the flat questions
    measured lately instead of sampling them again."""
    data, rows = mixed_data
    trainer, rollouts = dynamic_rollouts(tiny_model_dir, data, rows, tmp_path / "d")
    flat = [rows[0]["prompt"]] * 4 + [rows[1]["prompt"]] * 4
    out = rollouts(flat, trainer)
    trained = check_groups(out, 16, rollouts.log[-1])
    assert trained and set(trained) == {"vary"}
    assert rollouts.log[-1]["rollouts"] == 16 and rollouts.log[-1]["dropped"] >= 2
    assert trainer._metrics["train"]["sampling/rollouts"] == [16]
    asked: list = []
    real = rollouts.rollouts
    monkeypatch.setattr(rollouts, "rollouts", lambda prompts, seed: asked.extend(prompts) or real(prompts, seed))
    check_groups(rollouts(flat, trainer), 16, rollouts.log[-1])
    assert asked and all(p[0]["content"].startswith("Question vary") for p in asked)


def test_dynamic_sampling_with_nothing_to_learn_masks_every_group(tiny_model_dir, mixed_data, tmp_path):
    """Only flat questions: no group is trained on, and the budget (12 episodes: three groups) holds."""
    data, rows = mixed_data
    trainer, rollouts = dynamic_rollouts(tiny_model_dir, data, rows[:3], tmp_path / "f",
                                         sampling=DYNAMIC["sampling"] | {"max_rollouts": 12, "screen": 2})
    out = rollouts([rows[0]["prompt"]] * 4 + [rows[1]["prompt"]] * 4, trainer)
    assert rollouts.screened == 6 and rollouts.rates.summary()["differed"] == 0
    assert check_groups(out, 12, rollouts.log[-1]) == []
    # the screen measured all three as flat: nothing is worth a group, so only the masked slots were sampled
    assert rollouts.log[-1]["rollouts"] == 8


def test_grpo_and_rloo_with_dynamic_sampling(tiny_model_dir, mixed_data, tmp_path):
    """End to end: the trainers score the substituted questions (TRL's own zero-std count is 0 on
    each update with no masked group) and training.json records the rollouts spent per update."""
    from reactlab.train.grpo import train_grpo
    from reactlab.train.rloo import train_rloo

    data, _ = mixed_data
    for name, cls, train in (("g", GRPORecipe, train_grpo), ("r", RLOORecipe, train_rloo)):
        cfg = recipe(cls, tiny_model_dir, data, tmp_path / name, **DYNAMIC)
        result = train(cfg)
        updates = result.extra["sampling"]["updates"]
        assert len(updates) == 2 and all(u["rollouts"] <= 16 for u in updates)
        for u, r in zip(updates, result.extra["rewards"], strict=True):
            # the trainer scored the groups it got with their own rows (not the drawn ones)
            assert r["reward"] == pytest.approx(u["reward"]) and (u["masked"] > 0 or r["reward_std"] > 0)
        assert sum(u["dropped"] for u in updates) > 0  # a drawn row was replaced
        assert result.extra["sampling"]["questions"]["measured"] >= 2


def test_engine_logprobs_stand_in_for_trls_recomputation(tiny_model_dir, prompt_data, tmp_path):
    """With ``num_iterations: 2`` TRL recomputes the rollouts' log-probabilities under the sampling
    weights; ``EpisodeGRPOTrainer`` hands over the engine's instead: the same numbers (fp32, 1e-4)
    on every token the loss sees, and no forward pass for them."""
    import torch

    from reactlab.train.grpo import episode_grpo_trainer, grpo_config

    olds, calls = [], []
    for engine in (False, True):
        cfg = recipe(GRPORecipe, tiny_model_dir, prompt_data, tmp_path / str(engine), temperature=1.0,
                     max_new_tokens=6, trl={"num_iterations": 2})
        trainer = _episode_trainer(episode_grpo_trainer, grpo_config, cfg, engine)
        n: list[int] = []

        def counted(*a, _n=n, _real=trainer._get_per_token_logps_and_entropies, **k):
            _n.append(1)
            return _real(*a, **k)

        trainer._get_per_token_logps_and_entropies = counted
        out = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in range(4)])
        assert trainer.num_iterations == 2 and trainer.args.steps_per_generation == 1  # restored
        olds.append((out["old_per_token_logps"], out["completion_mask"] * out["tool_mask"]))
        calls.append(len(n))
    (trl_old, mask), (engine_old, mask2) = olds
    assert torch.equal(mask, mask2) and mask.sum() > 10
    assert (trl_old - engine_old)[mask.bool()].abs().max() < 1e-4
    assert calls == [1, 0]



def test_rloo_takes_the_engines_logprobs_as_the_old_policys(tiny_model_dir, prompt_data, tmp_path):
    """RLOO recomputes the old policy's log-probabilities after every round; ``EpisodeRLOOTrainer``
    hands over the engine's instead (sampled at temperature 0.7: the same tempered distribution):
    the same sequence sums (fp32, 1e-4 per token), one forward fewer, the reference's still made."""
    import torch

    from reactlab.train.rloo import episode_rloo_trainer, rloo_config

    olds, calls = [], []
    for engine in (False, True):
        cfg = recipe(RLOORecipe, tiny_model_dir, prompt_data, tmp_path / str(engine), temperature=0.7,
                     max_new_tokens=6, trl={"beta": 0.05})
        trainer = _episode_trainer(episode_rloo_trainer, rloo_config, cfg, engine)
        forwards: list[int] = []  # the policy's forward passes outside the sampling engine's
        trainer.model.register_forward_hook(lambda *_, _f=forwards: _f.append(1))
        rollouts = trainer.rollouts
        trainer.rollouts = lambda *a, _r=rollouts, _f=forwards: _quiet(_f, _r, *a)
        out = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in range(4)])
        olds.append((out["old_logps"], out["env_mask"]))
        calls.append(len(forwards))
    (trl_old, mask), (engine_old, mask2) = olds
    assert torch.equal(mask, mask2) and mask.sum() > 10
    assert (trl_old - engine_old).abs().max() < 1e-4 * mask.sum(1).max()
    assert calls == [2, 1]  # old + reference, then the reference alone


def _episode_trainer(make, config, cfg, engine: bool):
    """A GRPO / RLOO episode trainer on ``cfg`` (its data's rows), in train mode, as ``run_rl`` builds one."""
    from reactlab.train.online import EpisodeRollouts, rl_dataset, rl_rewards, rollout_spec
    from reactlab.train.policy import load_policy

    rows = [json.loads(x) for x in (Path(cfg.data.path) / "train.jsonl").read_text().splitlines()]
    policy = load_policy(cfg)
    trainer = make(model=policy.model, args=config(cfg), train_dataset=rl_dataset(rows),
                   processing_class=policy.tokenizer, peft_config=policy.peft_config, reward_funcs=rl_rewards(cfg),
                   rollouts=EpisodeRollouts(rollout_spec(cfg, 0)), engine_logprobs=engine)
    trainer.model.train()
    return trainer


def _quiet(forwards: list[int], rollouts, *args):
    """``rollouts(*args)`` with the forward passes it makes (the engine's decoding) not counted."""
    start = len(forwards)
    try:
        return rollouts(*args)
    finally:
        del forwards[start:]
