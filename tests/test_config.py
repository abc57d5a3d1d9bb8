"""Recipes: YAML files merged in order, dotted overrides with YAML-typed values, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactlab.config import ConfigError, load_config, parse_value, split_specs
from reactlab.train.recipes import DPORecipe, KTORecipe, SFTRecipe

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_files_merge_in_order_and_overrides_win(tmp_path):
    a = write(tmp_path, "a.yaml", "model: {name: smollm2}\ndata: {path: /d}\nout: /o\nlora: {r: 8, alpha: 16}\n"
                                  "trl: {learning_rate: 2e-4, num_train_epochs: 1}\n")
    b = write(tmp_path, "b.yaml", "lora: {alpha: 64}\ntrl: {num_train_epochs: 3}\n")
    cfg = load_config(SFTRecipe, [a, b], ["lora.r=16", "trl.packing=true", "lora.target_modules=[q_proj, v_proj]",
                                          "model.dtype=bfloat16"])
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules) == (16, 64, ["q_proj", "v_proj"])
    assert cfg.trl == {"learning_rate": 2e-4, "num_train_epochs": 3, "packing": True}  # 2e-4 is a float
    assert (cfg.model.name, cfg.model.dtype) == ("smollm2", "bfloat16")
    assert cfg.method == "lora" and cfg.train_on == "assistant"


def test_unknown_key_names_key_and_file(tmp_path):
    a = write(tmp_path, "a.yaml", "data: {path: /d}\nout: /o\nlora: {rank: 8}\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTRecipe, [a])
    msg = str(e.value)
    assert "lora.rank" in msg and "unknown key" in msg and "a.yaml" in msg and "r, " in msg


def test_mistyped_override_names_the_override():
    with pytest.raises(ConfigError) as e:
        load_config(SFTRecipe, [], ["data.path=/d", "out=/o", "lora.r=many", "method=qlora4"])
    msg = str(e.value)
    assert "lora.r" in msg and "-c lora.r=many" in msg and "method" in msg and "qlora4" in msg


def test_missing_required_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="out: required"):
        load_config(SFTRecipe, [], ["data.path=/d"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(SFTRecipe, [str(tmp_path / "nope.yaml")])
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(SFTRecipe, [write(tmp_path, "bad.yaml", "a: [1,\n")])
    with pytest.raises(ConfigError, match="mapping"):
        load_config(SFTRecipe, [write(tmp_path, "list.yaml", "- 1\n")])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(SFTRecipe, [], ["=3"])
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config(SFTRecipe, [], ["out=/o", "out.x=1"])


def test_values_and_specs():
    assert parse_value("1e-3") == 1e-3 and parse_value("10") == 10 and parse_value("'10'") == "10"
    assert parse_value("{a: 1}") == {"a": 1} and parse_value("") == ""
    assert parse_value("no") == "no" and parse_value("off") == "off" and parse_value("False") is False
    assert split_specs(["x.yaml", "a.b=1", "y.yml"]) == (["x.yaml", "y.yml"], ["a.b=1"])


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("sft_*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(recipe):
    cfg = load_config(SFTRecipe, [str(recipe)])
    assert cfg.out and cfg.data.path
    pytest.importorskip("trl")
    from reactlab.train.sft import check_trl_keys, sft_config

    check_trl_keys(cfg.trl)  # every trl: key is an SFTConfig argument
    if cfg.method != "qlora":  # a GPU recipe's bf16 cannot be built on a CPU
        sft_config(cfg)


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("[dk]*o_*.yaml")), ids=lambda p: p.name)
def test_shipped_preference_recipes_load(recipe):
    """Every packaged DPO/KTO recipe loads, its trl: keys are the trainer's, and its TRL config builds here."""
    method = recipe.name.split("_")[0]
    cfg = load_config({"dpo": DPORecipe, "kto": KTORecipe}[method], [str(recipe)])
    assert cfg.out and cfg.data.path
    pytest.importorskip("trl")
    if "_gpu_" in recipe.name:  # bf16: its TRL config cannot be built on a CPU; its keys can be checked
        from trl import DPOConfig, KTOConfig

        from reactlab.train.args import check_trl_keys

        check_trl_keys(cfg.trl, {"dpo": DPOConfig, "kto": KTOConfig}[method])
        assert cfg.trl["bf16"] is True
        return
    assert cfg.model.name == "smollm2"
    if method == "dpo":
        from reactlab.train.dpo import dpo_config

        args = dpo_config(cfg)
    else:
        from reactlab.train.kto import kto_config

        args = kto_config(cfg)
    assert args.beta == cfg.beta and args.activation_checkpointing is False


