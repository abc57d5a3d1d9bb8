"""``export_model`` on a tiny Llama: whose Modelfile stops at ``Observation:``."""

from __future__ import annotations

import json

import pytest

from .conftest import make_adapter


def _stops(path) -> list[str]:
    return [line.split(" ", 2)[2] for line in path.read_text().splitlines() if line.startswith("PARAMETER stop")]


def test_only_an_agent_model_stops_at_observation(tiny_llama_dir, tmp_path):
    pytest.importorskip("peft")
    from reactlab.export import export_model

    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter")
    plain = export_model(tiny_llama_dir, tmp_path / "plain", adapter=adapter, gguf=["f16"], ollama="plain")
    assert '"Observation:"' not in _stops(plain.modelfile)
    (tmp_path / "adapter" / "training.json").write_text(json.dumps({"trainer": "sft"}))  # trained by reactlab
    agent = export_model(tiny_llama_dir, tmp_path / "agent", adapter=adapter, gguf=["f16"], ollama="agent")
    assert _stops(agent.modelfile)[-1] == '"Observation:"'
    assert "It is a ReAct agent" in (tmp_path / "agent" / "README.md").read_text()
    forced = export_model(tiny_llama_dir, tmp_path / "forced", adapter=adapter, gguf=["f16"], ollama="x", agent=False)
    assert '"Observation:"' not in _stops(forced.modelfile)


def test_each_role_gets_its_own_adapter_merged(tiny_llama_dir, tmp_path):
    """``--adapter ROLE=DIR``: each role's merge holds its own adapter's weights, as a single export
    of that adapter would; the README names the run command with both merged roles."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from reactlab.cli import app

    answer = make_adapter(tiny_llama_dir, tmp_path / "a", seed=1)
    evaluate = make_adapter(tiny_llama_dir, tmp_path / "e", seed=2)
    out = tmp_path / "roles"
    res = CliRunner().invoke(app, ["export", "--model", tiny_llama_dir, "--adapter", f"answer={answer}",
                                   "--adapter", f"evaluate={evaluate}", "--out", str(out), "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    from reactlab.export import export_model

    single = export_model(tiny_llama_dir, tmp_path / "single", adapter=evaluate, dtype="fp32")

    def weights(d):
        return load_file(str(next(d.glob("*.safetensors"))))

    a, e, s = weights(out / "answer" / "hf"), weights(out / "evaluate" / "hf"), weights(single.hf_dir)
    assert all((e[k] == s[k]).all() for k in s)
    assert any((a[k] != e[k]).any() for k in e)
    readme = (out / "README.md").read_text()
    assert f"--model answer={out / 'answer' / 'hf'} --model evaluate={out / 'evaluate' / 'hf'}" in readme


@pytest.mark.parametrize("adapters, message", [
    (["out/a", "answer=out/b"], "either one adapter DIR or ROLE=DIR ones"),
    (["answer=out/a", "answer=out/b"], "--adapter answer=...: given twice"),
])
def test_role_adapters_refuse_a_mix_and_a_role_twice(adapters, message):
    from reactlab.export.cli import role_adapters

    with pytest.raises(ValueError, match=message):
        role_adapters(adapters)
