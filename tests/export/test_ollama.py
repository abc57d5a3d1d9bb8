"""Modelfile: the Go TEMPLATE renders exactly what the HF chat template renders."""

from __future__ import annotations

import pytest

from reactlab.export.ollama import create_command, ollama_inputs, render_template

CONVERSATION = [
    {"role": "system", "content": "You answer questions by searching Wikipedia.\nBe brief."},
    {"role": "user", "content": "Question: Who wrote Hamlet?"},
    {"role": "assistant", "content": "Thought: I should search.\nAction: search[Hamlet]"},
    {"role": "user", "content": "Observation: Hamlet is a tragedy by William Shakespeare."},
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_template_matches_hf_two_turns_with_system(tokenizer):
    from reactlab.export.ollama import translate

    family, tpl = translate(tokenizer)
    assert family.name == "chatml"
    want = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert render_template(tpl, **ollama_inputs(CONVERSATION)) == want
    # The system prompt may also come from the Modelfile's SYSTEM instead of the request.
    assert render_template(tpl, **ollama_inputs(CONVERSATION[1:], system=CONVERSATION[0]["content"])) == want
    # Without any system prompt, SmolLM2's template inserts its default one; so must the Go one.
    want = tokenizer.apply_chat_template(CONVERSATION[1:], tokenize=False, add_generation_prompt=True)
    assert "named SmolLM" in want
    assert render_template(tpl, **ollama_inputs(CONVERSATION[1:])) == want


def test_modelfile_text(tokenizer):
    from reactlab.export.ollama import modelfile

    text = modelfile(tokenizer, "model-q8_0.gguf", system="Be brief.", num_ctx=4096)
    assert text.splitlines()[1] == "FROM ./model-q8_0.gguf"
    assert 'TEMPLATE """{{ if .System }}<|im_start|>system\n' in text
    assert 'SYSTEM """Be brief."""' in text
    stops = [line.split(" ", 2)[2] for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops == ['"<|im_end|>"', '"<|im_start|>"']  # a plain chat model
    agent = modelfile(tokenizer, "model-q8_0.gguf", agent=True)
    assert [line for line in agent.splitlines() if line.startswith("PARAMETER stop")][-1] == 'PARAMETER stop "Observation:"'
    assert "PARAMETER num_ctx 4096" in text
    assert (
        create_command("react smol", "exports/x/Modelfile")
        == "ollama create 'react smol' -f exports/x/Modelfile"
    )


def test_unknown_template_fails_clearly(tokenizer):
    from reactlab.export.ollama import UnsupportedTemplate, translate

    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    )
    with pytest.raises(UnsupportedTemplate, match="chatml, llama3"):
        translate(tok)


class _Llama3Tokenizer:
    """Stands in for a Llama 3 tokenizer: BOS written as text by the template and added by the
    tokenizer itself (so llama.cpp adds it as a token and the Go template must not)."""

    bos_token, bos_token_id, eos_token = "<|begin_of_text|>", 7, "<|eot_id|>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        from jinja2 import Template

        return Template(
            "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
            "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
            "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
        ).render(messages=messages, bos_token=self.bos_token, add_generation_prompt=add_generation_prompt)

    def __call__(self, text):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=[self.bos_token_id, 100])


def test_llama3_family():
    from reactlab.export.ollama import translate

    tok = _Llama3Tokenizer()
    family, tpl = translate(tok)
    assert family.name == "llama3"
    want = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert "<|begin_of_text|>" + render_template(tpl, **ollama_inputs(CONVERSATION)) == want


def test_render_template_constructs():
    tpl = (
        '{{- range .Messages }}{{ if eq .Role "user" }}U({{ .Content }}){{ else if eq .Role "assistant" }}'
        'A({{ .Content }}){{ else }}?{{ end }}{{ end -}}\n  {{ if and $.System (not (eq $.System "x")) }}S={{ $.System }}{{ end }}'
    )
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"},
    ]
    assert render_template(tpl, "sys", msgs) == "U(q)A(a)?S=sys"
    with pytest.raises(ValueError):
        render_template("{{ len .Messages }}", "", [])
    with pytest.raises(ValueError, match="not closed"):
        render_template("{{ if .System }}x", "", [])


def test_ollama_inputs_collates_like_ollama():
    got = ollama_inputs([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], system="S")
    assert got == {
        "system": "S",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "a\n\nb"}],
    }


def test_gemma_family(gemma_dir):
    """Gemma's template: no system turn (the system text opens the first user turn), the assistant
    is "model", every turn ends with <end_of_turn>, which is the stop; BOS is llama.cpp's to add."""
    from transformers import AutoTokenizer

    from reactlab.export.ollama import modelfile, translate

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    family, tpl = translate(tok)
    assert family.name == "gemma"
    for conv, system in ((CONVERSATION, None), (CONVERSATION[1:], CONVERSATION[0]["content"]), (CONVERSATION[1:], None)):
        want = tok.apply_chat_template(conv if system is None else [CONVERSATION[0], *conv], tokenize=False,
                                       add_generation_prompt=True).removeprefix("<bos>")
        assert render_template(tpl, **ollama_inputs(conv, system=system)) == want
    assert want.startswith("<start_of_turn>user\nQuestion:")  # no system: no prefix
    with_system = render_template(tpl, **ollama_inputs(CONVERSATION))
    assert with_system.startswith("<start_of_turn>user\nYou answer questions by searching Wikipedia.\nBe brief."
                                  "\n\nQuestion: Who wrote Hamlet?<end_of_turn>\n<start_of_turn>model\nThought:")
    text = modelfile(tok, "model-f16.gguf", agent=True)
    assert 'PARAMETER stop "<end_of_turn>"' in text and 'PARAMETER stop "Observation:"' in text
    assert "(gemma chat template)" in text.splitlines()[0]


def test_render_template_range_variables():
    tpl = '{{ range $i, $m := .Messages }}{{ if eq $i 1 }}[{{ .Role }}]{{ end }}{{ .Content }};{{ end }}'
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_template(tpl, "", msgs) == "a;[assistant]b;"
