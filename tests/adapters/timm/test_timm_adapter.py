"""The timm adapter: layer ids of timm models, bare, wrapped, as feature extractors.

Two oracles check the maps against a real forward pass: ``tests/oracle.py`` (forward hooks:
modules in the order they first run) and the parameter-level one of the zoo sweep script (the
order in which operations first receive each parameter, which also times parameters that no
module hook sees: tokens held by the root module, RoPE frequencies, shared modules).
"""

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from hf_timm_layerdecay._compat import create_timm_model
from hf_timm_layerdecay import AutoStrategy, auto_layer_decay, get_num_layer_for_convnext, get_num_layer_for_vit, layer_ids
from hf_timm_layerdecay.adapters import timm as timm_adapter
from hf_timm_layerdecay.api import resolve_layer_map
from oracle import assert_forward_monotone, forward_order_violations

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from timm_zoo_sweep import tokens_at_stem  # noqa: E402

from hf_timm_layerdecay.compare import timm_layer_map  # noqa: E402
from hf_timm_layerdecay.verify import first_use_order, order_violations  # noqa: E402


def meta(name, **kwargs):
    """The model on the meta device; on the CPU, with a warning, where this timm / torch cannot
    build it there (torch 2.8 has no meta kernel for the torch.unique of timm's RegNets)."""
    return create_timm_model(name, "meta", **kwargs)


def images(size):
    return lambda model: model(torch.randn(1, 3, size, size))


def timm_groups(model):
    """The number of groups timm's own layer decay uses (group_matcher at block granularity)."""
    return len(set(timm.models.group_parameters(model, model.group_matcher(coarse=False), reverse=True).values()))


