"""Bad inputs: models whose modules are registered in another order than they run.

Layer ids follow the order ``forward`` calls the modules (read from its source), not the order of
registration; each case also checks the ids against a real forward pass
(:func:`hf_timm_layerdecay.verify.first_use_order`). ``nn.Sequential``, whose order is its
registration, is the control.
"""

import pytest
import torch
from torch import nn

from bad_cases import Case, ids_of, result, run_case, set_workdir
from hf_timm_layerdecay import auto_layer_decay, layer_ids
from hf_timm_layerdecay.verify import first_use_order, order_violations

AREA = "Layer ids: modules registered in another order than they run"


class Block(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


class HeadFirst(nn.Module):
    """A new head registered before the timm backbone it runs after."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.classifier = nn.Linear(192, 5)
        self.backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)

    def forward(self, x):
        return self.classifier(self.backbone(x))


class StemAfter(nn.Module):
    """The stem registered after the blocks and the head."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(8, 2)
        self.stem = nn.Linear(4, 8)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class DecoderFirst(nn.Module):
    """An encoder-decoder whose decoder list is registered before the encoder list."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = nn.ModuleList(Block() for _ in range(2))
        self.encoder = nn.ModuleList(Block() for _ in range(2))
        self.embed = nn.Embedding(10, 8)
        self.out = nn.Linear(8, 10)

    def forward(self, tokens):
        h = self.embed(tokens)
        for block in self.encoder:
            h = block(h)
        for block in self.decoder:
            h = block(h)
        return self.out(h)


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.norm, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.norm(self.conv1(x))))


class UNet(nn.Module):
    """A U-Net with skip connections, its decoder (`ups`) registered first."""

    def __init__(self, widths=(4, 8, 16)) -> None:
        super().__init__()
        self.ups, self.downs = nn.ModuleList(), nn.ModuleList()
        cin = 3
        for width in widths:
            self.downs.append(DoubleConv(cin, width))
            cin = width
        for width in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(width * 2, width, 2, 2))
            self.ups.append(DoubleConv(width * 2, width))
        self.bottleneck = DoubleConv(widths[-1], widths[-1] * 2)
        self.final = nn.Conv2d(widths[0], 2, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for k in range(0, len(self.ups), 2):
            x = self.ups[k](x)
            x = self.ups[k + 1](torch.cat([skips[-1 - k // 2], x], 1))
        return self.final(x)


class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class TwoTower(nn.Module):
    """Two towers and a projection registered before them."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 3)
        self.text = Tower()
        self.image = Tower()

    def forward(self, x):
        return self.proj(torch.cat([self.image(x), self.text(x)], -1))


def _runs_in_order(model_fn, run, first: str, last: str, lowest: int, highest: int):
    """The ids never go down along a real forward pass; ``first`` has id ``lowest``, ``last`` ``highest``."""

    def check(ids):
        model = model_fn()
        order = first_use_order(model, run)
        assert order_violations(order, ids) == []
        assert (ids[first], ids[last]) == (lowest, highest), (ids[first], ids[last])
        assert max(ids.values()) == highest and min(ids.values()) == lowest

    return check


def _classifier_lr(expected):
    def check(groups):
        lr = next(g["lr"] for g in groups if "classifier.weight" in g["param_names"])
        assert lr == pytest.approx(expected, rel=1e-12), lr

    return check


def _ids(model_fn):
    return lambda: layer_ids(model_fn())


def _images(size):
    return lambda m: m(torch.zeros(1, 3, size, size))


CASES = [
    Case("order-head-first", "`self.classifier` registered before `self.backbone = timm.create_model(...)`",
         _ids(HeadFirst),
         result("the classifier is the head (13), the backbone keeps its ids (0-12)",
                _runs_in_order(HeadFirst, _images(32), "backbone.patch_embed.proj.weight", "classifier.weight", 0, 13))),
    Case("order-head-first-lr", "the same model in `auto_layer_decay(model, lr=1e-3, layer_decay=0.65)`",
         lambda: auto_layer_decay(HeadFirst(), lr=1e-3, layer_decay=0.65),
         result("the classifier trains at lr 1e-3 (it had 1e-3 x 0.65^13 = 3.7e-6)", _classifier_lr(1e-3))),
    Case("order-stem-after", "the stem registered after the blocks and the head", _ids(StemAfter),
         result("stem 0, blocks 1-3, head 4", _runs_in_order(StemAfter, lambda m: m(torch.zeros(1, 4)), "stem.weight", "head.weight", 0, 4))),
    Case("order-decoder-first", "a decoder list registered before the encoder list", _ids(DecoderFirst),
         result("embedding 0, encoder 1-2, decoder 3-4, output 5",
                _runs_in_order(DecoderFirst, lambda m: m(torch.zeros(1, 3, dtype=torch.long)), "embed.weight", "out.weight", 0, 5))),
    Case("order-unet", "a U-Net with skip connections, its decoder registered first", _ids(UNet),
         result("ids never go down along the forward pass; the final conv is the head",
                _runs_in_order(UNet, _images(16), "downs.0.conv1.weight", "final.weight", 1, 4))),
    Case("order-two-tower", "two towers and a projection registered before them", _ids(TwoTower),
         result("the tower run first is numbered first; the projection is the head",
                _runs_in_order(TwoTower, lambda m: m(torch.zeros(1, 4)), "image.embed.weight", "proj.weight", 0, 5))),
    Case("order-sequential", "`nn.Sequential(Linear, Block, Block, Linear)`",
         _ids(lambda: nn.Sequential(nn.Linear(4, 8), Block(), Block(), nn.Linear(8, 2))),
         result("stem 0, blocks 1-2, head 3",
                _runs_in_order(lambda: nn.Sequential(nn.Linear(4, 8), Block(), Block(), nn.Linear(8, 2)),
                               lambda m: m(torch.zeros(1, 4)), "0.weight", "3.weight", 0, 3))),
]


@pytest.mark.parametrize("case", CASES, ids=ids_of(CASES))
def test_bad_input(case, tmp_path):
    set_workdir(tmp_path)
    run_case(case)
