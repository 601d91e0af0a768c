"""Per-channel losses on hand-made tensors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from livecell_seg.training.config import LossConfig  # noqa: E402
from livecell_seg.training.losses import SegLoss, soft_dice_loss, tversky_loss  # noqa: E402


def _targets(head: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    fg = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    if head == "fg":
        return fg
    if head == "fg+boundary":
        b = fg * (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float()
        return torch.cat([fg, b], 1)
    d1 = torch.rand(2, 1, 16, 16, generator=g) * 0.98 + 0.01
    d2 = torch.rand(2, 1, 16, 16, generator=g) * 0.98 + 0.01
    return torch.cat([fg, torch.where(fg > 0, d1, 1.0), torch.where(fg > 0, d2, 1.0)], 1)


def _perfect_logits(t: torch.Tensor, head: str) -> torch.Tensor:
    logits = (t * 2 - 1) * 30.0  # binary channels: saturated and right
    if head == "fg+dist":  # distance channels: exactly the target inside cells, garbage outside
        soft = torch.logit(t[:, 1:].clamp(1e-4, 1 - 1e-4))
        logits[:, 1:] = torch.where(t[:, :1] > 0, soft, torch.full_like(soft, -7.0))
    return logits


@pytest.mark.parametrize("head", ["fg", "fg+boundary", "fg+dist"])
@pytest.mark.parametrize("kind", ["bce_dice", "focal_dice", "bce_tversky"])
def test_perfect_prediction_scores_about_zero_and_wrong_scores_high(head, kind):
    t = _targets(head)
    loss = SegLoss(head, LossConfig(kind=kind))
    good, parts = loss(_perfect_logits(t, head), t)
    assert set(parts) == set(
        {"fg": ["fg"], "fg+boundary": ["fg", "boundary"]}.get(head, ["fg", "center_dist", "boundary_dist"])
    )
    assert torch.isfinite(good) and float(good) < 1e-2
    bad, _ = loss(-_perfect_logits(t, head), t)
    assert float(bad) > 1.0


@pytest.mark.parametrize("dist_loss", ["bce", "mse"])
def test_distance_channels_are_masked_by_foreground(dist_loss):
    t = _targets("fg+dist")
    loss = SegLoss("fg+dist", LossConfig(dist_loss=dist_loss))
    logits = _perfect_logits(t, "fg+dist")
    base, parts = loss(logits, t)
    outside = logits.clone()
    outside[:, 1:] = torch.where(t[:, :1] > 0, outside[:, 1:], torch.randn_like(outside[:, 1:]) * 5)
    same, parts2 = loss(outside, t)
    assert float(same) == pytest.approx(float(base), abs=1e-6)
    inside = logits.clone()
    inside[:, 2] = torch.where(t[:, 0] > 0, -inside[:, 2], inside[:, 2])
    worse, parts3 = loss(inside, t)
    assert float(parts3["boundary_dist"]) > float(parts["boundary_dist"]) + 0.05
    assert float(parts3["center_dist"]) == pytest.approx(float(parts["center_dist"]), abs=1e-6)


def test_channel_weights_and_errors():
    t = _targets("fg+boundary")
    logits = _perfect_logits(t, "fg+boundary")
    logits[:, 1] = -logits[:, 1]  # boundary channel wrong
    full, _ = SegLoss("fg+boundary")(logits, t)
    no_b, _ = SegLoss("fg+boundary", LossConfig(channel_weights={"boundary": 0.0}))(logits, t)
    assert float(full) > 1.0 and float(no_b) < 1e-2
    with pytest.raises(ValueError, match="not in head"):
        SegLoss("fg", LossConfig(channel_weights={"boundary": 1.0}))
    with pytest.raises(ValueError, match="differ"):
        SegLoss("fg")(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_dice_and_tversky_values():
    p = torch.tensor([1.0, 1.0, 0.0, 0.0])
    t = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # one TP, one FP, one FN: Dice = 2/4; Tversky(0.3, 0.7) = 1 / (1 + 0.3 + 0.7)
    assert float(soft_dice_loss(p, t, smooth=0.0)) == pytest.approx(0.5)
    assert float(tversky_loss(p, t, 0.3, 0.7, smooth=0.0)) == pytest.approx(0.5)
    assert float(tversky_loss(p, t, 0.1, 0.9, smooth=0.0)) == pytest.approx(0.5)
    fn_heavy = torch.tensor([1.0, 0.0, 0.0, 0.0])  # TP 1, FN 1, FP 0
    assert float(
        tversky_loss(fn_heavy, t[:] * 0 + torch.tensor([1.0, 1.0, 0, 0]), 0.3, 0.7, smooth=0.0)
    ) == pytest.approx(1 - 1 / 1.7)
