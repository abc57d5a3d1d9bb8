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
