"""An Ollama ``Modelfile`` for an exported GGUF, with the HF chat template translated to a Go
``TEMPLATE`` (Ollama does not run Jinja). ``translate`` picks the template family and *checks* the
result: probe conversations rendered by the HF template and by ``render_template`` (an interpreter
of exactly the Go constructs emitted here) must agree. Agent models also stop at ``Observation:``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OBSERVATION_STOP = "Observation:"  # reactlab.agents.react.STOP_OBS without the newline Ollama cannot quote


class UnsupportedTemplate(ValueError):
    """No known family reproduces the model's HF chat template."""


@dataclass(frozen=True)
class Family:
    """A chat-template family: ``turn`` wraps one message (``{role}``, ``{content}`` are Go
    expressions), ``gen`` opens the assistant's turn, ``stops`` end a turn."""

    name: str
    turn: str
    gen: str
    stops: tuple[str, ...]
    model_role: str = "assistant"  # the role name the template writes for the assistant's turns
    system_in_first_turn: bool = False  # the system text opens the first turn, not a turn of its own


FAMILIES = (
    Family(
        "chatml",
        "<|im_start|>{role}\n{content}<|im_end|>\n",
        "<|im_start|>assistant\n",
        ("<|im_end|>", "<|im_start|>"),
    ),
    Family(
        "llama3",
        "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ("<|eot_id|>", "<|start_header_id|>"),
    ),
    # Gemma: no system role (the system text and a blank line open the first turn), "model" for
    # the assistant. HF trims each message; Go templates cannot, so untrimmed text stays untrimmed.
    Family(
        "gemma",
        "<start_of_turn>{role}\n{content}<end_of_turn>\n",
        "<start_of_turn>model\n",
        ("<end_of_turn>", "<start_of_turn>"),
        model_role="model",
        system_in_first_turn=True,
    ),
)

# Probe texts: distinct, free of template syntax, and with a newline (templates must keep it).
_S, _U1, _A1, _U2 = "SYS-probe\nline", "USER-probe one", "ASSISTANT-probe\nreply", "USER-probe two"
_PROBES = (
    [{"role": "user", "content": _U1}],
    [{"role": "system", "content": _S}, {"role": "user", "content": _U1}],
    [
        {"role": "system", "content": _S},
        {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1},
        {"role": "user", "content": _U2},
    ],
    [
        {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1},
        {"role": "user", "content": _U2},
    ],
)


def go_template(family: Family, default_system: str | None = None) -> str:
    """The Go ``TEMPLATE`` of a family. The system prompt comes from ``.System`` (Ollama gathers
    all system messages there) and system messages are skipped in the loop, so it appears once."""
    if family.system_in_first_turn:
        return _go_template_system_in_first_turn(family)
    sys_turn = family.turn.format(role="system", content="{{ .System }}")
    head = "{{ if .System }}" + sys_turn
    if default_system is not None:
        head += "{{ else }}" + family.turn.format(role="system", content=default_system)
    body = family.turn.format(role="{{ .Role }}", content="{{ .Content }}")
    return (
        head
        + '{{ end }}{{ range .Messages }}{{ if ne .Role "system" }}'
        + body
        + "{{ end }}{{ end }}"
        + family.gen
    )


def _go_template_system_in_first_turn(family: Family) -> str:
    """Gemma's layout: the system text (then a blank line) opens the first non-system message,
    which is message 1 when a system message leads (Ollama puts the Modelfile ``SYSTEM`` first)."""
    role = f'{{{{ if eq .Role "assistant" }}}}{family.model_role}{{{{ else }}}}{{{{ .Role }}}}{{{{ end }}}}'
    content = "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}"
    body = family.turn.format(role=role, content=content)
    return '{{ range $i, $m := .Messages }}{{ if ne .Role "system" }}' + body + "{{ end }}{{ end }}" + family.gen


