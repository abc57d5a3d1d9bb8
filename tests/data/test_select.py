"""Selection: every drop has a reason; mixing and the train/val split are deterministic."""

import json
from collections import Counter

import pytest

from reactlab.data.select import Selection, excluded_questions, mix, parse_mix, select, split_of
from reactlab.data.sources import Sample
from reactlab.io import DataError


def S(t, source="run"):
    return Sample(t, source, "")


def test_sft_filters_count_each_reason(mk, hotpot_questions):
    ev, p5 = hotpot_questions["eval"][0].question, hotpot_questions["paper500"][0].question
    samples = [
        S(mk("Q keep?")),
        S(mk("q  KEEP")),  # same question once normalised
        S(mk("Q wrong?", answer="n")),
        S(mk("Q partial?", answer="big red house", gold="red house")),
        S(mk("Q unfinished?", status="max_steps")),
        S(mk("Q long?", n_steps=9)),
        S(mk("Q error?", status="error")),
        S(mk(ev.upper())),  # evaluation questions, whatever their case or punctuation
        S(mk(p5 + " ")),
        S(mk("Q no gold?", gold="")),
    ]
    kept, dropped = select(samples, Selection(max_steps=8), excluded_questions())
    assert [s.traj.question for s in kept] == ["Q keep?", "Q no gold?"]
    assert dropped == Counter(duplicate=1, incorrect=2, unfinished=1, too_many_steps=1, error=1, eval_overlap=2)
    kept, _ = select(samples, Selection(max_steps=8, min_f1=0.8), excluded_questions())
    assert "Q partial?" in [s.traj.question for s in kept]


def test_preference_and_prompt_selection(mk):
    samples = [S(mk("Q?")), S(mk("Q?", answer="n")), S(mk("Q?", status="max_steps")), S(mk("Q2?", gold=""))]
    kept, dropped = select(samples, Selection(purpose="preference"), set())
    assert len(kept) == 3 and dropped == Counter(no_gold=1)
    kept, dropped = select(samples, Selection(purpose="prompts"), set())
    assert len(kept) == 1 and dropped == Counter(duplicate=2, no_gold=1)


def test_exclude_files_any_layout(tmp_path, mk, hotpot_questions):
    train = [e.question for e in hotpot_questions["train"]]
    simplified = tmp_path / "mine.json"
    simplified.write_text(json.dumps([{"question": train[0], "answer": "a"}]))
    trajs = tmp_path / "t.jsonl"
    trajs.write_text(json.dumps(mk(train[1]).to_dict()) + "\n")
    ex = excluded_questions((), [simplified, trajs])
    assert len(ex) == 2
    kept, dropped = select([S(mk(q)) for q in train[:3]], Selection(), ex)
    assert [s.traj.question for s in kept] == [train[2]] and dropped == Counter(eval_overlap=2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(DataError, match=r"--exclude .*bad\.jsonl:1: unknown layout"):
        excluded_questions((), [bad])


def test_mix_is_deterministic_and_scales_sources(mk):
    a = [S(mk(f"A{i}?"), "a") for i in range(10)]
    b = [S(mk(f"B{i}?"), "b") for i in range(4)]
    out = mix(a + b, {"a": 0.3, "b": 2.5}, seed=3)
    assert Counter(s.source for s in out) == {"a": 3, "b": 10}
    assert [s.traj.question for s in out] == [s.traj.question for s in mix(a + b, {"a": 0.3, "b": 2.5}, seed=3)]
    assert mix(a + b, {}, seed=3) == a + b
    with pytest.raises(ValueError, match="unknown source"):
        mix(a, {"c": 1.0})
    assert parse_mix(["fireact:hotpotqa=0.5"]) == {"fireact:hotpotqa": 0.5}
    with pytest.raises(ValueError, match="SOURCE=WEIGHT"):
        parse_mix(["a=-1"])


def test_split_is_a_stable_function_of_the_question():
    qs = [f"Question number {i}?" for i in range(2000)]
    val = [q for q in qs if split_of(q, 0.1) == "val"]
    assert 150 < len(val) < 250
    assert all(split_of(q.upper() + "  ", 0.1) == "val" for q in val)  # normalised text decides
    assert split_of("Who?", 0.0) == "train"


def test_is_correct_without_scores_uses_gold(mk):
    good, bad = mk("Q?", answer="Paris", gold="paris"), mk("Q2?", answer="Lyon", gold="Paris")
    good.scores = bad.scores = {}
    kept, dropped = select([S(good), S(bad)], Selection(), set())
    assert [s.traj for s in kept] == [good] and dropped == Counter(incorrect=1)


def _traj(question, actions, observations, task="hotpotqa", gold=None):
    from reactlab.types import Action, Step, Trajectory

    steps = [Step(i, "", Action(*a), o) for i, (a, o) in enumerate(zip(actions, observations, strict=True))]
    return Trajectory(id=question[:10], task=task, question=question, gold=gold or actions[-1][1], agent="oracle",
                      prompt_id="", model="", steps=steps, answer=actions[-1][1])


def test_grounded_keeps_only_steps_copied_from_what_was_seen():
    from reactlab.data.select import is_grounded

    q = "What instrument did the founder of The Acme Band play?"
    obs = ["The Acme Band was founded by John Smith-Jones in 1970.", "John Smith-Jones played the oboe.", ""]

    def t(search1, search2, answer, question=q, task="hotpotqa"):
        return _traj(question, [("search", search1), ("search", search2), ("finish", answer)], obs, task=task)

    assert is_grounded(t("Acme Band", "John Smith-Jones", "oboe"))
    assert is_grounded(t("the acme band", "john smithjones", "The Oboe"))  # compared after answer normalisation
    assert not is_grounded(t("Acme Band (band)", "John Smith-Jones", "oboe"))  # a title never seen
    assert not is_grounded(t("Acme Band", "Jane Doe", "oboe"))
    assert not is_grounded(t("John Smith-Jones", "Acme Band", "oboe"))  # named only in a later observation
    assert not is_grounded(t("Acme Band", "John Smith-Jones", "bassoon"))  # an answer never seen
    assert not is_grounded(t("Acme", "John Smith-Jones", "obo"))  # whole words only: "obo" is not in "oboe"
    assert not is_grounded(t("Acme Band", "", "oboe"))
    assert is_grounded(t("Acme Band", "John Smith-Jones", "yes"))
    assert is_grounded(t("Acme Band", "John Smith-Jones", "REFUTES", task="fever"))  # a label, not a copied span
    lookup = _traj(q, [("search", "Acme Band"), ("lookup", "founded"), ("finish", "1970")], obs)
    assert is_grounded(lookup)

    samples = [S(t("Acme Band", "John Smith-Jones", "oboe")), S(t("Acme Band", "Jane Doe", "oboe", question="Which" + q[4:]))]
    for s in samples:
        s.traj.scores = {"em": 1.0}
    assert len(select(samples, Selection(), set())[0]) == 2
    kept, dropped = select(samples, Selection(grounded=True), set())
    assert [s.traj for s in kept] == [samples[0].traj] and dropped == Counter(ungrounded=1)
