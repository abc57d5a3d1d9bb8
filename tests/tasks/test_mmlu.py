"""MMLU: letters from free text, the CSV layout, subjects as question types."""

from __future__ import annotations

import gzip

import pytest

from reactlab.report import Summary
from reactlab.tasks.metrics import choice_letter
from reactlab.tasks.mmlu import MMLU, load_file
from reactlab.types import Completion

OPTIONS = ["London", "Paris", "Rome", "Oslo"]


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("b", "B"), ("(C)", "C"), ("D.", "D"), ("A) London", "A"), ("c: Rome", "C"),
    ("The answer is B.", "B"), ("answer: (d)", "D"), ("Paris", "B"), ("paris.", "B"),
    ("E", ""), ("Berlin", ""), ("", ""), ("Because", ""), ("I think it is Paris or Rome", ""),
])
def test_letter_from_free_text(answer, letter):
    assert choice_letter(answer, OPTIONS) == letter


def test_splits_subjects_and_score():
    task = MMLU()
    assert [len(task.examples(s)) for s in ("dev", "val", "eval")] == [285, 1531, 14042]
    ex = task.examples("dev")[0]
    assert ex.type == "abstract_algebra" and ex.question.endswith("\nA. 0\nB. 1\nC. 2\nD. 3") and ex.answer == "B"
    assert task.score(ex, "b") == {"accuracy": 1.0} and task.score(ex, "1") == {"accuracy": 1.0}
    assert task.score(ex, "A") == {"accuracy": 0.0}
    assert len({e.type for e in task.examples("eval")}) == 57


def test_per_subject_and_macro_accuracy():
    trajs = [{"type": "a", "scores": {"accuracy": 1.0}}] * 3 + [{"type": "b", "scores": {"accuracy": 0.0}}]
    s = Summary.of(trajs, metrics=("accuracy",), main_metric="accuracy")
    assert s.metrics["accuracy"] == 0.75 and s.macro == {"accuracy": 0.5}
    assert s.by_type["a"]["accuracy"] == 1.0 and s.by_type["b"]["n"] == 1
    assert "macro accuracy 0.500 over 2 types" in s.format()


def test_malformed_csv_names_file_and_line(tmp_path):
    f = tmp_path / "x_test.csv.gz"
    f.write_bytes(gzip.compress(b"q,1,2,3,4,A\nq2,1,2,3,4,F\n"))
    with pytest.raises(ValueError, match=r"x_test.csv.gz:2: field 'answer' must be one of A-D"):
        load_file(f)
    (tmp_path / "y_test.csv").write_text("q,1,2,3\n")
    with pytest.raises(ValueError, match=r"y_test.csv:1: expected 6 fields"):
        load_file(tmp_path / "y_test.csv")


def test_five_shot_prompt_is_the_benchmarks_own(vendored_index):
    """``--method standard --prompt dev5``: Hendrycks et al.'s prompt, the subject's five dev questions."""
    from reactlab.agents.react import ReActAgent
    from reactlab.envs.wikienv import WikiEnv

    task = MMLU()
    ex = task.examples("eval", limit=1)[0]
    dev = [d for d in task.examples("dev") if d.type == ex.type]
    agent = ReActAgent(task, method="standard", prompt="dev5")
    gen = agent.episode(ex, WikiEnv(vendored_index))
    q = next(gen)
    with pytest.raises(StopIteration) as stop:
        gen.send(Completion(text=f" {ex.answer}"))
    t = stop.value.value
    want = (f"The following are multiple choice questions (with answers) about {ex.type.replace('_', ' ')}.\n\n"
            + "".join(f"{d.question}\nAnswer: {d.answer}\n\n" for d in dev) + f"{ex.question}\nAnswer:")
    assert len(dev) == 5 and q.prompt == want and q.params.stop == ["\n"]
    assert agent.prompt_id == "mmlu_dev5@1/standard" and t.answer == ex.answer
    assert task.score(ex, t.answer) == {"accuracy": 1.0}
    assert task.dev_prefix(ex.type, 0) == want.split("\n\n")[0] + "\n\n"
    with pytest.raises(ValueError, match="the dev split has 0 exemplars of subject 'cooking'"):
        task.dev_prefix("cooking")
