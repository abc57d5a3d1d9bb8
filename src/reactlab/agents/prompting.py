"""Versioned few-shot prompts (``agents/prompts/*.yaml``) and how each method renders them.

A prompt file holds an ``id``, a ``version``, per-method instructions and exemplars (question,
steps of thought / action / observation, a chain-of-thought and the answer). Its id
``<id>@<version>/<method>`` is stamped into every trajectory and every dataset row built from it.

``standard`` is the ReAct paper's "Standard" prompting: the question, then ``Answer: <answer>``, no
thought and no tool. ``devK`` (``dev5``) is not a file: the first K exemplars of the question's own
type from the task's ``dev`` split, in the task's layout (MMLU: Hendrycks et al.'s 5-shot prompt).

The pipeline's prompt files (``*_pipeline.yaml``) hold templates by turn instead of per-method
instructions (``PipelinePrompt``); both kinds are read by ``read_prompt_file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from reactlab.agents.parsing import parse_action
from reactlab.agents.tools import ToolAction, steps_to_messages
from reactlab.envs.none import FINISHED
from reactlab.types import Message, Step, ToolMessage

METHODS = ("react", "act", "cot", "standard")
ZERO_SHOT = "zeroshot"
"""The prompt name for the paper's completion layout with no few-shot prefix (fine-tuned models)."""
LAYOUT_VERSION = 1
"""Version of the zero-shot layouts (``zeroshot``, ``chat``, ``fireact``): bump when one changes."""


def layout_prompt_id(layout: str, method: str) -> str:
    """The prompt id of a zero-shot layout, as stamped into trajectories and dataset rows.

    >>> layout_prompt_id("chat", "react")
    'chat@1/react'
    """
    return f"{layout}@{LAYOUT_VERSION}/{method}"


@dataclass(frozen=True)
class PromptSpec:
    id: str
    version: int
    instruction: dict[str, str]
    examples: tuple[dict[str, Any], ...]
    label: str = "Question"
    """What the question line is called (``Claim`` for FEVER): ``{label}: {question}``."""

    def prompt_id(self, method: str) -> str:
        return f"{self.id}@{self.version}/{method}"

    def instruction_for(self, method: str) -> str:
        """The instruction of ``method``; ``ValueError`` naming the prompt when it has none."""
        if method not in self.instruction:
            raise ValueError(f"prompt {self.id!r} has no instruction for method {method!r}")
        return self.instruction[method]


def read_prompt_file(name: str, kind: str = "prompt") -> dict[str, Any]:
    """The YAML mapping of a packaged prompt (``agents/prompts/NAME.yaml``) or of a YAML file by path;
    ``ValueError`` naming the ``kind`` of prompt when there is neither."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files("reactlab.agents") / "prompts" / f"{name}.yaml"
        if not res.is_file():
            raise ValueError(f"unknown {kind} {name!r}: no packaged prompts/{name}.yaml and no such file")
        text = res.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ValueError(f"{kind} {name!r}: a prompt file is a YAML mapping, not {type(doc).__name__}")
    return doc


@lru_cache(maxsize=16)
def load_prompt(name: str = "hotpotqa_react") -> PromptSpec:
    """A packaged prompt by name, or a YAML file by path."""
    doc = read_prompt_file(name)
    for key in ("id", "version", "instruction", "examples"):
        if key not in doc:
            raise ValueError(f"prompt {name!r}: field {key!r} missing")
    return PromptSpec(doc["id"], int(doc["version"]), dict(doc["instruction"]), tuple(doc["examples"]),
                      str(doc.get("label", "Question")))


def render_example(ex: dict[str, Any], method: str, label: str = "Question") -> str:
    """One exemplar in the paper's completion layout for ``method``."""
    lines = [f"{label}: {ex['question']}"]
    if method == "standard":
        return f"{lines[0]}\nAnswer: {ex['answer']}\n"
    if method == "cot":
        lines += [f"Thought: Let's think step by step. {ex['cot']}", f"Action: Finish[{ex['answer']}]"]
        return "\n".join(lines) + "\n"
    for i, step in enumerate(ex["steps"], 1):
        action = str(parse_action(step["action"]))
        if method == "react":
            lines.append(f"Thought {i}: {step['thought']}")
        lines.append(f"Action {i}: {action}")
        if "observation" in step:
            lines.append(f"Observation {i}: {step['observation']}")
    return "\n".join(lines) + "\n"


def chat_exemplars(spec: PromptSpec, method: str) -> list[dict[str, str]]:
    """The exemplars as a conversation in the chat layout, for chat-only models: per exemplar the
    question as a user turn, each step as an assistant turn (``Thought: ...\nAction: ...``; the
    Act method has no thought) followed by its observation as a user turn (CoT: one assistant
    turn). The instruction goes in a system turn before them (``render_chat_system``)."""
    from reactlab.agents.parsing import chat_assistant, chat_observation

    out: list[dict[str, str]] = []
    for ex in spec.examples:
        out.append({"role": "user", "content": str(ex["question"])})
        if method == "standard":
            out.append({"role": "assistant", "content": f"Answer: {ex['answer']}"})
            continue
        if method == "cot":
            out.append({"role": "assistant", "content": f"Thought: Let's think step by step. {ex['cot']}\n"
                                                         f"Action: finish[{ex['answer']}]"})
            continue
        for step in ex["steps"]:
            text = chat_assistant(step["thought"], parse_action(step["action"]))
            out.append({"role": "assistant", "content": text.split("\n", 1)[1] if method == "act" else text})
            if "observation" in step:
                out.append({"role": "user", "content": chat_observation(step["observation"])})
    return out


