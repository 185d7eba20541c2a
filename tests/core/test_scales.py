"""core/scales.py: the three forms of ``layer_decay`` (float, per-layer sequence, callable), the
floor, depth normalization, decays above one, and the checks made before any model is seen."""

import numpy as np
import pytest
import torch

from hf_timm_layerdecay.core.scales import LayerDecayError, check_decay_options, is_decay_off, layer_scales


def test_a_float_decay_is_geometric_from_the_head_down():
    assert layer_scales(4, 0.5) == [0.125, 0.25, 0.5, 1.0]
    assert layer_scales(1, 0.5) == [1.0]  # the head alone
    assert layer_scales(3, 1.0) == [1.0, 1.0, 1.0]


def test_zero_d_tensors_and_numpy_scalars_are_read_as_their_values():
    assert layer_scales(3, torch.tensor(0.5)) == layer_scales(3, np.float64(0.5)) == [0.25, 0.5, 1.0]
    assert layer_scales(3, 0.5, min_scale=torch.tensor(0.375)) == [0.375, 0.5, 1.0]


@pytest.mark.parametrize("values", [[0.1, 0.5, 1.0], (0.1, 0.5, 1.0), np.array([0.1, 0.5, 1.0]), iter([0.1, 0.5, 1.0])])
def test_a_sequence_gives_layer_i_values_i(values):
    assert layer_scales(3, values) == [0.1, 0.5, 1.0]


def test_a_sequence_of_another_length_is_refused_with_what_using_it_would_give():
    with pytest.raises(LayerDecayError, match=r"has 2 values but the model has 3 layer ids \(0..2\).*Print layer_ids"):
        layer_scales(3, [0.5, 1.0])
    with pytest.raises(LayerDecayError, match=r"head values\[2\]=0.9, not the 1.0 written last"):
        layer_scales(3, [0.5, 0.7, 0.9, 1.0])
    with pytest.raises(LayerDecayError, match=r"layer_decay\[1\] = 0.0; every scale must be a finite number > 0"):
        layer_scales(3, [0.5, 0.0, 1.0])


def test_a_callable_is_asked_for_every_id():
    asked = []
    assert layer_scales(3, lambda i: asked.append(i) or 1 / (3 - i)) == [1 / 3, 0.5, 1.0]
    assert asked == [0, 1, 2]
    with pytest.raises(LayerDecayError, match=r"layer_decay\(0\) raised ZeroDivisionError"):
        layer_scales(3, lambda i: 1 / i)
    with pytest.raises(LayerDecayError, match=r"layer_decay\(2\) = nan"):
        layer_scales(3, lambda i: float("nan") if i == 2 else 1.0)


def test_the_floor_applies_to_every_form():
    assert layer_scales(4, 0.5, min_scale=0.3) == [0.3, 0.3, 0.5, 1.0]
    assert layer_scales(3, [0.1, 0.5, 1.0], min_scale=0.2) == [0.2, 0.5, 1.0]
    assert layer_scales(3, lambda i: 0.1 * (i + 1), min_scale=0.25) == pytest.approx([0.25, 0.25, 0.3])
    with pytest.raises(LayerDecayError, match="min_scale=1.5 is above 1"):
        layer_scales(3, 0.5, min_scale=1.5)
    with pytest.raises(LayerDecayError, match="min_scale must be a finite number >= 0"):
        layer_scales(3, 0.5, min_scale=-0.1)


def test_depth_normalization_gives_every_depth_the_same_stem_scale():
    for depth in (2, 14, 52):
        scales = layer_scales(depth, 0.75, normalize_depth=13)
        assert scales[0] == pytest.approx(0.75**13) and scales[-1] == 1.0
    assert layer_scales(3, 0.5, normalize_depth=4) == [0.0625, 0.25, 1.0]
    assert layer_scales(1, 0.5, normalize_depth=4) == [1.0]
    with pytest.raises(LayerDecayError, match="normalize_depth applies to a float layer_decay only"):
        layer_scales(3, [0.5, 0.7, 1.0], normalize_depth=4)
    with pytest.raises(LayerDecayError, match="normalize_depth must be a number > 0, got 0"):
        layer_scales(3, 0.5, normalize_depth=0)


def test_a_decay_above_one_needs_the_opt_in():
    with pytest.raises(LayerDecayError, match="layer_decay=2.0 is above 1"):
        layer_scales(3, 2.0)
    assert layer_scales(3, 2.0, allow_decay_above_one=True) == [4.0, 2.0, 1.0]


@pytest.mark.parametrize("num_layers", [0, -1, True, 2.0, "3"])
def test_the_frame_must_be_a_positive_int(num_layers):
    with pytest.raises(LayerDecayError, match="num_layers must be a positive int"):
        layer_scales(num_layers, 0.5)


@pytest.mark.parametrize("layer_decay, message", [
    ({0: 0.5, 1: 1.0}, r"layer_decay is a mapping \(dict with keys \[0, 1\]\)"),
    ("0.5", "must be a float, a sequence of per-layer scales or a callable, got '0.5'"),
    ({0.5, 1.0}, "must be a float, a sequence"),
    (0.0, "layer_decay must be > 0"),
    (float("inf"), "layer_decay must be > 0"),
])
def test_forms_that_are_no_scales_are_refused(layer_decay, message):
    with pytest.raises(LayerDecayError, match=message):
        layer_scales(3, layer_decay)


def test_what_turns_the_decay_off():
    assert all(is_decay_off(v) for v in (None, 1.0, 1, torch.tensor(1.0), np.float32(1.0)))
    assert not any(is_decay_off(v) for v in (0.9, [1.0, 1.0], lambda i: 1.0, True))


def test_options_are_checked_before_any_model_without_using_up_an_iterator():
    check_decay_options(0.8, min_scale=0.1, normalize_depth=12)
    check_decay_options([0.5, 1.0, 1.0])  # any length: the model's frame decides later
    check_decay_options(lambda i: 1.0)
    values = iter([0.5, 1.0])
    check_decay_options(values)
    assert list(values) == [0.5, 1.0]  # still there for the groups
    with pytest.raises(LayerDecayError, match="min_scale=2 is above 1"):
        check_decay_options(None, min_scale=2)
    with pytest.raises(LayerDecayError, match=r"layer_decay\[1\] = -1"):
        check_decay_options([1.0, -1])
