"""fastai: a real ``Learner`` with our splitter, ``fit_one_cycle`` with per-group ``lr_max`` and
``wd`` arrays; the lr of every group at every step is the one-cycle schedule times its layer scale."""

import numpy as np
import pytest
import timm
import torch

pytest.importorskip("fastai")

import fastai.callback.schedule  # noqa: E402,F401  (patches Learner.fit_one_cycle)
from fastai.callback.core import Callback  # noqa: E402
from fastai.data.core import DataLoaders  # noqa: E402
from fastai.data.load import DataLoader  # noqa: E402
from fastai.learner import Learner  # noqa: E402

from hf_timm_layerdecay.api import resolve_layer_map  # noqa: E402
from hf_timm_layerdecay.integrations.fastai import fastai_layer_decay  # noqa: E402

BASE_LR, DECAY = 1e-3, 0.5


class Hypers(Callback):
    """The lr and wd of every group as each step uses them, and the weights before the first."""

    def before_fit(self):
        self.rows, self.first = [], {n: p.detach().clone() for n, p in self.learn.model.named_parameters()}

    def before_step(self):
        self.rows.append([(h["lr"], h["wd"]) for h in self.opt.hypers])


def learner(model, decay, hypers, **kwargs):
    torch.manual_seed(0)
    images = [(torch.randn(3, 32, 32), torch.tensor(i % 4)) for i in range(32)]
    dls = DataLoaders(DataLoader(images, bs=8, shuffle=False), DataLoader(images[:8], bs=8))
    return Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), splitter=decay.splitter, cbs=[hypers], **kwargs)


def test_fit_one_cycle_keeps_every_groups_lr_at_its_layer_scale():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32, num_classes=4)
    decay = fastai_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, weight_decay=0.05)
    hypers = Hypers()
    learn = learner(model, decay, hypers)
    learn.fit_one_cycle(1, lr_max=decay.lr_max, wd=decay.wd)
    assert len(hypers.rows) == 4 and len(learn.opt.param_lists) == len(decay.groups)
    head = resolve_layer_map(model).num_layers - 1
    scales = np.array([DECAY ** (head - g["layer_id"]) for g in decay.groups])
    for row in hypers.rows:
        lrs = np.array([lr for lr, _ in row])
        top = lrs[[g["layer_id"] == head for g in decay.groups]][0]
        np.testing.assert_allclose(lrs, top * scales, rtol=1e-9)  # one-cycle scales every group together
        assert [wd for _, wd in row] == [g["weight_decay"] for g in decay.groups]
    assert [lr for lr, _ in hypers.rows[0]] != [lr for lr, _ in hypers.rows[-1]]  # the schedule ran
    assert {w for g in decay.groups for w in [g["weight_decay"]]} == {0.0, 0.05}
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, hypers.first[n])}
    assert moved == {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_to_trains_the_top_layers_at_their_lrs():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32, num_classes=4)
    decay = fastai_layer_decay(model, lr=BASE_LR, layer_decay=DECAY, weight_decay=0.0)  # one group per layer
    hypers = Hypers()
    learn = learner(model, decay, hypers, train_bn=False)  # train_bn=True would train the norms of frozen groups
    learn.create_opt()
    learn.freeze_to(-2)  # fastai's own freezing, by group: the head and the last block
    learn.fit(1, lr=decay.lr_max, wd=decay.wd)
    ids = resolve_layer_map(model).ids
    moved = {ids[n] for n, p in model.named_parameters() if not torch.equal(p, hypers.first[n])}
    assert moved == {2, 3}
    assert [lr for lr, _ in hypers.rows[0]] == pytest.approx(list(decay.lr_max))


def test_splitter_refuses_another_model():
    decay = fastai_layer_decay(torch.nn.Linear(2, 2), lr=BASE_LR)
    with pytest.raises(ValueError, match="which is not a parameter of the model fastai splits"):
        decay.splitter(torch.nn.Linear(2, 2))
