"""Property-based tests of the typed value readers every command parses its options with (rllab.parsing):
for any text, a reader returns a finite value in its range or refuses it with one line, never anything else."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rllab.errors import RllabError
from rllab.parsing import (
    MAX_SEED,
    MAX_STEPS,
    budget,
    nonneg_float,
    parse_float,
    parse_int,
    parse_number,
    positive_float,
    positive_int,
    seed_int,
    yaml_arg,
)

# Text a user might type: numbers of every float spelling, fractions, specials, garbage, and pure noise.
numberish = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.tuples(st.floats(), st.floats()).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e308", "1e309", "8/255", "1/0", "0/0", " 3 ", "1_000", "0x10"]),
    st.text(max_size=30),
)
ARG_TYPES = [positive_int, seed_int, budget, positive_float, nonneg_float]


@settings(max_examples=150, deadline=None)
@given(text=numberish)
def test_parse_number_is_finite_or_one_line(text):
    try:
        value = parse_number(text, "--x")
    except RllabError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--x")
    else:
        assert math.isfinite(value)


@settings(max_examples=150, deadline=None)
@given(text=numberish, low=st.integers(-5, 5), span=st.integers(0, 10**12))
def test_parse_int_stays_in_its_range(text, low, span):
    try:
        value = parse_int(text, "--n", low, low + span)
    except RllabError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(value, int) and low <= value <= low + span


@settings(max_examples=150, deadline=None)
@given(text=numberish, open_low=st.booleans())
def test_parse_float_respects_an_open_lower_bound(text, open_low):
    try:
        value = parse_float(text, "--lr", 0.0, 10.0, open_low=open_low)
    except RllabError:
        return
    assert math.isfinite(value) and value <= 10.0 and (value > 0 if open_low else value >= 0)


@settings(max_examples=150, deadline=None)
@given(text=numberish, kind=st.sampled_from(ARG_TYPES))
def test_argparse_types_raise_only_argument_type_errors(text, kind):
    try:
        value = kind(text)
    except argparse.ArgumentTypeError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(value)
    if kind is positive_int:
        assert 1 <= value <= MAX_STEPS
    if kind is seed_int:
        assert 0 <= value <= MAX_SEED
    if kind is positive_float:
        assert value > 0
    if kind in (budget, nonneg_float):
        assert value >= 0


@pytest.mark.parametrize("text", ["inf", "1e30", "1e10000", "nan", "-1", "0", "1.5"])
def test_step_counts_that_would_never_end_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=60),
        yaml_values.map(repr),
        st.sampled_from([200, 2000]).map(lambda n: "[" * n + "]" * n),  # nesting past the recursion limit
        st.sampled_from(["!!python/object/apply:os.system ['touch /tmp/rllab-pwned']", "{a: !!python/name:os.system}"]),
    ),
    kind=st.sampled_from([dict, list]),
)
def test_yaml_values_are_the_kind_asked_for_or_one_line(text, kind):
    try:
        value = yaml_arg(text, "--env-kwargs", kind)
    except RllabError as exc:
        assert "\n" not in str(exc)
        return
    assert value is None or isinstance(value, kind)
