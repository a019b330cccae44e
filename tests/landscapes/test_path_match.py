"""Path-length matching reports whether the target was reached, with both lengths, and never returns a
silent mismatch (issue 12, item 11)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from landscapes import (PATH_TOLERANCE, PathLengthError, PathMatch, get, match_path_length, match_to_reference,
                        run_trajectory)


def test_an_unreachable_target_raises_with_both_lengths_and_the_closest_match():
    """MeZO on Rosenbrock jumps from short paths to diverging runs: a target of 1e5 is out of reach (the old
    code returned an lr whose path was 10.9 long as if it matched)."""
    ls = get("rosenbrock")
    with pytest.raises(PathLengthError) as info:
        match_path_length(ls, "mezo", 1e5, steps=100, grid=9)
    match = info.value.match
    assert isinstance(info.value, ValueError)
    assert not match.reached and match.target == 1e5 and match.path_length < 100
    message = str(info.value)
    assert f"path length {match.path_length:.4g} against the target 1e+05" in message
    assert "not within the 5% tolerance" in message and f"lr {match.lr:.4g}" in message
    again = run_trajectory(ls, "mezo", 100, {"lr": match.lr}, seed=0)
    assert again.path_length == pytest.approx(match.path_length, rel=1e-12)

    loose = match_path_length(ls, "mezo", 1e5, steps=100, grid=9, strict=False)
    assert loose == match and loose.relative_error == pytest.approx(match.path_length / 1e5 - 1)


def test_a_target_outside_the_scanned_lengths_raises_or_returns_the_nearest_end():
    ls = get("quadratic", kappa=10)
    with pytest.raises(PathLengthError, match=r"no lr in \[1e-06, 1e-05\] gives MeZO a path length of 1e\+06 .*"
                                              r"the closest is MeZO at lr 1e-05: path length"):
        match_path_length(ls, "mezo", 1e6, steps=20, lr_bounds=(1e-6, 1e-5), grid=3)
    nearest = match_path_length(ls, "mezo", 1e6, steps=20, lr_bounds=(1e-6, 1e-5), grid=3, strict=False)
    assert nearest.lr == pytest.approx(1e-5) and not nearest.reached


def test_a_reachable_target_is_reached_within_the_tolerance():
    ls = get("quadratic", kappa=10)
    target = 1.5 * run_trajectory(ls, "adam", 100, {"lr": 0.05}).path_length
    match = match_path_length(ls, "mezo", target, steps=100, lr_bounds=(1e-5, 1.0), grid=9, tolerance=0.01)
    assert match.reached and abs(match.relative_error) <= 0.01 and match.tolerance == 0.01
    with pytest.raises(ValueError, match=r"tolerance must be a number >= 0 and < 1"):
        match_path_length(ls, "mezo", target, steps=10, tolerance=-0.1)


def test_match_to_reference_passes_strict_and_tolerance_on():
    ls = get("rosenbrock")
    with pytest.raises(PathLengthError):
        match_to_reference(ls, ["mezo"], steps=100, reference_hyper={"lr": 0.05}, ratio=1e4, lr_bounds=(1e-5, 1.0))
    out = match_to_reference(ls, ["mezo"], steps=100, reference_hyper={"lr": 0.05}, ratio=1e4,
                             lr_bounds=(1e-5, 1.0), strict=False)
    assert not out["mezo"].reached and out["adam"].reached


@given(length=st.floats(0, 1e6) | st.just(math.inf), target=st.floats(1e-3, 1e6),
       tolerance=st.floats(0, 0.99))
def test_reached_means_within_the_tolerance(length, target, tolerance):
    m = PathMatch("mezo", 0.01, length, target, [0], 1, tolerance)
    assert m.reached == (math.isfinite(length) and abs(length / target - 1) <= tolerance)
    text = m.describe()
    assert f"path length {length:.4g} against the target {target:.4g}" in text
    assert ("not within" in text) != m.reached
    assert PathMatch("mezo", 0.01, 1.0, 1.0, [0], 1).tolerance == PATH_TOLERANCE == 0.05
