"""The status line's severity: a str that says how good or bad the regime it describes is."""

import pytest

from dml_lesson.teaching.status import COLOURS, SEVERITIES, Status, join, worst


def test_a_status_is_its_text_with_a_severity():
    s = Status("diverged at step 3", "bad")
    assert s == "diverged at step 3" and isinstance(s, str) and s.severity == "bad"
    assert Status("fine").severity == "ok"
    assert set(COLOURS) == set(SEVERITIES)


def test_an_unknown_severity_is_refused_by_name():
    with pytest.raises(ValueError, match="severity must be one of"):
        Status("x", "red")


def test_join_keeps_the_worst_severity():
    line = join([Status("a"), Status("b", "warn"), "c"])
    assert line == "a; b; c" and line.severity == "warn"
    assert join([Status("a", "bad"), Status("b", "warn")]).severity == "bad"
    assert worst() == "ok" and worst("plain text") == "ok"