# Real tiny models of 49 timm model modules: (timm name, constructor overrides, input size, number
# of ids). The counts are blocks (per stage where the depths are given) + stem + head.
TINY = [
    ("vit_tiny_patch16_224", dict(img_size=32, depth=4), 32, 4 + 2),
    ("deit_tiny_distilled_patch16_224", dict(img_size=32, depth=3), 32, 3 + 2),
    ("beit_base_patch16_224", dict(img_size=32, depth=3, embed_dim=64, num_heads=2), 32, 3 + 2),
    ("eva02_tiny_patch14_224", dict(img_size=28, depth=3), 28, 3 + 2),
    ("swin_tiny_patch4_window7_224", dict(img_size=56, window_size=7, depths=(1, 1, 2, 1), embed_dim=32, num_heads=(1, 2, 2, 4)), 56, 1 + 1 + 2 + 1 + 2),
    ("swinv2_tiny_window8_256", dict(img_size=64, window_size=8, depths=(1, 1, 2, 1)), 64, 1 + 1 + 2 + 1 + 2),
    ("convnext_atto", dict(depths=(1, 1, 2, 1)), 32, 1 + 1 + 2 + 1 + 2),
    ("resnet18", {}, 32, 2 + 2 + 2 + 2 + 2),
    ("resnetv2_50", {}, 32, 3 + 4 + 6 + 3 + 2),
    ("efficientnet_b0", {}, 32, 1 + 2 + 2 + 3 + 3 + 4 + 1 + 2),
    ("regnety_002", {}, 32, 1 + 1 + 4 + 7 + 2),
    ("mobilenetv3_small_050", {}, 32, 1 + 2 + 3 + 2 + 3 + 1 + 2),
    ("mobilenetv4_conv_small_035", {}, 32, 2 + 2 + 6 + 6 + 1 + 2),
    ("maxvit_rmlp_pico_rw_256", dict(img_size=64), 64, 2 + 2 + 5 + 2 + 2),  # timm: one group per stage
    ("coatnet_nano_rw_224", dict(img_size=64), 64, 3 + 4 + 6 + 3 + 2),  # timm: one group per stage
    ("levit_128s", dict(img_size=64), 64, 2 + 3 + 4 + 2),
    ("pvt_v2_b0", {}, 64, 2 + 2 + 2 + 2 + 2),  # timm: one group per stage
    ("davit_tiny", dict(depths=(1, 1, 2, 1), embed_dims=(32, 64, 96, 128), num_heads=(1, 2, 3, 4)), 64, 1 + 1 + 2 + 1 + 2),
    ("hiera_tiny_224", dict(img_size=64), 64, 1 + 2 + 7 + 2 + 2),
    ("fastvit_t8", {}, 64, 2 + 2 + 4 + 2 + 2),
    ("mambaout_femto", {}, 32, 3 + 3 + 9 + 3 + 2),
    ("vgg11", dict(mlp_ratio=0.01), 32, 8 + 1),  # 8 convolutions (the first is the stem) + head
    ("densenet121", dict(block_config=(2, 2, 2, 2)), 32, 2 + 2 + 2 + 2 + 2),
    ("xcit_nano_12_p16_224", dict(img_size=32, depth=3), 32, 3 + 2 + 2),  # + 2 class-attention blocks
    ("cait_xxs24_224", dict(img_size=32, depth=3), 32, 3 + 2 + 2),  # the same, numbered after the blocks
    ("crossvit_tiny_240", dict(depth=[[1, 1, 0]] * 2), 240, 2 + 2),  # 2 multi-scale blocks (two branches each)
    ("poolformer_s12", {}, 32, 2 + 2 + 6 + 2 + 2),  # no group_matcher: the module structure
    ("pit_ti_224", dict(img_size=64), 64, 2 + 6 + 4 + 2),  # no group_matcher
    ("coat_lite_tiny", dict(img_size=32), 32, 2 * 4 + 2 + 3),  # stages 2-4 start with their own patch embedding
    ("twins_pcpvt_small", dict(depths=(1, 1, 2, 1)), 64, 1 + 1 + 2 + 1 + 2),
    ("tnt_s_patch16_224", dict(img_size=32, depth=3), 32, 3 + 2),
    ("mixer_s16_224", dict(img_size=32), 32, 8 + 2),
    ("resmlp_12_224", dict(img_size=32), 32, 12 + 2),
    ("convit_tiny", dict(img_size=32, depth=3, local_up_to_layer=2), 32, 3 + 2),
    ("efficientformerv2_s0", dict(img_size=64), 64, 2 + 2 + 6 + 4 + 2),
    ("edgenext_xx_small", {}, 64, 2 + 2 + 6 + 2 + 2),
    ("ghostnet_050", {}, 32, 16 + 1 + 2),  # 16 bottlenecks + the final conv block
    ("dla34", {}, 32, 10 + 2),
    ("dpn48b", {}, 32, 3 + 4 + 6 + 3 + 2),
    ("nf_regnet_b0", {}, 32, 1 + 3 + 6 + 6 + 2),
    ("cs3darknet_s", {}, 32, 9 + 2),
    ("rexnet_100", {}, 32, 16 + 1 + 2),  # 16 inverted residuals + the final conv
    ("repvgg_a0", {}, 32, 2 + 4 + 14 + 1 + 2),
    ("gcvit_xxtiny", dict(img_size=64), 64, 2 + 2 + 6 + 2 + 2),  # timm: one group per stage
    ("efficientvit_b0", {}, 64, 10 + 2),
    ("rdnet_tiny", {}, 32, 7 + 2),
    ("starnet_s1", {}, 32, (1 + 2) + (1 + 2) + (1 + 8) + (1 + 3) + 2),  # a downsample + blocks per stage
    ("mobilevit_xxs", {}, 64, 10 + 2),
    ("mobilenetv5_base", {}, 64, 39 + 2),
    ("inception_next_atto", {}, 32, 2 + 2 + 6 + 2 + 2),
    ("hgnetv2_b0", {}, 32, 5 + 2),
    ("fasternet_t0", {}, 32, 1 + 2 + 8 + 2 + 2),
    ("shvit_s1", {}, 64, 11 + 2),
    ("lcnet_050", {}, 32, 13 + 2),
]


