"""Stop strings: one rule for every backend."""

from reactlab.llm.stops import cut_at_stop, find_stop


def test_cut_at_stop_edge_cases():
    assert cut_at_stop("abc", []) == ("abc", None)
    assert cut_at_stop("abc", ["", "c"]) == ("ab", "c")
    assert cut_at_stop("a\n\nb", ["\n", "\n\n"]) == ("a", "\n\n")  # same position: the longer wins
    assert cut_at_stop("xstop", ["stop"]) == ("x", "stop")


def test_find_stop():
    assert find_stop("abc", ["x"]) is None
    assert find_stop("a\nObservation", ["\nObservation", "\n"]) == (1, "\nObservation")
    assert find_stop("ab", ["", "b"]) == (1, "b")
    assert find_stop("x<|im_end|>y\n", ["\n", "<|im_end|>"]) == (1, "<|im_end|>")  # earliest wins over order
