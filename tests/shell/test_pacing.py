"""The shell's one backoff and its one sampled log (quotad.shell.pacing)."""

from __future__ import annotations

import pytest

from quotad.shell.pacing import Backoff, Tally


def test_backoff_doubles_up_to_its_bound_and_starts_again_after_a_success() -> None:
    backoff = Backoff(1.0, 30.0)
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next() == 1.0


@pytest.mark.parametrize(("first", "most"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_backoff_refuses_bounds_that_make_no_sense(first: float, most: float) -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first, most)


def test_tally_says_the_first_then_every_hundredth_per_key_and_again_after_clear() -> None:
    tally: Tally[str] = Tally()
    said = [(n, count) for n in range(1, 251) if (count := tally.hit("a")) is not None]
    assert said == [(1, 1), (100, 100), (200, 200)]
    assert tally.hit("b") == 1  # each key its own count
    assert (tally.total, len(tally)) == (251, 2)
    assert tally.clear("a") == 250
    assert tally.hit("a") == 1  # a new outage is said again