@pytest.mark.parametrize("name, kwargs, size, num_ids", TINY, ids=[t[0] for t in TINY])
def test_tiny_models_follow_the_forward_pass(name, kwargs, size, num_ids):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    layer_map = resolve_layer_map(model)
    ids = layer_ids(model)
    run = images(size)
    order = first_use_order(model, run)
    assert order_violations(order, ids, exempt=tokens_at_stem) == []
    assert ids[order[0]] == 0  # the stem runs first
    head = timm_adapter.classifier_names(model)
    assert head and {ids[n] for n in head} == {layer_map.num_layers - 1} == {max(ids.values())}
    assert len(set(ids.values())) == layer_map.num_layers == num_ids
    if callable(getattr(model, "group_matcher", None)):
        assert num_ids >= timm_groups(model)
    if name != "coat_lite_tiny":  # CoaT's root module holds the tokens of all four stages: hooks cannot time them
        assert_forward_monotone(model, ids, run)


# --- the rules -------------------------------------------------------------------------------


def test_vit_is_the_beit_recipe_except_where_timm_puts_the_final_norm():
    vit = meta("vit_base_patch16_224")
    ids = layer_ids(vit)
    beit = {name: get_num_layer_for_vit(name, 14) for name in ids}
    assert {n for n in ids if ids[n] != beit[n]} == {"norm.weight", "norm.bias"}
    assert ids["norm.weight"] == 12 and beit["norm.weight"] == 13  # timm's matcher: the final norm joins block 11
    assert ids["cls_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["head.weight"] == 13


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "convnext_tiny", "resnet50", "efficientnet_b0", "poolformer_s12", "coatnet_0_rw_224"])
def test_a_model_without_classifier_keeps_the_frame_and_the_other_ids(name):
    with_head = resolve_layer_map(meta(name))
    headless = resolve_layer_map(meta(name, num_classes=0))
    assert headless.num_layers == with_head.num_layers
    assert dict(headless.ids) == {n: i for n, i in with_head.ids.items() if n in headless.ids}
    assert len(headless.ids) < len(with_head.ids)  # the classifier is gone, nothing else moved


def test_unmatched_parameters_are_placed_where_they_run():
    convnext = resolve_layer_map(meta("convnext_tiny"))  # 3 + 3 + 9 + 3 blocks
    assert convnext.ids["head.norm.weight"] == convnext.ids["head.fc.weight"] == 19 == convnext.num_layers - 1
    rope = layer_ids(meta("vit_base_patch16_rope_mixed_224"))
    assert rope["rope.freqs"] == 0  # used right after the patch embedding
    clip = layer_ids(meta("resnet50_clip"))  # an attention-pool head with its own position embedding
    assert clip["head.pos_embed"] == clip["head.q.weight"] == clip["head.proj.weight"] == max(clip.values())
    gap = layer_ids(meta("vit_small_patch16_224", global_pool="avg"))
    assert gap["fc_norm.weight"] == gap["head.weight"] == 13
    if "efficientvim_m1" in timm.list_models():  # timm >= 1.0.22
        vim = resolve_layer_map(meta("efficientvim_m1"))  # a parameter of the root module, used by the heads
        assert vim.ids["weights"] == vim.num_layers - 1
        assert any("'weights' -> head" in note for note in vim.notes)


def test_coat_shared_position_encodings_take_the_id_of_the_first_block_using_them():
    model = timm.create_model("coat_lite_tiny", pretrained=False, num_classes=5, img_size=32).eval()
    ids = layer_ids(model)
    assert ids["crpe1.conv_list.0.weight"] == ids["cpe1.proj.weight"] == ids["serial_blocks1.0.norm1.weight"] == 1
    assert ids["crpe4.conv_list.2.weight"] == ids["serial_blocks4.0.norm1.weight"] == 10
    assert ids["patch_embed2.proj.weight"] == ids["cls_token2"] == 3  # stage 2's stem, after stage 1's blocks
    order = first_use_order(model, images(32))
    timm_ids = timm_layer_map(model)
    assert timm_ids["crpe1.conv_list.0.weight"] == 0  # timm files the shared modules under the stems ...
    assert any("crpe1" in v for v in order_violations(order, timm_ids))  # ... but they first run in the blocks
    assert order_violations(order, ids) == []


