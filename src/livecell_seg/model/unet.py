"""Our U-Net as a self-contained PyTorch module: this file imports nothing but torch.

It is the network that :func:`livecell_seg.model.folder.build_model` builds for ``arch: unet``, and it is
also the *architecture source* of the BioImage Model Zoo package written by
``livecell-seg export --format bioimageio``: the file is copied into the package unchanged and
bioimage.io tools build the network from it (``UNet(**kwargs)``) before loading the state dict.
So keep it standalone: no imports from livecell_seg, no relative imports.
"""

from __future__ import annotations

import torch
from torch import nn


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad ``(..., H, W)`` at the bottom and right to multiples of ``m`` (the network's stride).

    Reflect padding, or replicate when the image is smaller than the padding. The one copy of this
    rule for torch (the U-Net's forward and training's whole-image validation use it).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x


def norm_layer(kind: str, ch: int) -> nn.Module:
    """A normalization layer: ``batch``, ``instance`` (affine) or ``group`` (up to 8 groups)."""
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    raise ValueError(f"unknown norm {kind!r} (choose batch, instance or group)")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalization and ReLU (optional dropout)."""

    def __init__(self, cin: int, cout: int, norm: str, dropout: float) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            norm_layer(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            norm_layer(norm, cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """Plain U-Net: ``depth`` down-sampling levels, features doubling per level, bilinear upsampling.

    Input ``(N, in_channels, H, W)`` of any size (reflect-padded to a multiple of ``2**depth``
    and cropped back); output ``(N, out_channels, H, W)`` logits, or probabilities with
    ``final_activation="sigmoid"`` (what the exported packages use).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        base_features: int = 16,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.0,
        final_activation: str | None = None,
    ) -> None:
        super().__init__()
        if final_activation not in (None, "sigmoid"):
            raise ValueError(f"final_activation must be None or 'sigmoid', got {final_activation!r}")
        f = [base_features * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.final_activation = final_activation
        self.enc = nn.ModuleList([ConvBlock(in_channels, f[0], norm, 0.0)])
        for i in range(1, depth + 1):
            self.enc.append(ConvBlock(f[i - 1], f[i], norm, dropout if i == depth else 0.0))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth, 0, -1):
            self.up.append(nn.Conv2d(f[i], f[i - 1], 1))
            self.dec.append(ConvBlock(2 * f[i - 1], f[i - 1], norm, 0.0))
        self.out = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2**self.depth)  # any input size: padded to the stride, cropped back
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            x = nn.functional.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        y = self.out(x)[..., :h, :w]
        return torch.sigmoid(y) if self.final_activation == "sigmoid" else y
