"""Images: the UNet's shapes and conditioning, classifier-free guidance, the Fréchet distance
against its closed form, the CIFAR-10 and folder readers, and a tiny training run."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from cellflow.flow.unet import UNet
from cellflow.images import (
    ImageFlow,
    frechet_distance,
    load_images,
    read_cifar10,
    read_image_folder,
    train_digits_classifier,
)


def _random_out(net):
    """The output convolution starts at zero; give it weights so outputs depend on the input."""
    torch.manual_seed(1)
    for p in net.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)


def test_unet_shapes_flat_input_and_conditioning():
    net = UNet(
        shape=(3, 16, 16), channels=16, channel_mult=(1, 2), attention_resolutions=(8,), n_classes=4
    )
    _random_out(net)
    x = torch.randn(6, 3, 16, 16)
    t = torch.rand(6)
    out = net(t, x, torch.zeros(6, dtype=torch.long))
    assert out.shape == x.shape
    assert net(t, x.reshape(6, -1), torch.zeros(6, dtype=torch.long)).shape == (6, 3 * 16 * 16)
    assert not torch.allclose(out, net(t, x, torch.full((6,), 3)))  # the label changes the field
    assert not torch.allclose(net(t, x), out)  # cond=None is the "no label" class
    with pytest.raises(ValueError, match="not divisible by 4"):
        UNet(shape=(1, 6, 6), channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="one time per sample"):
        net(torch.rand(5), x)


def test_unet_cifar_recipe_matches_torchcfm_size():
    from cellflow.flow.unet import CIFAR10_RECIPE

    n = sum(p.numel() for p in UNet(shape=(3, 32, 32), **CIFAR10_RECIPE).parameters())
    assert 35.0e6 < n < 36.5e6  # torchcfm's CIFAR-10 UNet has 35.7M parameters


def test_guided_field_combines_conditional_and_unconditional():
    flow = ImageFlow(
        (1, 8, 8), n_classes=3, network={"channels": 8, "channel_mult": (1, 2)}, seed=0
    )
    _random_out(flow.net)
    flow.net.eval()  # no dropout: the two evaluations must see the same network
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor(0.3), torch.tensor([0, 1, 2, 0])
    vc, vu = flow.net(t, x, y), flow.net(t, x, None)
    for w in (0.0, 1.0, 2.5):
        assert torch.allclose(flow.field(y, w)(t, x), vu + w * (vc - vu), atol=1e-5)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)

    def exact(n, mean, std):
        z = rng.normal(size=(n, len(mean)))
        z = (z - z.mean(0)) @ np.linalg.inv(
            np.linalg.cholesky(np.cov(z, rowvar=False))
        ).T  # sample cov = I
        return z * std + mean

    a = exact(500, [0.0, 1.0, 2.0], np.array([1.0, 2.0, 0.5]))
    b = exact(400, [1.0, 1.0, 0.0], np.array([2.0, 2.0, 1.5]))
    # diagonal covariances: |mu_a - mu_b|^2 + sum (s_a - s_b)^2
    expected = 1.0 + 4.0 + (1 - 2) ** 2 + 0 + (0.5 - 1.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # singular covariances (10 samples in 20 dimensions): still exact, real, and without warnings
    s = rng.normal(size=(10, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-6)
        # a scaled copy: Sigma_b = 4 Sigma_a, so tr(Sa + Sb - 2 (Sa Sb)^1/2) = tr(Sa) (1 + 4 - 4)
        assert frechet_distance(s, 2 * s) == pytest.approx(
            ((s.mean(0)) ** 2).sum() + np.trace(np.cov(s, rowvar=False)), rel=1e-6
        )


def test_digits_classifier_scores_held_out_writers():
    """The scorer of ``cellflow train images --dataset digits``: trained on the first 1,500
    digits, it must classify the last 297 (other writers) far above chance (0.1). 4 epochs
    reach about 0.91 (the default 40: 0.94)."""
    x, y, _ = load_images("digits", split="train")
    xt, yt, _ = load_images("digits", split="test")
    clf = train_digits_classifier(x, y, epochs=4, seed=0)
    assert clf.accuracy(xt, yt) > 0.85
    assert clf.features(xt[:5]).shape[0] == 5


def test_cifar_reader_on_a_tiny_file_in_its_format(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (7, 3072), dtype=np.uint8)
    data[0, :] = 0
    data[1, :] = 255
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [3, 1, 4, 1, 5, 9, 2], b"batch_label": b"x"}, fh)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": data[:2], b"labels": [0, 7]}, fh)
    x, y = read_cifar10(tmp_path)
    assert x.shape == (7, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [3, 1, 4, 1, 5, 9, 2]
    assert float(x[0].max()) == -1.0 and float(x[1].min()) == 1.0
    # rows hold the red plane, then green, then blue, each row-major
    c, h, w = 2, 5, 17
    assert float(x[4, c, h, w]) == pytest.approx(data[4, c * 1024 + h * 32 + w] / 127.5 - 1)
    xt, yt = read_cifar10(tmp_path, "test")
    assert xt.shape == (2, 3, 32, 32) and yt.tolist() == [0, 7]
    xs, ys, classes = load_images("cifar10", data_dir=tmp_path)
    assert xs.shape == (7, 3, 32, 32) and len(classes) == 10
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        read_cifar10(tmp_path / "nowhere")


def test_image_folder_reader(tmp_path):
    from PIL import Image

    for k, cls in enumerate(["cats", "dogs"]):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 6), 40 * (k + i), dtype=np.uint8), mode="L").save(
                tmp_path / cls / f"{i}.png"
            )
    x, y, classes = read_image_folder(tmp_path)
    assert (
        x.shape == (6, 1, 4, 6) and classes == ["cats", "dogs"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    )
    assert float(x[4, 0, 0, 0]) == pytest.approx(80 / 127.5 - 1)


@pytest.mark.slow
def test_tiny_training_beats_untrained_and_labels_condition(tmp_path):
    x, y, _ = load_images("digits")
    small = {
        "channels": 16,
        "channel_mult": (1, 2),
        "attention_resolutions": (),
        "num_res_blocks": 1,
        "dropout": 0.0,
    }
    flow = ImageFlow((1, 8, 8), n_classes=10, network=small, seed=0)
    labels = torch.arange(10).repeat_interleave(30)
    before = frechet_distance(x, flow.sample(labels=labels, steps=10, seed=1))
    flow.train(
        x, y, steps=150, batch_size=64, lr=2e-3, warmup_steps=20, ema_decay=0.99, progress=False
    )
    samples = flow.sample(labels=labels, steps=10, seed=1)
    after = frechet_distance(x, samples)  # in pixel space (64-d)
    assert after < 0.5 * before, (before, after)
    # the same noise with different labels gives different images
    a, b = (
        flow.sample(labels=[0] * 8, steps=10, seed=2),
        flow.sample(labels=[7] * 8, steps=10, seed=2),
    )
    assert (a - b).abs().mean() > 0.1
    flow.save(tmp_path / "m")
    again = ImageFlow.load(tmp_path / "m")
    assert torch.allclose(
        again.sample(labels=[3, 4], steps=5, seed=3), flow.sample(labels=[3, 4], steps=5, seed=3)
    )