def test_stage_groups_of_timm_are_split_into_blocks():
    model = meta("pvt_v2_b2")  # depths 3, 4, 6, 3; timm's matcher has one group per stage
    ids = layer_ids(model)
    assert timm_groups(model) == 4 + 2
    assert len(set(ids.values())) == 3 + 4 + 6 + 3 + 2
    assert ids["stages.1.downsample.proj.weight"] == ids["stages.1.blocks.0.norm1.weight"] == 4
    assert ids["stages.1.blocks.3.mlp.fc2.weight"] == ids["stages.1.norm.weight"] == 7
    assert any("whole stages" in note for note in resolve_layer_map(model).notes)
    hybrid = layer_ids(meta("vit_base_r50_s16_224"))  # the patch embedding is a ResNet: still the stem
    assert hybrid["patch_embed.backbone.stages.2.blocks.8.conv3.weight"] == hybrid["cls_token"] == 0
    assert len(set(hybrid.values())) == 12 + 1  # built without classifier: 12 blocks, the stem, the empty head slot


def test_cait_class_attention_blocks_follow_the_blocks():
    model = meta("cait_s24_224")  # 24 blocks, then 2 class-attention blocks
    timm_ids = timm.models.group_parameters(model, model.group_matcher(), reverse=True)
    assert timm_ids["blocks_token_only.0.attn.q.weight"] == timm_ids["blocks.22.attn.qkv.weight"] == 23
    ids = layer_ids(model)
    assert ids["blocks.23.attn.qkv.weight"] == 24
    assert ids["blocks_token_only.0.attn.q.weight"] == 25 and ids["blocks_token_only.1.attn.q.weight"] == 26
    assert ids["cls_token"] == 0 and ids["head.weight"] == 27


@pytest.mark.parametrize("name, num_ids", [("poolformer_s12", 2 + 2 + 6 + 2 + 2), ("pit_s_224", 2 + 6 + 4 + 2), ("mobilenetv5_300m_enc", None)])
def test_models_without_group_matcher_get_the_module_structure(name, num_ids):
    model = meta(name)
    assert not hasattr(model, "group_matcher")
    layer_map = resolve_layer_map(model)
    assert any("has no group_matcher()" in note for note in layer_map.notes)
    assert all(layer_map.ids[n] == layer_map.num_layers - 1 for n in timm_adapter.classifier_names(model))
    if num_ids is not None:
        assert len(set(layer_map.ids.values())) == layer_map.num_layers == num_ids
    assert layer_map.num_layers > 12  # never timm's chunks of 12 tensors


@pytest.mark.parametrize(
    "name, num_ids",
    [
        ("resnet50", 4 + 2),
        ("convnext_tiny", 4 + 2),
        ("swin_tiny_patch4_window7_224", 4 + 2),
        ("efficientnet_b0", 7 + 2),
        ("pvt_v2_b2", 4 + 2),  # no split into blocks at stage granularity
        ("vit_small_patch16_224", 12 + 2),  # no stages: unchanged
        ("rdnet_tiny", None),  # group_matcher(coarse=True) is not implemented: block groups, and a note
    ],
)
def test_stage_granularity(name, num_ids):
    model = meta(name)
    stages = resolve_layer_map(model, AutoStrategy(granularity="stage"))
    blocks = resolve_layer_map(model)
    if num_ids is None:
        assert any("coarse=True" in note for note in stages.notes)
        assert stages.num_layers == blocks.num_layers
        return
    assert stages.num_layers == len(set(stages.ids.values())) == num_ids
    assert blocks.num_layers >= stages.num_layers
    head = timm_adapter.classifier_names(model)
    assert {stages.ids[n] for n in head} == {num_ids - 1}


