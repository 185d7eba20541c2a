"""core/multipliers.py: ``Multipliers`` on names alone: the longest pattern wins, equal lengths go
by alphabetical order (never by dict order), a parameter known by two names, ``unused``."""

import pytest

from hf_timm_layerdecay.core.multipliers import Multipliers


def test_nothing_matched_is_one_and_an_empty_table_is_false():
    assert Multipliers({"head": 10.0}).of("blocks.0.w") == 1.0
    assert not Multipliers({}) and Multipliers({"head": 10.0})


def test_the_longest_matching_pattern_wins_in_any_dict_order():
    table = {"blocks": 0.5, "blocks.1": 2.0, "blocks.1.mlp": 3.0, "*.bias": 0.0}
    for entries in (table, dict(reversed(table.items()))):
        mult = Multipliers(entries)
        assert mult.of("blocks.1.mlp.fc1.weight") == 3.0
        assert mult.of("blocks.1.attn.qkv.weight") == 2.0
        assert mult.of("blocks.10.attn.qkv.weight") == 0.5  # 'blocks.1' names a module, not a prefix
        # 'blocks' and '*.bias' are both 6 characters: alphabetical order, '*' before 'b'
        assert mult.of("blocks.0.attn.qkv.bias") == 0.0
        assert mult.of("head.bias") == 0.0


@pytest.mark.parametrize("entries", [{"ab*": 2.0, "a*b": 3.0}, {"a*b": 3.0, "ab*": 2.0}])
def test_equal_lengths_go_by_alphabetical_order(entries):
    assert Multipliers(entries).of("ab.b") == 3.0  # 'a*b' < 'ab*' ('*' sorts before 'b')


def test_a_parameter_known_by_two_names_matches_by_either():
    mult = Multipliers({"blocks.0": 2.0})
    assert mult.of("module._orig_mod.blocks.0.w", "blocks.0.w") == 2.0
    assert mult.of("module.blocks.0.w") == 1.0


def test_unused_keeps_patterns_that_matched_even_when_a_longer_one_won():
    mult = Multipliers({"head": 10.0, "blocks": 0.5, "blocks.1": 2.0, "nothing*": 3.0})
    assert mult.unused == ["head", "blocks", "blocks.1", "nothing*"]
    mult.of("blocks.1.w")
    assert mult.unused == ["head", "nothing*"]