def test_preference_recipes_share_the_sft_keys_and_add_their_own():
    cfg = load_config(KTORecipe, [], ["data.path=/d", "out=/o", "model.adapter=/sft", "beta=0.5", "lora.r=4",
                                      "balance_labels=true"])
    assert (cfg.model.adapter, cfg.beta, cfg.lora.r, cfg.balance_labels, cfg.method) == ("/sft", 0.5, 4, True, "lora")
    sft = load_config(SFTRecipe, [], ["data.path=/d", "out=/o", "model.adapter=/sft"])  # one model reference
    assert (sft.model.name, sft.model.adapter, sft.model.dtype) == ("smollm2", "/sft", "auto")
    with pytest.raises(ConfigError, match=r"method: Input should be 'lora' or 'full'"):
        load_config(DPORecipe, [], ["data.path=/d", "out=/o", "method=qlora"])
    with pytest.raises(ConfigError, match=r"beta: Input should be greater than 0"):
        load_config(DPORecipe, [], ["data.path=/d", "out=/o", "beta=0"])
    with pytest.raises(ConfigError, match=r"train_on: unknown key"):
        load_config(DPORecipe, [], ["data.path=/d", "out=/o", "train_on=all"])


def test_unknown_trl_key_suggests_names():
    pytest.importorskip("trl")
    from reactlab.train.sft import check_trl_keys

    with pytest.raises(ValueError, match=r"trl.learning_rat \(did you mean learning_rate"):
        check_trl_keys({"learning_rat": 1e-4, "max_steps": 3})


# --- RunConfig: the run's own keys, each agent's options in ``options`` ----------------------------


def test_run_config_keeps_the_flat_spellings_of_agent_options():
    from reactlab.config import FLAT_OPTIONS, RunConfig

    old = {"sc_k": 5, "sc_temperature": 0.5, "reflexion_trials": 2, "answer_samples": 4, "answer_temperature": 0.9,
           "hint": True}
    assert set(old) == set(FLAT_OPTIONS)
    cfg = load_config(RunConfig, [], [f"{k}={v}" for k, v in old.items()], values={"out": "/o"})
    o = cfg.options
    assert (o.cot_sc.k, o.cot_sc.temperature, o.reflexion.trials) == (5, 0.5, 2)
    assert (o.pipeline.samples, o.pipeline.temperature, o.pipeline.hint) == (4, 0.9, True)
    new = load_config(RunConfig, [], ["options.cot_sc.k=5", "options.cot_sc.temperature=0.5",
                                      "options.reflexion.trials=2", "options.pipeline.samples=4",
                                      "options.pipeline.temperature=0.9", "options.pipeline.hint=true"],
                      values={"out": "/o"})
    assert new == cfg
    assert RunConfig(out="/o", sc_k=3, options={"cot_sc": {"k": 3}}).options.cot_sc.k == 3  # the same value twice


def test_run_config_refuses_bad_or_doubled_agent_options():
    from reactlab.config import RunConfig

    with pytest.raises(ConfigError, match=r"options.cot_sc.k: Input should be greater than or equal to 1"):
        load_config(RunConfig, [], ["out=/o", "sc_k=0"])
    with pytest.raises(ConfigError, match=r"options.pipeline.samplez: unknown key \(known here: hint, samples"):
        load_config(RunConfig, [], ["out=/o", "options.pipeline.samplez=2"])
    with pytest.raises(ConfigError, match=r"sc_k=5 and options.cot_sc.k=3 set one option twice"):
        load_config(RunConfig, [], ["out=/o", "options.cot_sc.k=3", "sc_k=5"])
    assert "sc_k" not in RunConfig.model_fields and "options" in RunConfig.model_fields