EXEMPLARS_FOLLOW = "They follow as earlier conversations; then comes your task."
"""Said after the instruction of a few-shot chat or tools prompt, whose exemplars are earlier turns."""


def render_chat_system(spec: PromptSpec, method: str) -> str:
    """The system turn of a few-shot chat prompt: the method's instruction, the exemplars' layout said."""
    return spec.instruction_for(method).rstrip() + " " + EXEMPLARS_FOLLOW


def tool_exemplars(spec: PromptSpec, method: str, actions: Sequence[ToolAction]) -> list[ToolMessage]:
    """The exemplars as tool conversations (``tools`` style): per exemplar the question as a user
    turn, then each step as a call with its thought (none for Act) and the call's ``tool`` answer
    (``steps_to_messages``); the finish step, which has no observation in the file, is answered as
    the environments answer it. Every step's action must be one of ``actions``."""
    out: list[ToolMessage] = []
    for ex in spec.examples:
        steps = [Step(i=i, thought=str(st["thought"]) if method == "react" else "",
                      action=parse_action(st["action"]), observation=str(st.get("observation", FINISHED)))
                 for i, st in enumerate(ex["steps"], 1)]
        offered = {a.name for a in actions}
        bad = [str(s.action) for s in steps if s.action.name not in offered]
        if bad:
            raise ValueError(f"prompt {spec.id!r}: exemplar action {bad[0]!r} is not one of the tools "
                             f"({', '.join(sorted(offered))})")
        out += [{"role": "user", "content": str(ex["question"])}, *steps_to_messages(steps, actions)]
    return out


def render_prefix(spec: PromptSpec, method: str) -> str:
    """Instruction + exemplars, ending with a blank line: the shared prefix whose KV cache is reused."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return spec.instruction_for(method) + "\n" + "\n".join(render_example(ex, method, spec.label) for ex in spec.examples) + "\n"


def dev_shots(prompt: str | None) -> int | None:
    """K of a ``devK`` prompt name (the task's dev exemplars), None for any other name.

    >>> dev_shots("dev5"), dev_shots("dev0"), dev_shots("hotpotqa_react"), dev_shots(None)
    (5, 0, None, None)
    """
    if prompt and prompt.startswith("dev") and prompt[3:].isdigit():
        return int(prompt[3:])
    return None


# --- the pipeline's prompts: templates by turn, read by the same loader ----------------------------


@dataclass(frozen=True)
class PipelinePrompt:
    """A pipeline prompt file: templates by turn (``direct``, ``answer``, ``evaluate``, plus
    ``agreement``, ``no_candidate``, ``hint``) and exemplars; each exemplar has the keys of the turns
    it illustrates (``answer``, ``direct``; ``reasoning`` + ``candidate`` + ``evaluate``)."""

    id: str
    version: int
    templates: dict[str, str]
    examples: tuple[dict[str, Any], ...]
    shots: bool = True

    def prompt_id(self, method: str) -> str:
        return f"{self.id}@{self.version}{'' if self.shots else ':zeroshot'}/{method}"

    def user(self, kind: str, **fields: str) -> str:
        return self.templates[kind].format(**fields)

    def messages(self, kind: str, question: str, **fields: str) -> list[Message]:
        """The chat messages of a turn: exemplar turns (when ``shots``), then this question's."""
        out: list[Message] = []
        for ex in self.examples if self.shots else ():
            if kind not in ex:
                continue
            if kind == "evaluate":
                user = self.user(kind, question=ex["question"].strip(), reasoning=ex["reasoning"].strip(),
                                 candidate=ex["candidate"], agreement="")
            else:
                user = self.user(kind, question=ex["question"].strip())
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": ex[kind].strip()}]
        out.append({"role": "user", "content": self.user(kind, question=question, **fields)})
        return out


TEMPLATE_KEYS = ("direct", "answer", "evaluate", "agreement", "no_candidate", "hint")


@lru_cache(maxsize=16)
def load_pipeline_prompt(name: str, shots: bool = True) -> PipelinePrompt:
    """A packaged pipeline prompt (``logic_mcq_pipeline``, ``mmlu_pipeline``) or a YAML file."""
    doc = read_prompt_file(name, "pipeline prompt")
    missing = [k for k in ("id", "version", *TEMPLATE_KEYS) if k not in doc]
    if missing:
        raise ValueError(f"pipeline prompt {name!r}: field {missing[0]!r} missing (a pipeline prompt has "
                         f"{', '.join(TEMPLATE_KEYS)})")
    return PipelinePrompt(doc["id"], int(doc["version"]), {k: str(doc[k]) for k in TEMPLATE_KEYS},
                          tuple(doc.get("examples") or ()), shots)
