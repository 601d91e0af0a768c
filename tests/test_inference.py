"""Tiled sliding-window inference: agreement with whole-image inference, TTA, sizes, devices."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from livecell_seg.inference.tiling import inference_net, predict_maps  # noqa: E402
from livecell_seg.io import normalize_image  # noqa: E402
from livecell_seg.model.folder import LoadedModel, ModelConfig, build_model  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs with one torch thread (conftest)."""


def tiny_model(head: str = "fg+boundary", depth: int = 2, seed: int = 0) -> LoadedModel:
    """A random tiny U-Net in eval mode whose outputs span a wide range (not all ~0.5)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(head=head, base_features=4, depth=depth)
    net = build_model(cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    with torch.no_grad():  # calibrate the last layer: logits ~ N(0, 2^2), probabilities spread over (0, 1)
        x = torch.from_numpy(normalize_image(smooth_image(96, 96, seed=99)))[None, None]
        logits = net(x)[0].flatten(1)
        mean, std = logits.mean(1), logits.std(1).clamp_min(1e-8)
        net.out.weight.div_(std[:, None, None, None] / 2.0)
        net.out.bias.sub_(mean).div_(std / 2.0)
    return LoadedModel(net=net, model_config=cfg)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((h, w)), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 60000).astype(np.uint16)


def test_tiled_agrees_with_whole_image_in_the_interior():
    model = tiny_model()
    img = smooth_image(200, 300)
    whole = predict_maps(model, img, whole=True)
    assert whole.shape == (2, 200, 300) and whole.dtype == np.float32
    assert whole.min() >= 0.0 and whole.max() <= 1.0
    assert whole.std() > 0.05  # the model's output is not flat, so agreement below is meaningful

    tiled = predict_maps(model, img, whole=False, tile=128, overlap=0.5, batch_size=3)
    assert np.abs(tiled - whole).max() < 1e-4  # everywhere, image borders included
    # the default overlap (0.25 = 32 px of context here) is close, too
    tiled = predict_maps(model, img, whole=False, tile=128, overlap=0.25, batch_size=3)
    assert np.abs(tiled - whole).max() < 2e-3

    # control: the same tiles without overlap/blending show visible seams, so the check above can fail
    seams = predict_maps(model, img, whole=False, tile=128, overlap=0.0)
    assert np.abs(seams - whole).max() > 1e-2


BORDER = 12  # width of the strips checked along each image border


@pytest.mark.parametrize("shape", [(203, 301), (129, 250), (250, 137)])
def test_tiled_equals_whole_on_odd_sizes_at_every_border(shape):
    """Sizes off the pooling grid (here 8): the image is padded at the bottom/right in both modes,
    so tiles and the whole-image pass must agree everywhere, each border strip included."""
    model = tiny_model(depth=3)  # stride 8: 203 x 301 needs 5 rows and 3 columns of padding
    img = smooth_image(*shape, seed=11)
    whole = predict_maps(model, img, whole=True)
    assert whole.shape == (2, *shape) and whole.std() > 0.05
    tiled = predict_maps(model, img, whole=False, tile=96, overlap=0.5, batch_size=2)
    diff = np.abs(tiled - whole)
    borders = {
        "top": diff[:, :BORDER],
        "bottom": diff[:, -BORDER:],
        "left": diff[:, :, :BORDER],
        "right": diff[:, :, -BORDER:],
    }
    worst = {k: float(v.max()) for k, v in borders.items()}
    assert max(worst.values()) < 1e-4, worst
    assert float(diff.max()) < 1e-4


def test_padding_to_the_pooling_grid_is_a_reflection():
    """An odd-sized image gives exactly what the network gives on its reflect-padded copy, cropped
    (zero or edge padding would put a frame the network never saw in training at the border)."""
    model = tiny_model(depth=3)
    x = normalize_image(smooth_image(203, 301, seed=12))
    padded = np.pad(x, ((0, 5), (0, 3)), mode="reflect")  # to 208 x 304, multiples of 8
    ref = predict_maps(model, padded, normalized=True, whole=True)[:, :203, :301]
    for whole in (True, False):
        got = predict_maps(model, x, normalized=True, whole=whole, tile=96, overlap=0.5)
        np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=f"whole={whole}")
    zeros = predict_maps(model, np.pad(x, ((0, 5), (0, 3))), normalized=True, whole=True)[:, :203, :301]
    assert np.abs(zeros - ref).max() > 1e-2  # control: the padding matters at this border


def test_tile_batch_size_and_odd_tile_sizes_do_not_change_results():
    model = tiny_model()
    img = smooth_image(150, 170, seed=1)
    a = predict_maps(model, img, whole=False, tile=64, overlap=0.5, batch_size=1)
    b = predict_maps(model, img, whole=False, tile=64, overlap=0.5, batch_size=16)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batched convolutions: float rounding only
    # tile sizes off the pooling grid are rounded to it (66 -> 64): same result
    c = predict_maps(model, img, whole=False, tile=66, overlap=0.5, batch_size=5)
    np.testing.assert_allclose(a, c, atol=1e-5)


@pytest.mark.parametrize("shape", [(37, 53), (1, 9), (5, 300), (130, 70)])
def test_any_size_small_images_run_whole(shape):
    model = tiny_model()
    img = smooth_image(*shape, seed=2) if min(shape) > 1 else np.arange(shape[1], dtype=np.uint8)[None]
    auto = predict_maps(model, img, tile=64)  # small area -> whole-image pass
    assert auto.shape == (2, *shape) and np.isfinite(auto).all()
    np.testing.assert_array_equal(auto, predict_maps(model, img, tile=64, whole=True))
    forced = predict_maps(model, img, tile=64, overlap=0.25, whole=False)
    assert forced.shape == auto.shape and np.isfinite(forced).all()


def test_large_image_is_tiled_by_default():
    model = tiny_model()
    img = smooth_image(300, 310, seed=3)
    auto = predict_maps(model, img, tile=128, whole_max_pixels=0)
    np.testing.assert_array_equal(auto, predict_maps(model, img, tile=128, whole=False))
    assert not np.array_equal(auto, predict_maps(model, img, whole=True))


@pytest.mark.parametrize("tta, n", [(True, 8), ("flips", 4)])
def test_tta_undoes_each_transform(tta, n):
    model = tiny_model()
    img = smooth_image(48, 80, seed=4)  # multiples of the stride: rotations need no extra padding
    got = predict_maps(model, img, tta=tta)
    transforms = [(k, f) for k in range(4) for f in (False, True)]
    if n == 4:
        transforms = [(0, False), (0, True), (2, False), (2, True)]
    acc = np.zeros_like(got)
    for k, flip in transforms:
        t = np.rot90(img[:, ::-1] if flip else img, k)
        y = predict_maps(model, np.ascontiguousarray(t))
        y = np.rot90(y, -k, axes=(1, 2))
        acc += y[:, :, ::-1] if flip else y
    np.testing.assert_allclose(got, acc / n, atol=1e-5)
    # TTA really changes something (the random model is not rotation invariant)
    assert np.abs(got - predict_maps(model, img)).max() > 1e-3


def test_normalization_makes_bit_depth_irrelevant():
    model = tiny_model(head="fg+dist", depth=3)
    img8 = (smooth_image(64, 96, seed=5) // 257).astype(np.uint8)
    a = predict_maps(model, img8)
    b = predict_maps(model, img8.astype(np.uint16) * 257)
    c = predict_maps(model, img8.astype(np.float64) / 255.0)
    assert a.shape == (3, 64, 96)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_bf16_precision_is_close_to_float32():
    model = tiny_model()
    img = smooth_image(48, 64, seed=7)
    fp32 = predict_maps(model, img)  # auto on CPU = float32
    np.testing.assert_array_equal(fp32, predict_maps(model, img, precision="fp32"))
    bf16 = predict_maps(model, img, precision="bf16")
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).mean() < 0.05 and np.abs(bf16 - fp32).max() < 0.3
    assert np.abs(bf16 - fp32).max() > 0  # it really ran in bf16


def test_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="2-D"):
        predict_maps(model, np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="overlap"):
        predict_maps(model, np.zeros((8, 8)), overlap=1.0)
    with pytest.raises(ValueError, match="tta"):
        predict_maps(model, np.zeros((8, 8)), tta="sideways")
    with pytest.raises(ValueError, match="precision"):
        predict_maps(model, np.zeros((8, 8)), precision="fp8")


def test_optimized_copy_matches_and_leaves_the_model_untouched():
    model = tiny_model(depth=3)
    img = smooth_image(64, 80, seed=6)
    model.net.train()  # e.g. called from a training loop's validation step
    fast = predict_maps(model, img)  # folded BatchNorm, channels_last on CPU
    assert model.net.training  # the model itself was not switched to eval mode
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.modules())  # not folded in place
    plain = predict_maps(model, img, optimize=False, channels_last=False)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert fast.flags.c_contiguous and fast.dtype == np.float32
    # the prepared copy is kept on the model and reused while the weights stay the same
    prepared = model._prepared[1]
    assert prepared is not model.net and inference_net(model, "cpu", channels_last=True) is prepared
    # weights changed in place (an optimizer step): the cached prepared copy is rebuilt
    with torch.no_grad():
        model.net.out.bias.add_(5.0)
    moved = predict_maps(model, img)
    assert moved.mean() > fast.mean() + 0.1
    np.testing.assert_allclose(moved, predict_maps(model, img, optimize=False), atol=1e-5)


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = tiny_model()
    img = smooth_image(300, 400, seed=8)
    cpu = predict_maps(model, img, device="cpu")
    gpu = predict_maps(model, img, device="cuda")  # bf16 autocast by default on CUDA
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    assert np.abs(gpu - cpu).mean() < 0.05
    tiled = predict_maps(model, img, device="cuda", whole=False, tile=128, overlap=0.5, precision="fp32")
    np.testing.assert_allclose(tiled, predict_maps(model, img, device="cuda", precision="fp32"), atol=1e-3)
