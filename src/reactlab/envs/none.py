"""An environment with no tool: the agent can only think and finish (CoT, multiple choice, any task
answered from the question alone). Observations are those of ``WikiEnv`` for the same actions, so a
ReAct prompt behaves the same; a tool call is an invalid action.
"""

from __future__ import annotations

from reactlab.types import Action, Example

FINISHED = "Episode finished."


class NoToolEnv:
    """``finish[answer]`` ends the episode (``answer`` holds it); ``think[...]`` is ``Nice thought.``;
    anything else is ``Invalid action: ...``. One per live episode.

    >>> env = NoToolEnv()
    >>> env.reset(Example(id="1", question="2+2?", answer="4"))
    '2+2?'
    >>> env.step(Action("search", "2")), env.step(Action("finish", "4")), env.answer
    (('Invalid action: Search[2] (this task has no tools: think, then finish[answer])', False), ('Episode finished.', True), '4')
    """

    def __init__(self) -> None:
        self.answer: str | None = None

    def reset(self, example: Example) -> str:
        self.answer = None
        return example.question

    def step(self, action: Action) -> tuple[str, bool]:
        if self.answer is not None:
            return FINISHED, True
        if action.name == "finish":
            self.answer = action.arg
            return FINISHED, True
        if action.name == "think":
            return "Nice thought.", False
        return f"Invalid action: {str(action)[:200]} (this task has no tools: think, then finish[answer])", False
