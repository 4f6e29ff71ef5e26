"""Splitting admitted requests into encoder calls by source length (service/engine/encoder_groups.py)."""

from __future__ import annotations

import random

from service.engine.encoder_groups import CALL_COST, TIMESTEP_COST, lane_of, length_groups


def cost(lengths: list[int], groups: list[list[int]]) -> float:
    return sum(max(lengths[i] for i in g) * (TIMESTEP_COST + len(g)) + CALL_COST for g in groups)


def test_one_long_source_is_not_padded_onto_the_short_ones() -> None:
    lengths = [12, 100, 5, 20, 8, 15, 10]
    groups = length_groups(lengths)
    assert groups == [[2, 4, 6, 0, 5, 3], [1]]  # by length; the 100-token source alone
    assert cost(lengths, groups) < cost(lengths, [list(range(len(lengths)))])


def test_similar_lengths_share_one_call() -> None:
    assert length_groups([9, 10, 11, 10]) == [[0, 1, 3, 2]]
    assert length_groups([7]) == [[0]]
    assert length_groups([]) == []


def test_every_request_is_in_exactly_one_group_and_no_split_is_cheaper() -> None:
    rng = random.Random(2)
    for _ in range(50):
        # many equal lengths too: the program cuts only between distinct lengths
        lengths = [rng.choice([rng.randint(1, 20), rng.randint(1, 120), rng.choice((4, 9, 9, 60))])
                   for _ in range(rng.randint(1, 12))]
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        # against every split of the sorted order into runs (2^(n-1) of them)
        for mask in range(1 << (len(order) - 1)):
            runs, run = [], [order[0]]
            for position in range(1, len(order)):
                if mask >> (position - 1) & 1:
                    runs.append(run)
                    run = []
                run.append(order[position])
            runs.append(run)
            assert cost(lengths, groups) <= cost(lengths, runs) + 1e-9


def test_no_group_mixes_decoder_lanes() -> None:
    """With lane bounds, every encoder call's output goes to one decoder lane, even where one call
    for all would be cheaper (9 and 10 tokens on either side of a bound at 9)."""
    assert length_groups([9, 10, 11, 10], lane_bounds=(9,)) == [[0], [1, 3, 2]]
    rng = random.Random(3)
    for _ in range(50):
        lengths = [rng.randint(1, 120) for _ in range(rng.randint(1, 12))]
        groups = length_groups(lengths, lane_bounds=(16, 48))
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(len({lane_of(lengths[i], (16, 48)) for i in g}) == 1 for g in groups)


def test_a_source_goes_to_the_first_lane_whose_bound_it_does_not_exceed() -> None:
    assert [lane_of(n, (4, 16)) for n in (1, 4, 5, 16, 17, 500)] == [0, 0, 1, 1, 2, 2]
    assert lane_of(500, ()) == 0
