"""Region decays in the core, on hand-made layer maps: key matching, the innermost region, each
region's own frame, merging, and the option's checks."""

import re

import pytest
import torch

from hf_timm_layerdecay import LayerDecayConfig, LayerDecayError
from hf_timm_layerdecay.core.groups import build_param_groups, merge_equal_groups
from hf_timm_layerdecay.core.layer_map import LayerMap
from hf_timm_layerdecay.core.regions import RegionError, region_scale_function, resolve_regions
from hf_timm_layerdecay.core.scales import layer_scales

# a model with two encoders (blocks 1-2 and 1-3, side by side) and a decoder (4-5); head 6
IDS = {"a.enc.x": 1, "a.enc.y": 2, "b.enc.x": 3, "b.enc.emb": 0, "dec.x": 4, "dec.y": 5, "dec.norm": 6, "head": 6}
REGIONS = {"a.enc": (0, 2), "b.enc": (0, 3), "dec": (3, 5), "dec.inner": (4, 5)}
LAYER_MAP = LayerMap(IDS, 7, regions=REGIONS)


def test_a_short_name_must_name_one_region():
    with pytest.raises(RegionError, match=r"key 'enc' names several regions of M: \['a.enc', 'b.enc'\]; give the whole path"):
        resolve_regions({"enc": 0.5}, LAYER_MAP, "M")
    assert resolve_regions({"b.enc": 0.5, "dec": 0.8}, LAYER_MAP, "M").paths == {"b.enc": "b.enc", "dec": "dec"}


def test_the_innermost_named_region_decides_and_each_counts_its_own_frame():
    regions = resolve_regions({"dec": 0.5, "inner": 0.8, "*": 0.9}, LAYER_MAP, "M")
    assert [regions.region_of(n) for n in ("dec.x", "dec.inner.w", "a.enc.x", "head")] == ["dec", "inner", None, None]
    scale = region_scale_function(regions, 7, lambda n, d: layer_scales(n, d))
    # dec: blocks 4-5, its frame 3..6; inner: block 5, frame 4..6
    assert [scale(i, "dec") for i in range(7)] == pytest.approx([0.125, 0.125, 0.125, 0.125, 0.25, 0.5, 1.0])
    assert [scale(i, "inner") for i in (4, 5, 6)] == pytest.approx([0.64, 0.8, 1.0])
    assert [scale(i, None) for i in (0, 6)] == pytest.approx([0.9 ** 6, 1.0])


def test_groups_of_two_regions_with_equal_hyperparameters_merge():
    params = {name: torch.nn.Parameter(torch.ones(2, 2)) for name in ("a.w", "b.w")}
    groups = build_param_groups(params.items(), weight_decay=0.0, is_no_decay=lambda n, p: False,
                                layer_of=lambda n: 1, scale_of=lambda i, region: 0.5, lr=1.0,
                                region_of=lambda n: n.split(".")[0])
    assert [(g["name"], g["region"]) for g in groups] == [("a.layer_1_decay", "a"), ("b.layer_1_decay", "b")]
    (merged,) = merge_equal_groups(groups)
    assert merged["name"] == "layer_1_decay" and "region" not in merged and merged["param_names"] == ["a.w", "b.w"]


@pytest.mark.parametrize("value, message", [
    ({0: 0.25, 1: 1.0}, "list(mapping.values())"),
    ({"text": True}, "layer_decay['text'] must be a number"),
    ({"text": 0.0}, "layer_decay must be > 0"),
    ({"text": 1.5}, "layer_decay=1.5 is above 1"),
    ({}, "empty mapping"),
])
def test_a_region_mapping_is_checked_before_any_model(value, message):
    with pytest.raises(LayerDecayError, match=re.escape(message)):
        LayerDecayConfig(layer_decay=value)


def test_a_mapping_with_only_the_rest_is_the_float_decay():
    assert LayerDecayConfig(layer_decay={"*": 0.7}).layer_decay == 0.7
