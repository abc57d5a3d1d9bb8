"""The one place that turns model text into actions and back.

Two layouts of one step:
- completion (the ReAct paper): ``Thought 3: ...\\nAction 3: Search[X]\\nObservation 3: ...``
- chat (FireAct): assistant ``Thought: ...\\nAction: search[X]``, then user ``Observation: ...``

Parsing never raises on model text: anything that is not a well-formed action becomes
``Action("invalid", <text>)``, which the environment answers with ``Invalid action: ...``.
"""

from __future__ import annotations

import re

from reactlab.types import Action

ACTIONS = ("search", "lookup", "finish", "think")
MAX_ARG_CHARS = 500  # a model that rambles inside brackets must not blow up prompts

_FULL = re.compile(r"^([A-Za-z_]+)\s*\[(.*)\]$", re.DOTALL)
_PREFIX = re.compile(r"^([A-Za-z_]+)\s*\[([^\]\n]*)\]")


def parse_action(text: str) -> Action:
    """``"Search[Scott Derrickson]"`` -> ``Action("search", "Scott Derrickson")``.

    Names are case-insensitive; trailing text after the closing bracket on the first line is
    ignored; anything else is ``invalid`` (holding the first line, bounded).

    >>> parse_action("Finish[yes]")
    Action(name='finish', arg='yes')
    >>> parse_action("lookup[born] extra words")
    Action(name='lookup', arg='born')
    >>> parse_action("I think the answer is 3")
    Action(name='invalid', arg='I think the answer is 3')
    """
    line = text.strip().split("\n", 1)[0].strip()
    for pattern in (_FULL, _PREFIX):
        m = pattern.match(line)
        if m and m.group(1).lower() in ACTIONS:
            return Action(m.group(1).lower(), m.group(2).strip()[:MAX_ARG_CHARS])
    return Action("invalid", line[:MAX_ARG_CHARS])


def format_action(action: Action) -> str:
    """The paper's spelling, capitalised: ``Search[X]`` (invalid actions come back verbatim).

    >>> format_action(Action("lookup", "born"))
    'Lookup[born]'
    """
    return str(action)


def split_thought_action(text: str, i: int | None = None) -> tuple[str, str | None]:
    """Split a generated ``thought\\nAction i: act`` into (thought, action text or None).

    ``i=None`` is the chat layout (``Thought: ...\\nAction: ...``). The action text is None when the
    model wrote no action line: the paper's fallback then asks for the action on its own.

    >>> split_thought_action(" I should search X.\\nAction 1: Search[X]", 1)
    ('I should search X.', 'Search[X]')
    >>> split_thought_action("Thought: hm\\nAction: finish[no]")
    ('hm', 'finish[no]')
    >>> split_thought_action("just thinking", 2)
    ('just thinking', None)
    """
    text = text.strip()
    label = rf"Action(?: {i})?:" if i is not None else r"Action(?: \d+)?:"
    m = re.search(rf"(?:^|\n)\s*{label}\s*", text)
    if m is None:
        thought = text.split("\n", 1)[0]
        return _strip_thought_label(thought), None
    thought = text[: m.start()].strip()
    action = text[m.end():].strip().split("\n", 1)[0]
    return _strip_thought_label(thought), action


def _strip_thought_label(thought: str) -> str:
    return re.sub(r"^Thought(?: \d+)?:\s*", "", thought.strip())


def completion_step(i: int, thought: str | None, action: Action, observation: str) -> str:
    """One step in the paper's completion layout, with its trailing newline (no Thought line when
    ``thought`` is None: the Act layout).

    >>> completion_step(1, "Go.", Action("search", "X"), "X is a y.")
    'Thought 1: Go.\\nAction 1: Search[X]\\nObservation 1: X is a y.\\n'
    >>> completion_step(2, None, Action("finish", "y"), "Episode finished.")
    'Action 2: Finish[y]\\nObservation 2: Episode finished.\\n'
    """
    head = f"Thought {i}: {thought}\n" if thought is not None else ""
    return f"{head}Action {i}: {format_action(action)}\nObservation {i}: {observation}\n"


def chat_assistant(thought: str, action: Action) -> str:
    """The assistant turn of the chat layout (FireAct: lower-case action names).

    >>> chat_assistant("Go.", Action("search", "X"))
    'Thought: Go.\\nAction: search[X]'
    """
    act = action.arg if action.name == "invalid" else f"{action.name}[{action.arg}]"
    return f"Thought: {thought}\nAction: {act}"


def chat_observation(observation: str) -> str:
    """The user turn that carries an observation in the chat layout."""
    return f"Observation: {observation}"


def extract_cot_answer(text: str) -> str:
    """The answer of a chain-of-thought completion: after the last ``Answer:`` (or ``answer is``).

    >>> extract_cot_answer("Thought: so the answer is 5.\\nAnswer: 5")
    '5'
    >>> extract_cot_answer("So the answer is Paris.")
    'Paris'
    """
    m = list(re.finditer(r"Answer:\s*(.*)", text))
    if m:
        return m[-1].group(1).strip().split("\n", 1)[0].strip()
    m = list(re.finditer(r"answer is:?\s*(.*)", text, re.IGNORECASE))
    if m:
        return m[-1].group(1).strip().split("\n", 1)[0].strip().rstrip(".")
    return text.strip().split("\n", 1)[0].strip()