def test_official_recipes_reproduced_on_timm_names():
    convnext = meta("convnext_small")  # depths 3-3-27-3: the recipe's 14 ids
    rule = layer_ids(convnext, get_num_layer_for_convnext)
    assert sorted(set(rule.values())) == list(range(14))
    assert rule["stem.0.weight"] == 0 and rule["stages.1.downsample.1.weight"] == rule["stages.1.blocks.2.gamma"] == 2
    assert [rule[f"stages.2.blocks.{b}.conv_dw.weight"] for b in (0, 2, 3, 26)] == [3, 3, 4, 11]
    assert rule["stages.3.downsample.1.weight"] == rule["stages.3.blocks.0.gamma"] == 12
    assert rule["head.norm.weight"] == rule["head.fc.weight"] == 13
    beit = meta("beit_base_patch16_224")  # 12 blocks + 2
    rule = layer_ids(beit, lambda n: get_num_layer_for_vit(n, 14))
    assert sorted(set(rule.values())) == list(range(14)) and rule["blocks.11.gamma_2"] == 12


# --- wrapped models --------------------------------------------------------------------------


def tiny_convnext(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, depths=(1, 1, 2, 1), **kwargs).eval()


def test_data_parallel_and_compile_keep_the_ids():
    model = tiny_convnext(num_classes=3)
    bare = layer_ids(model)
    assert layer_ids(nn.DataParallel(model)) == {"module." + n: i for n, i in bare.items()}
    assert layer_ids(torch.compile(model)) == {"_orig_mod." + n: i for n, i in bare.items()}
    assert layer_ids(nn.DataParallel(torch.compile(model))) == {"module._orig_mod." + n: i for n, i in bare.items()}


class Finetune(nn.Module):
    """A user's model: an input adapter, a timm backbone without classifier, a new head."""

    def __init__(self, backbone, width, compiled=False):
        super().__init__()
        self.adapter = nn.Conv2d(1, 3, 1)
        self.backbone = torch.compile(backbone) if compiled else backbone
        self.head = nn.Sequential(nn.Linear(width, 16), nn.GELU(), nn.Linear(16, 2))
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.head(self.backbone(self.adapter(x))) / self.temperature


@pytest.mark.parametrize("compiled", [False, True])
def test_user_wrapper_keeps_the_backbone_ids_and_its_head_is_the_max(compiled):
    backbone = tiny_convnext(num_classes=0)
    bare = resolve_layer_map(backbone)
    model = Finetune(backbone, 320, compiled).eval()
    assert timm_adapter.applies(model)
    layer_map = resolve_layer_map(model)
    prefix = "backbone._orig_mod." if compiled else "backbone."
    assert {n[len(prefix):]: i for n, i in layer_map.ids.items() if n.startswith(prefix)} == dict(bare.ids)
    assert layer_map.num_layers == bare.num_layers == 7
    assert layer_map.ids["head.2.weight"] == layer_map.ids["head.0.bias"] == layer_map.ids["temperature"] == 6
    assert layer_map.ids["adapter.weight"] == 0
    assert any("'adapter', run before" in note for note in layer_map.notes)
    if not compiled:  # a forward would compile the backbone: slow, and no module hooks inside
        run = lambda m: m(torch.randn(1, 1, 32, 32))  # noqa: E731
        assert order_violations(first_use_order(model, run), layer_map.ids) == []
        # Module hooks time the wrapper's own temperature with the wrapper's first call: leave it out.
        modules_only = {n: i for n, i in layer_map.ids.items() if n != "temperature"}
        assert forward_order_violations(model, modules_only, run) == []