def translate(tokenizer) -> tuple[Family, str]:
    """``(family, Go template)`` reproducing ``tokenizer``'s HF chat template on the probe
    conversations (with a generation prompt; a leading BOS text that llama.cpp adds as a token is
    ignored). Raises ``UnsupportedTemplate`` naming the families tried."""
    hf = [_hf_render(tokenizer, p) for p in _PROBES]
    for fam in FAMILIES:
        for default in (None, _default_system(fam, hf[0])):
            tpl = go_template(fam, default)
            if all(render_template(tpl, **ollama_inputs(p)) == h for p, h in zip(_PROBES, hf, strict=True)):
                return fam, tpl
    raise UnsupportedTemplate(
        f"the chat template is none of the families {', '.join(f.name for f in FAMILIES)}; "
        f"it renders a user turn as {hf[0][:120]!r}"
    )


def stops(family: Family, tokenizer, agent: bool = False) -> list[str]:
    """Stop strings: the family's, the tokenizer's EOS, and for an ``agent`` model the agent's
    ``Observation:`` (a chat model that is not one may well write that word in an answer)."""
    out = list(family.stops)
    if tokenizer.eos_token and tokenizer.eos_token not in out:
        out.append(tokenizer.eos_token)
    return [*out, OBSERVATION_STOP] if agent else out


def modelfile(tokenizer, gguf_name: str, system: str | None = None, num_ctx: int | None = None,
              agent: bool = False) -> str:
    """The Modelfile text for ``./<gguf_name>`` beside it (see the module doc); ``agent``: a model
    fine-tuned on ReAct trajectories, which also stops at ``Observation:``."""
    fam, tpl = translate(tokenizer)
    lines = [f"# written by reactlab export ({fam.name} chat template)", f"FROM ./{gguf_name}", ""]
    lines.append(f'TEMPLATE """{_triple_quoted(tpl)}"""')
    if system:
        lines.append(f'SYSTEM """{_triple_quoted(system)}"""')
    lines.append("")
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops(fam, tokenizer, agent)]
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {int(num_ctx)}")
    return "\n".join(lines) + "\n"


def create_command(name: str, modelfile_path: str | Path) -> str:
    """The shell command that registers the model with a local Ollama.

    >>> create_command("react-smol", "exports/x/Modelfile")
    'ollama create react-smol -f exports/x/Modelfile'
    """
    return f"ollama create {shlex.quote(name)} -f {shlex.quote(str(modelfile_path))}"


def ollama_inputs(messages: list[dict[str, str]], system: str | None = None) -> dict[str, Any]:
    """What Ollama's chat endpoint hands a template: the Modelfile ``SYSTEM`` is prepended as a
    system message when the request has none; consecutive messages of one role are merged with a
    blank line; ``.System`` is all system messages joined by a blank line (Ollama's ``collate``)."""
    msgs = [dict(m) for m in messages]
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    merged: list[dict[str, str]] = []
    for m in msgs:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1]["content"] += "\n\n" + m["content"]
        else:
            merged.append(dict(m))
    sys_text = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    return {"system": sys_text, "messages": merged}


# --- a tiny Go text/template interpreter: text, {{ expr }}, if / else if / else / end, range -------

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\(|\)|\$?\.[A-Za-z_]\w*|\$[A-Za-z_]\w*|\$|[A-Za-z_]\w*|-?\d+')
_RANGE_VARS = re.compile(r"\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.*)", re.S)


