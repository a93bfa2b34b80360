r"""A UNet vector field :math:`v_\theta(t, x[, y])` for images, in plain torch.

The architecture of the DDPM/ADM family: residual blocks with GroupNorm and SiLU, the time
(and class) embedding added inside every block, self-attention at chosen resolutions, skip
connections between the down and the up path, and zero-initialised output convolutions so
the untrained field is 0.

Class conditioning reserves one extra class index, ``n_classes``, for "no label": training
with labels dropped at random to it gives one network that is both conditional and
unconditional, which classifier-free guidance combines at sampling time.

``UNet(shape=(3, 32, 32), **CIFAR10_RECIPE)`` is torchcfm's CIFAR-10 network (128 channels,
multipliers 1, 2, 2, 2, two residual blocks per level, attention at 16×16, dropout 0.1).

Example
-------
>>> import torch
>>> from cellflow.flow.unet import UNet
>>> net = UNet(
...     shape=(1, 8, 8), channels=16, channel_mult=(1, 2), attention_resolutions=(4,), n_classes=10
... )
>>> x = torch.randn(5, 1, 8, 8)
>>> net(torch.rand(5), x, torch.arange(5)).shape
torch.Size([5, 1, 8, 8])
>>> float(net(0.5, x).abs().max())   # zero-initialised output: the untrained field is 0
0.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["UNet", "CIFAR10_RECIPE", "DIGITS_RECIPE"]

CIFAR10_RECIPE = dict(
    channels=128,
    channel_mult=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    dropout=0.1,
    num_heads=4,
)
DIGITS_RECIPE = dict(
    channels=32,
    channel_mult=(1, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(4,),
    dropout=0.1,
    num_heads=4,
)


def _groups(ch: int) -> int:
    """GroupNorm groups: up to 32, with at least 4 channels each. (With one channel per group,
    GroupNorm would remove the per-channel shift by which the time and label embeddings enter.)"""
    for g in (32, 16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 4:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    r"""Sinusoidal features of :math:`1000\,t`: :math:`[\cos(1000\,t\,\omega_k),
    \sin(1000\,t\,\omega_k)]`
    with :math:`\omega_k = P^{-k/(d/2)}`."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], 1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the embedding, → GroupNorm → SiLU → dropout → conv, with a
    skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.GroupNorm(_groups(cin), cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1)
        )
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(_groups(cout), cout),
            nn.SiLU(),
            nn.Dropout(dropout),
            _zero(nn.Conv2d(cout, cout, 3, padding=1)),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels, with a residual connection."""

    def __init__(self, ch: int, num_heads: int):
        super().__init__()
        self.heads = (
            max(1, min(num_heads, ch // 8)) if ch % max(1, min(num_heads, ch // 8)) == 0 else 1
        )
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(a.transpose(-1, -2).reshape(b, c, h * w)).reshape(b, c, h, w)


class UNet(nn.Module):
    """UNet vector field for images of shape ``(C, H, W)``.

    Parameters
    ----------
    shape
        ``(channels, height, width)`` of an image; H and W must be divisible by
        ``2 ** (len(channel_mult) - 1)``.
    channels
        Base width; level ``i`` has ``channels * channel_mult[i]`` channels.
    channel_mult, num_res_blocks
        Width multipliers per resolution level, and residual blocks per level.
    attention_resolutions
        Resolutions (side lengths) at which self-attention is added.
    dropout, num_heads
        Dropout in the residual blocks; attention heads.
    n_classes
        Number of classes for class conditioning (0: unconditional). Label ``n_classes``, or
        ``cond=None``, means "no label" (for classifier-free guidance).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        num_heads: int = 4,
        n_classes: int = 0,
        dim: int | None = None,
    ):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be (channels, height, width), got {shape}.")
        factor = 2 ** (len(channel_mult) - 1)
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(
                f"image size {shape[1:]} is not divisible by {factor}, which {len(channel_mult)} "
                "resolution levels need; use fewer channel_mult entries or pad the images."
            )
        if dim is not None and dim != math.prod(shape):
            raise ValueError(f"dim={dim} does not match shape {shape}.")
        self.config = dict(
            kind="unet",
            shape=list(shape),
            dim=math.prod(shape),
            channels=int(channels),
            channel_mult=[int(m) for m in channel_mult],
            num_res_blocks=int(num_res_blocks),
            attention_resolutions=[int(r) for r in attention_resolutions],
            dropout=float(dropout),
            num_heads=int(num_heads),
            n_classes=int(n_classes),
        )
        self.shape = shape
        emb_dim = 4 * channels
        self.time_embed = nn.Sequential(
            nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_embed = nn.Embedding(n_classes + 1, emb_dim) if n_classes else None

        self.input = nn.Conv2d(shape[0], channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch, res = [channels], channels, shape[1]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(ch, channels * mult, emb_dim, dropout)])
                ch = channels * mult
                if res in attention_resolutions:
                    block.append(AttentionBlock(ch, num_heads))
                self.down.append(block)
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        self.middle = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, dropout),
                AttentionBlock(ch, num_heads),
                ResBlock(ch, ch, emb_dim, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                block = nn.ModuleList(
                    [ResBlock(ch + skips.pop(), channels * mult, emb_dim, dropout)]
                )
                ch = channels * mult
                if res in attention_resolutions:
                    block.append(AttentionBlock(ch, num_heads))
                if level > 0 and i == num_res_blocks:
                    block.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    block.append(nn.Conv2d(ch, ch, 3, padding=1))
                    res *= 2
                self.up.append(block)
        self.out = nn.Sequential(
            nn.GroupNorm(_groups(ch), ch), nn.SiLU(), _zero(nn.Conv2d(ch, shape[0], 3, padding=1))
        )

    @staticmethod
    def _run_block(block: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, t: Tensor | float, x: Tensor, cond: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        flat = x.dim() == 2
        h = x.reshape(n, *self.shape)
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        elif t.numel() != n:
            raise ValueError(
                f"t has {t.numel()} entries for a batch of {n}: pass a scalar or one time per "
                "sample."
            )
        emb = self.time_embed(timestep_embedding(t, self.config["channels"]).to(h.dtype))
        if self.label_embed is not None:
            null = self.config["n_classes"]
            y = torch.full((n,), null, device=h.device) if cond is None else cond.reshape(-1).long()
            emb = emb + self.label_embed(y)
        elif cond is not None:
            raise ValueError("this UNet is unconditional (n_classes=0) but cond was given.")
        h = self.input(h)
        hs = [h]
        for block in self.down:
            h = self._run_block(block, h, emb)
            hs.append(h)
        h = self._run_block(self.middle, h, emb)
        for block in self.up:
            h = self._run_block(block, torch.cat([h, hs.pop()], 1), emb)
        out = self.out(h)
        return out.reshape(n, -1) if flat else out