def test_user_wrapper_around_a_features_only_backbone_and_a_neck():
    class Segmenter(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3, 4))
            self.neck = nn.ModuleList(nn.Conv2d(c, 8, 1) for c in (128, 256, 512))
            self.decoder = nn.Conv2d(8, 2, 3, padding=1)

        def forward(self, x):
            feats = [lateral(f) for lateral, f in zip(self.neck, self.encoder(x))]
            return self.decoder(feats[0] + nn.functional.interpolate(feats[-1], size=feats[0].shape[-2:]))

    model = Segmenter().eval()
    ids = layer_ids(model)
    full = layer_ids(timm.create_model("resnet18", pretrained=False))
    assert {n[len("encoder."):]: i for n, i in ids.items() if n.startswith("encoder.")} == {
        n: i for n, i in full.items() if not n.startswith("fc.")
    }
    assert ids["neck.0.weight"] == ids["decoder.weight"] == full["fc.weight"] == 9
    run = lambda m: m(torch.randn(1, 3, 64, 64))  # noqa: E731
    assert_forward_monotone(model, ids, run)


def test_two_timm_models_or_a_transformers_model_are_left_to_the_structure():
    class TwoTowers(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = tiny_convnext(num_classes=0)
            self.b = tiny_convnext(num_classes=0)

    assert not timm_adapter.applies(TwoTowers())
    assert set(layer_ids(TwoTowers())) == {n for n, _ in TwoTowers().named_parameters()}
    from transformers import BertConfig, BertModel

    class ImageText(nn.Module):
        def __init__(self):
            super().__init__()
            self.vision = tiny_convnext(num_classes=0)
            self.text = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, vocab_size=50))

    assert not timm_adapter.applies(ImageText())


def lr_and_weight_decay(model):
    groups = auto_layer_decay(model, lr=1e-3, layer_decay=0.75, weight_decay=0.05)
    return {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}


@pytest.mark.parametrize("arch", ["vit_small_patch16_224", "convnext_tiny"])
def test_transformers_timm_wrappers_get_their_timm_models_ids_lr_and_weight_decay(arch):
    # What AutoModel(ForImageClassification) loads for a timm/... checkpoint: the timm model is
    # held in `timm_model` by a transformers class. Before, the transformers adapter numbered it
    # by its structure: ViT's pos_embed and cls_token took the head's lr, with weight decay.
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperModel

    config = TimmWrapperConfig(architecture=arch, num_labels=3)
    for wrapper_class, num_classes in ((TimmWrapperForImageClassification, 3), (TimmWrapperModel, 0)):
        with torch.device("meta"):
            wrapper = wrapper_class(config)
        bare = meta(arch, num_classes=num_classes)
        assert timm_adapter.applies(wrapper)
        assert layer_ids(wrapper) == {"timm_model." + n: i for n, i in layer_ids(bare).items()}
        assert lr_and_weight_decay(wrapper) == {"timm_model." + n: s for n, s in lr_and_weight_decay(bare).items()}
    if arch.startswith("vit"):  # 14 ids: the tokens at 0, the head at 13
        settings = lr_and_weight_decay(wrapper)
        assert settings["timm_model.pos_embed"] == settings["timm_model.cls_token"] == (pytest.approx(1e-3 * 0.75**13), 0.0)
        assert settings["timm_model.blocks.11.mlp.fc1.weight"] == (pytest.approx(1e-3 * 0.75), 0.05)


def test_transformers_modules_beside_a_timm_model_leave_it_to_the_transformers_adapter():
    from transformers import DetrConfig, DetrForObjectDetection
    from transformers.activations import GELUActivation

    config = DetrConfig(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, d_model=16, encoder_layers=1,
        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
        decoder_ffn_dim=16, num_queries=4,
    )
    with torch.device("meta"):
        detr = DetrForObjectDetection(config)  # a timm backbone inside a transformers encoder-decoder
    assert any(type(m).__module__.startswith("timm.") for m in detr.modules())
    assert not timm_adapter.applies(detr)
    # a transformers module without parameters (an activation) is no transformers model
    with_activation = nn.Sequential(tiny_convnext(num_classes=0), GELUActivation(), nn.Linear(320, 3))
    assert timm_adapter.applies(with_activation)
    assert layer_ids(with_activation)["2.weight"] == max(layer_ids(tiny_convnext(num_classes=3)).values())


