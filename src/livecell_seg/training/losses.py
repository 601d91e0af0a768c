"""Per-channel segmentation losses for the U-Net heads (imports torch inside functions).

Binary channels (``fg``, ``boundary``): BCE + soft Dice (default), focal + soft Dice, or
BCE + Tversky. Distance channels (``center_dist``, ``boundary_dist``): regression targets in
[0, 1] defined only inside cells, so their loss is masked by the ground-truth foreground:
soft-target BCE minus the target's own entropy (a perfect prediction scores 0; same gradient as
BCE) or MSE, plus a masked soft Dice with squared denominators (minimal at prediction == target). Each term is averaged over the batch ("batch Dice").
"""

from __future__ import annotations

from typing import Any

from ..model.heads import BINARY_CHANNELS, head_channels
from .config import LossConfig

EPS = 1e-6


def soft_dice_loss(
    prob: Any, target: Any, mask: Any | None = None, smooth: float = 1.0, squared: bool = False
) -> Any:
    """1 − soft Dice of probabilities vs targets (same shape), over all elements (masked if given).

    ``squared`` uses Σp² + Σt² in the denominator (V-Net), whose minimum is at p == t also for
    soft (non-binary) targets; the plain form Σp + Σt is the usual one for binary targets.
    """
    if mask is not None:
        prob, target = prob * mask, target * mask
    inter = (prob * target).sum()
    denom = (prob * prob).sum() + (target * target).sum() if squared else prob.sum() + target.sum()
    return 1.0 - (2.0 * inter + smooth) / (denom + smooth)


def tversky_loss(
    prob: Any,
    target: Any,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    mask: Any | None = None,
) -> Any:
    """1 − Tversky index; ``alpha`` weighs false positives, ``beta`` false negatives (masked if given)."""
    if mask is not None:
        prob, target = prob * mask, target * mask
    tp = (prob * target).sum()
    fp = (prob * (1 - target)).sum()
    fn = ((1 - prob) * target).sum()
    return 1.0 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def _weighted_mean(values: Any, weight: Any | None) -> Any:
    """Mean of ``values``, or their ``weight``-weighted mean."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def focal_loss(
    logits: Any, target: Any, gamma: float = 2.0, alpha: float = 0.25, weight: Any | None = None
) -> Any:
    """Sigmoid focal loss (Lin et al. 2017), mean over elements (``weight``-weighted if given);
    ``alpha < 0`` disables class weighting."""
    import torch.nn.functional as F

    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return _weighted_mean(loss, weight)


def masked_soft_bce(logits: Any, target: Any, mask: Any) -> Any:
    """BCE with soft targets minus the targets' entropy (≥ 0, 0 when sigmoid(logits) == target),
    averaged over the pixels where ``mask`` is 1."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    t = target.clamp(EPS, 1 - EPS)
    entropy = -(t * torch.log(t) + (1 - t) * torch.log(1 - t))
    n = mask.sum()
    return ((bce - entropy).clamp_min(0) * mask).sum() / n.clamp_min(1.0)


def masked_mse(prob: Any, target: Any, mask: Any) -> Any:
    """Mean squared error over the pixels where ``mask`` is 1."""
    return (((prob - target) ** 2) * mask).sum() / mask.sum().clamp_min(1.0)


class SegLoss:
    """Loss for a head: ``loss(logits, targets) -> (total, {channel: value})``.

    ``logits`` and ``targets`` are (N, C, H, W) in the channel order of the head; the optional
    ``weight`` (N, H, W) is a per-pixel loss weight (0 = ignored: unannotated or unconfident
    regions), applied to every channel. The total is the channel-weighted sum. Works as a plain
    callable; holds no parameters.
    """

    def __init__(self, head: str, cfg: LossConfig | None = None) -> None:
        self.head = head
        self.channels = head_channels(head)
        self.cfg = cfg or LossConfig()
        unknown = set(self.cfg.channel_weights) - set(self.channels)
        if unknown:
            raise ValueError(f"loss.channel_weights: channel(s) {sorted(unknown)} not in head {head!r}")

    def _binary(self, logit: Any, target: Any, weight: Any | None = None) -> Any:
        import torch.nn.functional as F

        c = self.cfg
        prob = logit.sigmoid()
        if c.kind == "focal_dice":
            # focal loss values are ~10x smaller than BCE; scale so the terms stay comparable
            first = 10.0 * focal_loss(logit, target, c.focal_gamma, c.focal_alpha, weight)
        else:
            first = _weighted_mean(
                F.binary_cross_entropy_with_logits(logit, target, reduction="none"), weight
            )
        if c.kind == "bce_tversky":
            second = tversky_loss(prob, target, c.tversky_alpha, c.tversky_beta, mask=weight)
        else:
            second = soft_dice_loss(prob, target, mask=weight)
        return c.bce_weight * first + c.dice_weight * second

    def _distance(self, logit: Any, target: Any, mask: Any) -> Any:
        c = self.cfg
        prob = logit.sigmoid()
        if c.dist_loss == "mse":
            first = masked_mse(prob, target, mask)
        else:
            first = masked_soft_bce(logit, target, mask)
        return c.bce_weight * first + c.dice_weight * soft_dice_loss(prob, target, mask, squared=True)

    def __call__(self, logits: Any, targets: Any, weight: Any | None = None) -> tuple[Any, dict[str, Any]]:
        logits = logits.float()
        targets = targets.float()
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        if weight is not None:
            weight = weight.float()
            if weight.shape != logits[:, 0].shape:
                raise ValueError(
                    f"weight {tuple(weight.shape)} must be (N, H, W) = {tuple(logits[:, 0].shape)}"
                )
        if logits.shape[1] != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} channels for head {self.head!r}")
        fg_idx = self.channels.index("fg") if "fg" in self.channels else None
        mask = None
        parts: dict[str, Any] = {}
        total = logits.new_zeros(())
        for i, ch in enumerate(self.channels):
            if ch in BINARY_CHANNELS:
                value = self._binary(logits[:, i], targets[:, i], weight)
            else:
                if mask is None:
                    if fg_idx is None:
                        raise ValueError(f"channel {ch!r} needs an 'fg' channel to mask it")
                    mask = (targets[:, fg_idx] > 0.5).float()
                    if weight is not None:
                        mask = mask * weight
                value = self._distance(logits[:, i], targets[:, i], mask)
            parts[ch] = value
            total = total + self.cfg.channel_weights.get(ch, 1.0) * value
        return total, parts
