"""core/weight_decay.py: ``NameMatcher`` (exact names, module names, globs, ``unused``), the whole-list
matching that must agree with asking name by name, ``is_no_decay_shape`` and ``no_weight_decay_list``."""

import pytest

from hf_timm_layerdecay.core.weight_decay import NameMatcher, is_no_decay_shape, matches_entry, no_weight_decay_list


def test_an_exact_entry_matches_the_name_and_everything_below_that_module_only():
    matcher = NameMatcher(["pos_embed", "blocks.1"])
    assert [matcher(n) for n in ("pos_embed", "pos_embed.weight", "pos_embed2", "x.pos_embed")] == [True, True, False, False]
    assert [matcher(n) for n in ("blocks.1", "blocks.1.attn.qkv.weight", "blocks.10.mlp.bias", "blocks")] == [
        True, True, False, False
    ]


def test_glob_entries_follow_fnmatchcase():
    matcher = NameMatcher(["*.bias", "blocks.?.gamma", "[ab].w"])
    assert [matcher(n) for n in ("head.bias", "bias", "head.Bias")] == [True, False, False]  # case-sensitive
    assert [matcher(n) for n in ("blocks.3.gamma", "blocks.12.gamma")] == [True, False]
    assert [matcher(n) for n in ("a.w", "b.w", "c.w")] == [True, True, False]


def test_unused_lists_the_entries_no_name_matched_in_the_given_order():
    matcher = NameMatcher(["z", "a", "a", "a.b", "h*", "head"])
    assert matcher.entries == ["z", "a", "a.b", "h*", "head"]  # repeats dropped
    assert matcher.unused == matcher.entries  # nothing asked yet
    assert matcher("a.b.c") and matcher("head.weight")
    # the innermost module entry is the one used; a glob is not used by a name an exact entry took
    assert matcher.unused == ["z", "a", "h*"]
    assert matcher("hx") and matcher.unused == ["z", "a"]


def test_whole_list_matching_marks_the_same_entries_used():
    one_by_one, at_once = NameMatcher(["z", "a", "a.b", "h*", "head"]), NameMatcher(["z", "a", "a.b", "h*", "head"])
    names = ["a.b.c", "head.weight", "hx", "q"]
    assert at_once.matching(names) == {"a.b.c", "head.weight", "hx"} == {n for n in names if one_by_one(n)}
    assert at_once.unused == one_by_one.unused == ["z", "a"]


def test_entries_given_as_none_a_lone_string_or_not_strings():
    assert NameMatcher(None).entries == [] and not NameMatcher(None)("anything")
    assert NameMatcher(None).matching(["a"]) == set()
    assert NameMatcher("pos_embed").entries == ["pos_embed"]  # not p, o, s, ...
    with pytest.raises(TypeError, match=r"must be strings .* got 3 \(int\)"):
        NameMatcher(["pos_embed", 3])


NAMES = [
    "pos_embed", "cls_token", "blocks.0.attn.relative_position_bias_table", "blocks.0.attn.qkv.weight",
    "rel_pos.table", "rel_posx.t", "a", "a.b.c", "a.bb", "head.weight", "head.bias",
]


@pytest.mark.parametrize(
    "entries",
    [
        ["pos_embed", "*.relative_position_bias_table", "nothing"],
        ["rel_pos", "a.b", "a"],
        ["a*", "head"],
        ["head", "h*", "*"],
        ["*.bias", "blocks.0", "cls_token"],
        [],
    ],
)
def test_whole_list_matching_equals_asking_name_by_name(entries):
    one_by_one, at_once = NameMatcher(entries), NameMatcher(entries)
    assert at_once.matching(NAMES) == {n for n in NAMES if one_by_one(n)}
    assert at_once.unused == one_by_one.unused


def test_whole_list_matching_survives_a_name_with_a_newline():
    matcher = NameMatcher(["a", "b*"])
    assert matcher.matching(["a.x", "odd\nname", "bz", "c"]) == {"a.x", "bz"}


def test_one_entry_against_one_name():
    assert matches_entry("blocks.1", "blocks.1") and matches_entry("blocks.1", "blocks.1.w")
    assert not matches_entry("blocks.1", "blocks.10.w") and not matches_entry("blocks.1.w", "blocks.1")
    assert matches_entry("*.gamma", "blocks.0.gamma") and not matches_entry("*.gamma", "gamma")


@pytest.mark.parametrize("name, shape, no_decay", [
    ("fc.weight", (3, 4), False),
    ("fc.bias", (3, 4), True),  # by name, whatever its shape
    ("norm.weight", (8,), True),
    ("logit_scale", (), True),
    ("fc.weight", (1, 96), False),  # 2-D with one real dimension: decayed (timm's rule)
    ("stages.0.1.grn.gamma", (1, 1, 1, 96), True),  # ConvNeXt-V2's global response norm
    ("stages.0.1.grn.beta", (1, 1, 1, 96), True),
    ("stages.0.1.grn.gamma", (1, 1, 2, 96), False),  # two real dimensions: a weight
    ("stages.0.1.mlp.gamma", (1, 1, 1, 96), False),  # not a grn: FastViT-style layer scales keep their decay
    ("grn.weight", (1, 1, 1, 96), False),
])
def test_shapes_and_names_without_weight_decay(name, shape, no_decay):
    assert is_no_decay_shape(name, shape) is no_decay


def test_the_models_no_weight_decay_list_in_every_form_it_comes():
    class Model:
        def __init__(self, names):
            self.names = names

        def no_weight_decay(self):
            return self.names

    assert no_weight_decay_list(Model({"pos_embed"})) == ["pos_embed"]
    assert no_weight_decay_list(Model("cls_token")) == ["cls_token"]
    assert no_weight_decay_list(Model(None)) == []
    assert no_weight_decay_list(object()) == []
    assert no_weight_decay_list(type("Attr", (), {"no_weight_decay": ["not", "callable"]})()) == []
