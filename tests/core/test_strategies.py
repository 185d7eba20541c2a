"""core/strategies.py on lists of names: ``layer_map_from_rule`` (a callable per name) and
``layer_map_from_patterns`` (``{regex: id}``, first match wins, captured block numbers, ``"last"``)."""

import warnings

import numpy as np
import pytest

from hf_timm_layerdecay.core.layer_map import LayerIdError
from hf_timm_layerdecay.core.scales import LayerDecayWarning
from hf_timm_layerdecay.core.strategies import layer_map_from_patterns, layer_map_from_rule

NAMES = ["embed.w", "blocks.0.w", "blocks.0.b", "blocks.1.w", "norm.w", "head.w"]
PATTERNS = {r"embed\.": 0, r"blocks\.(\d+)\.": 1, r".*": "last"}


def test_a_rule_gives_each_name_its_id_and_the_frame_is_max_plus_one():
    layer_map = layer_map_from_rule(NAMES, lambda n: {"embed": 0, "blocks": 2, "norm": 4}.get(n.split(".")[0], 5))
    assert dict(layer_map.ids) == {"embed.w": 0, "blocks.0.w": 2, "blocks.0.b": 2, "blocks.1.w": 2, "norm.w": 4, "head.w": 5}
    assert layer_map.num_layers == 6 and list(layer_map.ids) == NAMES


def test_a_rule_may_return_numpy_integers():
    ids = layer_map_from_rule(["a", "b"], lambda n: np.int64(3)).ids
    assert ids == {"a": 3, "b": 3} and all(type(i) is int for i in ids.values())


def test_a_failing_rule_names_the_parameter_and_keeps_the_cause():
    def rule(name):
        return int(name.split(".")[1])

    with pytest.raises(LayerIdError, match=r"layer rule .*rule failed on parameter 'embed.w': invalid literal") as info:
        layer_map_from_rule(NAMES, rule)
    assert isinstance(info.value.__cause__, ValueError)
    own = LayerIdError("the rule's own message")
    with pytest.raises(LayerIdError) as info:
        layer_map_from_rule(NAMES, lambda n: (_ for _ in ()).throw(own))
    assert info.value is own  # passed through as raised


@pytest.mark.parametrize("value, message", [
    (-1, r"layer id for parameter 'embed.w' is negative \(-1\)"),
    (1.0, r"layer id for parameter 'embed.w' must be a non-negative int, got 1.0 \(float\)"),
    (True, r"got True \(bool\)"),
])
def test_ids_that_are_not_non_negative_ints_are_refused(value, message):
    with pytest.raises(LayerIdError, match=message):
        layer_map_from_rule(NAMES, lambda n: value)


def test_patterns_add_the_captured_block_number_and_last_is_one_past_the_others():
    layer_map = layer_map_from_patterns(NAMES, PATTERNS)
    assert dict(layer_map.ids) == {"embed.w": 0, "blocks.0.w": 1, "blocks.0.b": 1, "blocks.1.w": 2, "norm.w": 3, "head.w": 3}
    assert layer_map.num_layers == 4
    # the names sent to the head by "last" are listed after the others
    assert list(layer_map_from_patterns(["head.w", "embed.w", "blocks.0.w"], PATTERNS).ids) == ["embed.w", "blocks.0.w", "head.w"]


def test_the_first_matching_pattern_wins():
    ids = layer_map_from_patterns(NAMES, {r"blocks\.1\.": 7, **PATTERNS}).ids
    assert ids["blocks.1.w"] == 7 and ids["blocks.0.w"] == 1 and ids["head.w"] == 8


def test_patterns_are_anchored_at_the_start_and_unused_ones_are_warned_about():
    with pytest.warns(LayerDecayWarning, match=r"layer patterns that match no parameter: \['fc'\].*re.match"):
        ids = layer_map_from_patterns(["blocks.0.fc.w", "embed.w"], {r"fc": 1, r"embed": 0, r".*": "last"}).ids
    assert ids == {"embed.w": 0, "blocks.0.fc.w": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unused catch-all for the head says nothing
        assert layer_map_from_patterns(["embed.w"], {r"embed": 0, r".*": "last"}).ids == {"embed.w": 0}


def test_names_no_pattern_matches_are_an_error_listing_ten():
    names = [f"extra.{i}" for i in range(12)]
    with pytest.raises(LayerIdError, match=r"12 parameter\(s\) match none of the layer patterns \['embed'\]: "
                                           r"extra.0, .*extra.9 \.\.\.\. Add a pattern"):
        layer_map_from_patterns(names, {"embed": 0})


@pytest.mark.parametrize("patterns, message", [
    ({r"(\w+)\.": 0}, r"captured 'embed' from parameter 'embed.w'; its first group must capture a block number"),
    ({r"blocks[": 0}, r"layer pattern 'blocks\[' is not a valid regular expression"),
    ({3: 0}, r"layer pattern 3 must be a string"),
    ({r".*": -2}, r"<pattern '.\*'>.* is negative"),
    ({r".*": "first"}, r"must be a non-negative int, got 'first'"),
])
def test_bad_patterns_are_named(patterns, message):
    with pytest.raises(LayerIdError, match=message):
        layer_map_from_patterns(NAMES, patterns)
