"""Grouping names by a timm ``group_matcher()`` in one match per name: timm's ids exactly.

timm's own helper is the oracle: every matcher style timm uses (prefix patterns, patterns with a
block number, ``(pattern, suffix)`` lists with timm's continue-the-previous-group marker, entries
set to ``None``, callables) and every family of the zoo.
"""

import logging
import re

import pytest
import timm
import timm.models._manipulate as manipulate
import torch

from hf_timm_layerdecay._compat import create_timm_model
from hf_timm_layerdecay.adapters.timm.matching import group_ids
from hf_timm_layerdecay.adapters.walk import walk

NAMES = [
    "cls_token", "pos_embed", "patch_embed.proj.weight", "stages.0.downsample.weight",
    "stages.0.blocks.0.conv.weight", "stages.0.blocks.1.conv.weight", "stages.1.downsample.weight",
    "stages.1.blocks.0.conv.weight", "stages.1.norm.weight", "norm_pre.weight", "head.fc.weight",
]
MATCHERS = {
    "prefixes and block numbers": {"stem": r"^cls_token|^pos_embed|^patch_embed", "blocks": r"^stages\.(\d+)\.blocks\.(\d+)"},
    "pattern and suffix lists": {
        "stem": r"^cls_token|^pos_embed|^patch_embed",
        "blocks": [
            (r"^stages\.(\d+)\.downsample", (0,)),
            (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            (r"^stages\.(\d+)\.norm", (99999,)),  # timm's MATCH_PREV_GROUP: joins the group before
            (r"^norm_pre", (99999,)),
        ],
    },
    "None entries keep their ordinal": {"stem": r"^patch_embed", "unused": None, "blocks": r"^stages\.(\d+)"},
    "nothing matches": {"stem": r"^nothing"},
}


def timms(names, matcher):
    return manipulate.group_with_matcher(((n, n) for n in names), matcher, reverse=True)


@pytest.mark.parametrize("matcher", MATCHERS.values(), ids=MATCHERS.keys())
def test_the_ids_and_their_order_are_timms(matcher, monkeypatch):
    expected = list(timms(NAMES, matcher).items())
    # these matchers are joined into one pattern: timm's helper is not called at all
    monkeypatch.setattr(manipulate, "group_with_matcher", pytest.fail)
    assert list(group_ids(NAMES, matcher).items()) == expected


def test_suffixes_merge_groups_and_ordinals_count_none_entries():
    ids = group_ids(NAMES, MATCHERS["pattern and suffix lists"])
    assert ids["stages.0.downsample.weight"] == ids["stages.0.blocks.0.conv.weight"] == 1  # equal keys
    assert ids["stages.0.blocks.1.conv.weight"] == 2
    assert ids["stages.1.norm.weight"] == ids["norm_pre.weight"] == ids["stages.1.blocks.0.conv.weight"] == 3
    assert ids["head.fc.weight"] == 4  # unmatched: after every group
    ids = group_ids(NAMES, MATCHERS["None entries keep their ordinal"])
    assert ids["patch_embed.proj.weight"] == 0 and ids["stages.0.blocks.1.conv.weight"] == 1 and ids["cls_token"] == 3


@pytest.mark.parametrize(
    "matcher",
    [
        {"stem": r"^patch_embed", "blocks": r"^stages\.(\d+)\.blocks\.\1"},  # a back-reference
        {"stem": r"^patch_embed", "blocks": re.compile(r"^STAGES\.(\d+)", re.IGNORECASE)},  # flags
        {"stem": r"^patch_embed", "blocks": r"^stages\.(?P<x>\d+)", "extra": r"^extra\.(?P<x>\d+)"},  # a name used twice
        lambda name: (0,) if name.startswith("patch") else (1, int(name.split(".")[1])) if name.startswith("stages") else (2,),
    ],
    ids=["back-reference", "flags", "clashing group names", "callable"],
)
def test_matchers_that_cannot_be_joined_go_through_timms_helper(matcher, monkeypatch):
    expected = list(timms(NAMES, matcher).items())
    calls, helper = [], manipulate.group_with_matcher
    monkeypatch.setattr(manipulate, "group_with_matcher", lambda *args, **kwargs: calls.append(1) or helper(*args, **kwargs))
    assert list(group_ids(NAMES, matcher).items()) == expected and calls == [1]


def test_an_optional_group_that_did_not_match_fails_as_in_timm():
    matcher = {"blocks": r"^stages\.(\d+)(?:\.blocks\.(\d+))?"}  # stages.0.downsample: group 2 is None
    with pytest.raises(TypeError) as ours:
        group_ids(NAMES, matcher)
    with pytest.raises(TypeError) as theirs:
        timms(NAMES, matcher)
    assert str(ours.value) == str(theirs.value)


def one_model_per_family():
    return [timm.list_models(module=family)[0] for family in timm.list_modules() if timm.list_models(module=family)]


def test_every_timm_family_gets_timms_ids():
    logging.disable(logging.WARNING)
    checked = 0
    try:
        for name in one_model_per_family():
            model = create_timm_model(name, "meta")  # on the CPU where this torch cannot build it on meta
            if not callable(getattr(model, "group_matcher", None)):
                continue
            names = [alias for aliases in walk(model).aliases.values() for alias in aliases]
            for coarse in (False, True):
                try:
                    matcher = model.group_matcher(coarse=coarse)
                except (AssertionError, NotImplementedError):
                    continue
                assert list(group_ids(names, matcher).items()) == list(timms(names, matcher).items()), (name, coarse)
                checked += 1
    finally:
        logging.disable(logging.NOTSET)
    assert checked >= 100