def test_a_user_wrapper_keeps_what_its_timm_model_lists_in_no_weight_decay():
    # Swin-V2 lists its continuous position bias MLPs and logit scales; a user's wrapper has no
    # no_weight_decay() of its own, so the timm model's list is read through it.
    bare = meta("swinv2_tiny_window8_256", num_classes=0)
    wrapper = nn.Sequential(meta("swinv2_tiny_window8_256", num_classes=0), nn.Linear(768, 3))
    inner = {n.removeprefix("0."): s for n, s in lr_and_weight_decay(wrapper).items() if n.startswith("0.")}
    assert inner == lr_and_weight_decay(bare)
    # timm < 1.0.31 lists the cpb_mlp modules only (through named_modules()), not the logit scales
    scales_listed = any(entry.endswith("logit_scale") for entry in bare.no_weight_decay())
    assert inner["layers.0.blocks.0.attn.cpb_mlp.0.weight"][1] == 0.0
    assert inner["layers.0.blocks.0.attn.logit_scale"][1] == (0.0 if scales_listed else 0.05)
    assert inner["layers.0.blocks.0.attn.qkv.weight"][1] == 0.05
    ends = ("cpb_mlp.0.weight", "cpb_mlp.2.weight") + (("logit_scale",) if scales_listed else ())
    assert sum(wd == 0.0 and n.endswith(ends) for n, (_, wd) in inner.items()) == 12 * len(ends)


def test_a_users_subclass_of_a_timm_model_is_a_timm_model():
    class MyViT(timm.models.vision_transformer.VisionTransformer):
        pass

    with torch.device("meta"):
        mine = MyViT(depth=3, embed_dim=48, num_heads=3, num_classes=4)
    assert timm_adapter.applies(mine)
    assert layer_ids(mine)["blocks.2.mlp.fc2.weight"] == 3 and layer_ids(mine)["head.weight"] == 4


@pytest.mark.parametrize(
    "name, kwargs, pairs",
    [
        ("resnet50", {}, [("layer3.2.conv1.weight", "layer3.2.conv1.weight")]),
        ("resnet50", dict(feature_cls="hook"), [("body.layer4.0.conv2.weight", "layer4.0.conv2.weight")]),
        ("convnext_tiny", dict(out_indices=(1, 2)), [("stages_2.blocks.3.conv_dw.weight", "stages.2.blocks.3.conv_dw.weight")]),
        ("vit_small_patch16_224", {}, [("model.blocks.5.attn.qkv.weight", "blocks.5.attn.qkv.weight"), ("model.cls_token", "cls_token")]),
        ("efficientnet_b0", {}, [("blocks.5.1.conv_pw.weight", "blocks.5.1.conv_pw.weight")]),
        ("regnety_002", dict(feature_cls="fx"), [("graph_module.s3.b2.conv2.conv.weight", "s3.b2.conv2.conv.weight")]),
    ],
)
def test_features_only_models_keep_the_ids_of_the_full_model(name, kwargs, pairs):
    features = meta(name, features_only=True, **kwargs)
    full = resolve_layer_map(meta(name))
    layer_map = resolve_layer_map(features)
    assert layer_map.num_layers == full.num_layers
    for feature_name, full_name in pairs:
        assert layer_map.ids[feature_name] == full.ids[full_name]
    assert any(f"features of {name!r}" in note for note in layer_map.notes)


def test_features_only_of_another_depth_uses_its_structure():
    features = meta("resnet50", features_only=True, layers=(2, 2, 2, 2))  # not the default resnet50
    layer_map = resolve_layer_map(features)
    assert layer_map.num_layers == 8 + 2
    assert any("not those of a default 'resnet50'" in note for note in layer_map.notes)
    small = timm.create_model("resnet18", pretrained=False, features_only=True).eval()
    assert_forward_monotone(small, layer_ids(small), images(32))


