"""Encoders, one per input representation, each mapping a batch to an embedding (batch, dim).

Each keeps the scaler fitted on its training data (``Standardize``) inside the module, so inference
always applies the same scaling as training, and each is rebuilt from ``config()``.

An encoder works in two steps: ``prepare`` turns the feature function's output (what curation caches
and the live stream computes) into the network's input with no parameters and no randomness, and
``forward_prepared`` runs the network. ``forward`` does both. Training prepares every window once,
then augments and trains on the prepared tensors (``input_kind`` names their format for augmentation),
which for video saves recomputing frame differences in every epoch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from symptomfuse.models.registry import register


class Standardize(nn.Module):
    """(x - mean) / std with statistics fitted on training data only and saved with the weights."""

    def __init__(self, shape: tuple[int, ...], min_std: float = 1e-3):
        super().__init__()
        self.min_std = min_std  # a feature constant in training (a silent band) must not blow up later
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, dims: tuple[int, ...]) -> None:
        """Fit on a training tensor, reducing over ``dims`` (those not in the kept shape)."""
        self.mean.copy_(x.float().mean(dim=dims).reshape(self.mean.shape))
        self.std.copy_(x.float().std(dim=dims).reshape(self.std.shape).clamp_min(self.min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Encoder(nn.Module):
    """Base class: ``forward(x) == forward_prepared(prepare(x))``; scalers are fitted on prepared input."""

    input_kind: str  # the format of prepare's output ("logmel", "motion", "keypoints", "vector"); a modality
    # declares its augmentations by this name
    out_dim: int

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def forward_prepared(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_prepared(self.prepare(x))

    def fit_normalizer(self, h: torch.Tensor) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.registry_name, **self._config}


class _MaxPool2x2Function(torch.autograd.Function):
    """2x2 max-pooling through PyTorch's channels-last kernel, which is vectorized over channels, where
    the kernel for ordinary (channels-first) tensors compares one number at a time: 1.6-1.9 times
    faster. Both take the first maximum of a window, so the values, the indices and therefore the
    gradients are the same to the bit; the backward pass is the ordinary one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                          [2, 2], [2, 2])
        idx = idx.contiguous()
        ctx.save_for_backward(x, idx)
        ctx.mark_non_differentiable(idx)
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [2, 2], [2, 2], [0, 0],
                                                               [1, 1], False, idx)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` with the same outputs and gradients, faster on a CPU (see above). Exported
    (ONNX, tracing) and on other devices it is plain ``nn.MaxPool2d(2)``."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        return _MaxPool2x2Function.apply(x)


def _conv2d_block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         MaxPool2x2(), nn.Dropout(dropout))


@register("encoder", "logmel_cnn")
class LogMelCNN(Encoder):
    """A small 2-D CNN over a log-mel spectrogram (batch, n_mels, frames) -> (batch, dim).

    Pooling at the end is over time only (mean and max), so the head still knows which frequency band a
    pattern sits in (formants, harmonics, noise). With ``peak_norm`` each window is first shifted so
    that its loudest bin is at 0 dB, for data recorded at very different levels (different microphones,
    distances, speakers).
    """

    input_kind = "logmel"

    def __init__(self, n_mels: int = 64, channels: tuple = (8, 16, 32), dim: int = 32, dropout: float = 0.1,
                 peak_norm: bool = False):
        super().__init__()
        self._config = {"n_mels": n_mels, "channels": list(channels), "dim": dim, "dropout": dropout,
                        "peak_norm": peak_norm}
        self.peak_norm = peak_norm
        self.norm = Standardize((n_mels, 1), min_std=3.0)  # dB
        blocks, c = [], 1
        for c_out in channels:
            blocks.append(_conv2d_block(c, c_out, dropout))
            c = c_out
        self.body = nn.Sequential(*blocks)
        bands = n_mels // 2 ** len(channels)
        self.proj = nn.Linear(2 * c * bands, dim)
        self.out_dim = dim

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x - x.amax(dim=(1, 2), keepdim=True) if self.peak_norm else x

    def fit_normalizer(self, x: torch.Tensor) -> None:
        self.norm.fit(x, dims=(0, 2))  # per band

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.norm(x).unsqueeze(1))  # (B, C, bands, frames)
        return self.proj(torch.cat([h.mean(dim=3), h.amax(dim=3)], dim=1).flatten(1))


@register("encoder", "frames_cnn")
class FramesCNN(Encoder):
    """A per-frame 2-D CNN, then temporal convolution and pooling: (batch, T, H, W, 3) uint8 -> (batch, dim).

    Each frame enters as motion only: the signed difference of its luma from the previous frame's, and
    the magnitude of that difference. Without the still picture the network cannot learn people by their
    background or skin (with it, it memorised them and did worse on new people: person AUC 0.6 against
    0.85 on two folds of the demo cohort). The frame is then average-pooled by ``input_pool`` (64x48 ->
    16x12 by default) and the first convolution has stride 2, which keeps the cost per frame small
    enough to train on a CPU; the magnitude is taken before pooling, so sub-pixel motion such as a
    tremor keeps its energy. (On the demo cohort, pooling by 4 rather than 2 cost a quarter of the
    compute per step and gave person AUC 0.76 against 0.71 over 5 folds.)
    """

    input_kind = "motion"

    def __init__(self, channels: tuple = (8, 16), dim: int = 32, temporal_kernel: int = 5,
                 dropout: float = 0.1, input_pool: int = 4):
        super().__init__()
        self._config = {"channels": list(channels), "dim": dim, "temporal_kernel": temporal_kernel,
                        "dropout": dropout, "input_pool": input_pool}
        self.pool = nn.AvgPool2d(input_pool) if input_pool > 1 else nn.Identity()
        self.norm = Standardize((2, 1, 1))
        layers, c = [nn.Conv2d(2, channels[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels[0]),
                     nn.ReLU()], channels[0]
        for c_out in channels[1:]:
            layers.append(_conv2d_block(c, c_out, dropout))
            c = c_out
        self.frame_net = nn.Sequential(*layers)
        # Two temporal convolutions, the second dilated, see about 0.7 s: a whole tap or several tremor cycles.
        self.temporal = nn.Sequential(
            nn.Conv1d(c, dim, temporal_kernel, padding=temporal_kernel // 2), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.Conv1d(dim, dim, temporal_kernel, padding=3 * (temporal_kernel // 2), dilation=3),
            nn.BatchNorm1d(dim), nn.ReLU())
        self.proj = nn.Linear(2 * dim, dim)
        self.out_dim = dim

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 frames -> (B, T, 2, H', W') pooled signed motion and motion magnitude."""
        b, t = x.shape[:2]
        luma = (x.float() @ torch.tensor([0.299, 0.587, 0.114])) / 255.0  # (B, T, H, W)
        # luma[t] - luma[t - 1], and 0 for the first frame: torch.diff with the first frame prepended, written
        # out so that the TorchScript tracer can export it to ONNX (it has no aten::diff)
        motion = luma - torch.cat([luma[:, :1], luma[:, :-1]], dim=1)
        h = self.pool(torch.stack([motion, motion.abs()], dim=2).flatten(0, 1))
        return h.reshape(b, t, *h.shape[1:])

    def fit_normalizer(self, h: torch.Tensor) -> None:
        self.norm.fit(h.flatten(0, 1), dims=(0, 2, 3))

    def forward_prepared(self, h: torch.Tensor) -> torch.Tensor:
        b, t = h.shape[:2]
        h = self.norm(h.flatten(0, 1))
        h = self.frame_net(h).mean(dim=(2, 3)).reshape(b, t, -1).transpose(1, 2)  # (B, C, T)
        h = self.temporal(h)
        return self.proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


@register("encoder", "keypoints_tcn")
class KeypointsTCN(Encoder):
    """Dilated temporal convolutions over keypoint features (batch, T, features) -> (batch, dim)."""

    input_kind = "keypoints"

    def __init__(self, n_features: int = 127, channels: int = 32, dim: int = 32, levels: int = 3,
                 kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self._config = {"n_features": n_features, "channels": channels, "dim": dim, "levels": levels,
                        "kernel": kernel, "dropout": dropout}
        self.norm = Standardize((n_features,))
        layers, c = [], n_features
        for i in range(levels):
            d = 2 ** i
            layers += [nn.Conv1d(c, channels, kernel, padding=d * (kernel - 1) // 2, dilation=d),
                       nn.BatchNorm1d(channels), nn.ReLU(), nn.Dropout(dropout)]
            c = channels
        self.tcn = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * channels, dim)
        self.out_dim = dim

    def fit_normalizer(self, x: torch.Tensor) -> None:
        self.norm.fit(x, dims=(0, 1))

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tcn(self.norm(x).transpose(1, 2))
        return self.proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


@register("encoder", "mlp")
class MLP(Encoder):
    """A multilayer perceptron over one feature vector (batch, n_features) -> (batch, dim), for feature
    tables. Missing values (NaN, inf) are imputed with the training mean of their column and flagged: the
    network sees the standardised values and one missingness indicator per column. Dropout after every
    layer, so MC dropout can estimate its uncertainty."""

    input_kind = "vector"

    def __init__(self, n_features: int = 22, hidden: tuple = (64,), dim: int = 32, dropout: float = 0.3):
        super().__init__()
        self._config = {"n_features": n_features, "hidden": list(hidden), "dim": dim, "dropout": dropout}
        self.norm = Standardize((n_features,))
        layers, c = [], 2 * n_features
        for h in list(hidden) + [dim]:
            layers += [nn.Linear(c, h), nn.ReLU(), nn.Dropout(dropout)]
            c = h
        self.net = nn.Sequential(*layers)
        self.out_dim = dim

    @torch.no_grad()
    def fit_normalizer(self, x: torch.Tensor) -> None:
        x = torch.where(torch.isfinite(x), x, torch.full_like(x, float("nan")))
        mean = torch.nanmean(x, dim=0)
        std = torch.sqrt(torch.nanmean((x - mean) ** 2, dim=0))
        self.norm.mean.copy_(torch.nan_to_num(mean, nan=0.0))
        self.norm.std.copy_(torch.nan_to_num(std, nan=1.0).clamp_min(self.norm.min_std))

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        present = torch.isfinite(x)
        z = self.norm(torch.where(present, x, self.norm.mean.expand_as(x)))
        return self.net(torch.cat([z, present.float()], dim=1))
