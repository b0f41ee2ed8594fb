import pytest

from cutter_agent import IU, cut, normalise


def test_normalise_collapses_spaces():
    assert normalise("a   b\t\tc") == "a b c"


def test_normalise_unifies_line_endings():
    assert normalise("a\r\nb\rc") == "a\nb\nc"


def test_normalise_strips_lines():
    assert normalise("  a  \n  b ") == "a\nb"


def test_cut_empty_text_gives_nothing():
    assert cut("d", "") == []


def test_cut_single_sentence():
    units = cut("d", "Hello world.")
    assert [u.text for u in units] == ["Hello world."]


def test_cut_paragraphs_become_units():
    units = cut("d", "One.\n\nTwo.")
    assert [u.text for u in units] == ["One.", "Two."]


def test_cut_indexes_are_sequential():
    units = cut("d", "A.\n\nB.\n\nC.")
    assert [u.index for u in units] == [0, 1, 2]


def test_cut_respects_cap():
    text = " ".join(f"Sentence number {i}." for i in range(50))
    units = cut("d", text, cap=60)
    assert units and all(len(u) <= 60 for u in units)


def test_cut_keeps_all_words():
    text = " ".join(f"Word{i}." for i in range(40))
    units = cut("d", text, cap=30)
    assert " ".join(u.text for u in units).split() == text.split()


def test_cut_splits_overlong_sentence():
    units = cut("d", "x" * 25, cap=10)
    assert [len(u) for u in units] == [10, 10, 5]


def test_cut_joins_short_sentences():
    units = cut("d", "A. B. C.", cap=100)
    assert [u.text for u in units] == ["A. B. C."]


def test_cut_rejects_bad_cap():
    with pytest.raises(ValueError):
        cut("d", "x", cap=0)


def test_cut_rejects_empty_doc():
    with pytest.raises(ValueError):
        cut("", "x")


def test_cut_single_newlines_join():
    assert [u.text for u in cut("d", "a\nb")] == ["a b"]


def test_iu_key_is_stable():
    assert IU("d", 0, "t").key == IU("d", 0, "t").key


def test_iu_key_depends_on_text():
    assert IU("d", 0, "t").key != IU("d", 0, "u").key


def test_iu_key_depends_on_doc():
    assert IU("d", 0, "t").key != IU("e", 0, "t").key


def test_iu_key_length():
    assert len(IU("d", 0, "t").key) == 16


@pytest.mark.parametrize("cap", [5, 17, 80, 400])
def test_cut_cap_parametrised(cap):
    text = "Alpha beta gamma. Delta epsilon! Zeta eta theta? Iota kappa lambda."
    assert all(len(u) <= cap for u in cut("d", text, cap=cap))