def test_a_matcher_that_fails_or_matches_nothing_falls_back_to_the_structure(caplog):
    class NoMatch(timm.models.vision_transformer.VisionTransformer):
        def group_matcher(self, coarse=False):
            return dict(stem=r"^nothing")

    class Broken(timm.models.vision_transformer.VisionTransformer):
        def group_matcher(self, coarse=False):
            raise RuntimeError("not for this build")

    with torch.device("meta"):
        models = [cls(depth=3, embed_dim=48, num_heads=3, num_classes=4) for cls in (NoMatch, Broken)]
    with caplog.at_level("WARNING"):
        maps = [resolve_layer_map(m) for m in models]
    assert any("matches none of its parameters" in note for note in maps[0].notes)
    assert any("group_matcher() failed (not for this build)" in note for note in maps[1].notes)
    assert "Broken.group_matcher() failed" in caplog.text
    for layer_map in maps:
        assert layer_map.num_layers == 3 + 2 and layer_map.ids["head.weight"] == 4


def test_applies_does_not_import_timm_for_other_models():
    code = (
        "import sys, torch; from hf_timm_layerdecay import layer_ids; from hf_timm_layerdecay.adapters import timm as t; "
        "m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)); "
        "print(t.applies(m), len(layer_ids(m)), 'timm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "4", "False"], done.stderr


# --- weight decay ----------------------------------------------------------------------------


def test_position_tables_and_tokens_the_model_does_not_list_get_no_weight_decay():
    sam = meta("samvit_base_patch16")  # lists only pos_embed (and a dist_token it does not have)
    names = timm_adapter.no_weight_decay_names(sam)
    assert "blocks.0.attn.rel_pos_h" in names and "blocks.11.attn.rel_pos_w" in names and "pos_embed" in names
    assert len(names) == 12 * 2 + 1
    botnet = timm_adapter.no_weight_decay_names(meta("botnet26t_256"))  # no no_weight_decay() at all
    assert botnet == {f"stages.{s}.self_attn.pos_embed.{a}_rel" for s in ("2.1", "3.0", "3.1") for a in ("height", "width")}
    assert timm_adapter.no_weight_decay_names(meta("resnet50_clip")) == {"head.pos_embed"}
    assert timm_adapter.no_weight_decay_names(meta("vit_small_patch16_224", reg_tokens=4)) == {"cls_token", "reg_token", "pos_embed"}
    assert timm_adapter.no_weight_decay_names(meta("vit_base_patch16_rope_mixed_224")) == {"cls_token", "rope.freqs"}
    convit = timm_adapter.no_weight_decay_names(meta("convit_tiny"))  # pos_proj is a Linear layer: decayed
    assert convit == {"cls_token", "pos_embed"} and not any("pos_proj" in n for n in convit)
    mixer = meta("resmlp_12_224")
    assert timm_adapter.no_weight_decay_names(mixer) == set()  # linear_tokens is a token-mixing layer


def test_no_weight_decay_names_work_as_an_explicit_no_weight_decay_list():
    model = meta("samvit_base_patch16")
    groups = auto_layer_decay(model, lr=1e-3, no_weight_decay=sorted(timm_adapter.no_weight_decay_names(model)))
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert wd["blocks.3.attn.rel_pos_h"] == wd["pos_embed"] == 0.0
    assert wd["blocks.3.attn.qkv.weight"] == 0.05


def test_position_tables_missing_from_no_weight_decay_are_not_decayed():
    """SAM's ViT does not list its relative-position tables in no_weight_decay()."""
    model = meta("samvit_base_patch16")
    assert not any("rel_pos" in n for n in model.no_weight_decay())
    wd = {n: g["weight_decay"] for g in auto_layer_decay(model, lr=1e-3) for n in g["param_names"]}
    assert wd["blocks.0.attn.rel_pos_h"] == wd["blocks.0.attn.rel_pos_w"] == 0.0
    assert wd["blocks.0.attn.qkv.weight"] == 0.05
    off = {n: g["weight_decay"] for g in auto_layer_decay(model, lr=1e-3, model_no_weight_decay=False) for n in g["param_names"]}
    assert off["blocks.0.attn.rel_pos_h"] == 0.05
