import gzip
import json

import pytest

from reactlab.io import DataError
from reactlab.tasks.hotpotqa import HotpotQA, load_file, paper500_indices

OFFICIAL = {
    "_id": "abc",
    "question": "Which is older, A or B?",
    "answer": "A",
    "type": "comparison",
    "level": "easy",
    "supporting_facts": [["A", 0], ["B", 1]],
    "context": [["A", ["A was born in 1900."]], ["B", ["B is a person.", " B was born in 1950."]]],
}


def hf_layout(rec):
    return {
        "id": rec["_id"],
        "question": rec["question"],
        "answer": rec["answer"],
        "type": rec["type"],
        "level": rec["level"],
        "supporting_facts": {"title": [t for t, _ in rec["supporting_facts"]], "sent_id": [s for _, s in rec["supporting_facts"]]},
        "context": {"title": [t for t, _ in rec["context"]], "sentences": [s for _, s in rec["context"]]},
    }


def test_vendored_splits():
    t = HotpotQA()
    assert len(t.examples("eval")) == 491
    assert len(t.examples("train")) == 776
    p500 = t.examples("paper500")
    assert len(p500) == 500 and p500[0].id == "dev-3687"
    assert len(t.examples("dev", limit=10)) == 10
    ev = t.examples("eval", limit=3)
    assert ev[0].meta["supporting_facts"] and ev[0].meta["context"]
    # disjoint eval / train
    assert not {e.question for e in t.examples("eval")} & {e.question for e in t.examples("train")}


def test_paper500_is_the_react_protocol():
    import random

    idxs = list(range(7405))
    random.Random(233).shuffle(idxs)
    assert paper500_indices() == idxs[:500]


def test_seed_shuffles_before_limit():
    t = HotpotQA()
    a = [e.id for e in t.examples("eval", limit=5, seed=1)]
    b = [e.id for e in t.examples("eval", limit=5, seed=1)]
    assert a == b and a != [e.id for e in t.examples("eval", limit=5)]


@pytest.mark.parametrize("layout", ["official_json", "hf_jsonl", "hf_json_gz", "simplified"])
def test_layouts_load_the_same(tmp_path, layout):
    if layout == "official_json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps([OFFICIAL]))
    elif layout == "hf_jsonl":
        p = tmp_path / "d.jsonl"
        p.write_text(json.dumps(hf_layout(OFFICIAL)) + "\n")
    elif layout == "hf_json_gz":
        p = tmp_path / "d.json.gz"
        with gzip.open(p, "wt") as f:
            f.write(json.dumps([hf_layout(OFFICIAL)]))
    else:
        p = tmp_path / "d.json"
        p.write_text(json.dumps([{"question": "Q?", "answer": "A", "type": "bridge"}]))
    (ex,) = HotpotQA().examples(data=p)
    if layout == "simplified":
        assert ex.id == "d-0" and "context" not in ex.meta
        return
    assert ex.id == "abc" and ex.type == "comparison"
    assert ex.meta["supporting_facts"] == [["A", 0], ["B", 1]]
    assert ex.meta["context"][1] == ["B", ["B is a person.", " B was born in 1950."]]


@pytest.mark.parametrize(
    "content, needle",
    [
        ('[{"question": "q"}]', "record 0: field 'answer' missing"),
        ('[{"question": 3, "answer": "a"}]', "record 0: field 'question' must be str"),
        ('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": "a"\n', ":2: invalid JSON"),
        ('[{"question": "q", "answer": "a", "supporting_facts": [["t"]]}]', "field 'supporting_facts'"),
        ('[{"question": "q", "answer": "a", "context": {"title": ["t"], "sentences": []}}]', "field 'context'"),
        ("[1, 2]", "record 0: expected a JSON object"),
        ('"hello"', ":1: expected a JSON object, got str"),
    ],
)
def test_malformed_files_name_file_line_field(tmp_path, content, needle):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DataError) as e:
        load_file(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_duplicate_ids_rejected(tmp_path):
    p = tmp_path / "dup.json"
    p.write_text(json.dumps([OFFICIAL, OFFICIAL]))
    with pytest.raises(DataError, match="duplicate example id 'abc'"):
        load_file(p)


def test_score_is_official():
    t = HotpotQA()
    (ex,) = [e for e in t.examples("eval", limit=1)]
    assert t.score(ex, ex.answer) == {"em": 1.0, "f1": 1.0}
    assert t.score(ex, "nothing like it") == {"em": 0.0, "f1": 0.0}