def render_template(template: str, system: str, messages: list[dict[str, str]]) -> str:
    """Execute a Go template over ``{.System, .Messages}`` (messages as ``{"role", "content"}``).

    Supports the constructs this module emits: text, ``{{ .Field }}``, ``$.Field``, string and
    integer literals, ``range $i, $x := ...`` and its variables, ``if``/``else if``/``else``/``end``, ``range``, ``eq``/``ne``/``not``/``and``/``or``,
    parentheses and ``{{-``/``-}}`` trimming. Anything else raises ``ValueError``.

    >>> render_template('{{ range .Messages }}{{ if eq .Role "user" }}U:{{ .Content }};{{ end }}{{ end }}',
    ...                 "", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    'U:hi;'
    """
    root = {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    nodes, rest = _parse(_lex(template), 0)
    if rest is not None:
        raise ValueError(f"unexpected {{{{ {rest} }}}}")
    out: list[str] = []
    _exec(nodes, root, root, out)
    return "".join(out)


def _lex(template: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        items.append(("text", text))
        items.append(("action", m.group(2)))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = template[pos:]
    items.append(("text", tail.lstrip() if trim_next else tail))
    return items


def _parse(items, i):
    """Nodes until an ``end``/``else`` at this level: ``(nodes, (keyword, arg, next index))``."""
    nodes: list[Any] = []
    while i < len(items):
        kind, val = items[i]
        i += 1
        if kind == "text":
            if val:
                nodes.append(val)
            continue
        word, _, arg = val.partition(" ")
        if word in ("end", "else"):
            return nodes, (word, arg.strip(), i)
        if word in ("if", "range"):
            body, stop = _parse(items, i)
            branches, other = [(arg, body)], []
            while word == "if" and stop and stop[0] == "else":
                if stop[1].startswith("if "):
                    body, stop2 = _parse(items, stop[2])
                    branches.append((stop[1][3:], body))
                    stop = stop2
                else:
                    other, stop = _parse(items, stop[2])
            if not stop or stop[0] != "end":
                raise ValueError(f"{{{{ {val} }}}} is not closed by {{{{ end }}}}")
            nodes.append((word, branches, other))
            i = stop[2]
        else:
            nodes.append(("expr", val))
    return nodes, None


def _exec(nodes, dot, root, out: list[str]) -> None:
    for n in nodes:
        if isinstance(n, str):
            out.append(n)
        elif n[0] == "expr":
            out.append(str(_eval(n[1], dot, root)))
        elif n[0] == "if":
            for cond, body in n[1]:
                if _truthy(_eval(cond, dot, root)):
                    _exec(body, dot, root, out)
                    break
            else:
                _exec(n[2], dot, root, out)
        else:  # range, optionally "range $i, $x := pipeline" (index and element as variables)
            head, body = n[1][0]
            names = _RANGE_VARS.fullmatch(head)
            for i, item in enumerate(_eval(names.group(3) if names else head, dot, root) or []):
                if names:
                    item = {**item, "$" + names.group(1): i, "$" + names.group(2): item}
                _exec(body, item, root, out)


def _eval(expr: str, dot, root):
    toks = _TOKEN.findall(expr)
    if "".join(toks) != re.sub(r"\s+", "", expr):
        raise ValueError(f"unsupported template expression {expr!r}")
    val, pos = _command(toks, 0, dot, root)
    if pos != len(toks):
        raise ValueError(f"unsupported template expression {expr!r}")
    return val


_FUNCS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


def _command(toks, i, dot, root):
    if toks[i] in _FUNCS:
        fn, args, i = _FUNCS[toks[i]], [], i + 1
        while i < len(toks) and toks[i] != ")":
            v, i = _term(toks, i, dot, root)
            args.append(v)
        return fn(*args), i
    return _term(toks, i, dot, root)


def _term(toks, i, dot, root):
    t = toks[i]
    if t == "(":
        v, i = _command(toks, i + 1, dot, root)
        if i >= len(toks) or toks[i] != ")":
            raise ValueError("unbalanced parentheses in template")
        return v, i + 1
    if t.startswith('"'):
        return t[1:-1].encode().decode("unicode_escape"), i + 1
    if t.startswith("$."):
        return root[t[2:]], i + 1
    if t.startswith("$") and t != "$":
        if t not in dot:
            raise ValueError(f"undefined template variable {t}")
        return dot[t], i + 1
    if t.lstrip("-").isdigit():
        return int(t), i + 1
    if t.startswith("."):
        return dot[t[1:]], i + 1
    raise ValueError(f"unsupported template token {t!r}")


def _truthy(v) -> bool:
    return bool(v)


def _hf_render(tokenizer, messages) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    # A BOS the template writes as text is added as a token by llama.cpp (add_bos_token): drop it.
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos) :]
    return text


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a").input_ids
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def _default_system(fam: Family, rendered: str) -> str | None:
    """The system text an HF template inserts when a conversation has none, if it did."""
    pre, _, post = fam.turn.partition("{role}")
    start = pre + "system" + post.partition("{content}")[0]
    end = post.partition("{content}")[2]
    if rendered.startswith(start) and end in rendered[len(start) :]:
        return rendered[len(start) :].split(end, 1)[0]
    return None


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _triple_quoted(s: str) -> str:
    if '"""' in s:
        raise ValueError('a Modelfile triple-quoted value cannot contain """')
    return s
