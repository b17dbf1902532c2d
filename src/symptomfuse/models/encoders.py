"""Encoders, one per input representation, each mapping a batch to an embedding (batch, dim).

Each keeps the scaler fitted on its training data (``Standardize``) inside the module, so inference
always applies the same scaling as training, and each is rebuilt from ``config()``.
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


def _conv2d_block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout(dropout))


@register("encoder", "logmel_cnn")
class LogMelCNN(nn.Module):
    """A small 2-D CNN over a log-mel spectrogram (batch, n_mels, frames) -> (batch, dim).

    Pooling at the end is over time only (mean and max), so the head still knows which frequency band a
    pattern sits in (formants, harmonics, noise).
    """

    modality = "audio"

    def __init__(self, n_mels: int = 64, channels: tuple = (8, 16, 32), dim: int = 32, dropout: float = 0.1):
        super().__init__()
        self._config = {"n_mels": n_mels, "channels": list(channels), "dim": dim, "dropout": dropout}
        self.norm = Standardize((n_mels, 1), min_std=3.0)  # dB
        blocks, c = [], 1
        for c_out in channels:
            blocks.append(_conv2d_block(c, c_out, dropout))
            c = c_out
        self.body = nn.Sequential(*blocks)
        bands = n_mels // 2 ** len(channels)
        self.proj = nn.Linear(2 * c * bands, dim)
        self.out_dim = dim

    def fit_normalizer(self, x: torch.Tensor) -> None:
        self.norm.fit(x, dims=(0, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.norm(x).unsqueeze(1))  # (B, C, bands, frames)
        return self.proj(torch.cat([h.mean(dim=3), h.amax(dim=3)], dim=1).flatten(1))

    def config(self) -> dict:
        return {"name": self.registry_name, **self._config}


@register("encoder", "frames_cnn")
class FramesCNN(nn.Module):
    """A per-frame 2-D CNN, then temporal convolution and pooling: (batch, T, H, W, 3) uint8 -> (batch, dim).

    Each frame enters as motion only: the signed difference of its luma from the previous frame's, and
    the magnitude of that difference. Without the still picture the network cannot learn people by their
    background or skin (with it, it memorised them and did worse on new people: person AUC 0.6 against
    0.85 on two folds of the demo cohort). The frame is then average-pooled by ``input_pool`` and the
    first convolution has stride 2, which keeps the cost per frame small enough to train on a CPU; the
    magnitude is taken before pooling, so sub-pixel motion such as a tremor keeps its energy.
    """

    modality = "video"

    def __init__(self, channels: tuple = (8, 16), dim: int = 32, temporal_kernel: int = 5,
                 dropout: float = 0.1, input_pool: int = 2):
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

    @staticmethod
    def _motion(x: torch.Tensor) -> torch.Tensor:
        luma = (x.float() @ torch.tensor([0.299, 0.587, 0.114])) / 255.0  # (B, T, H, W)
        motion = torch.diff(luma, dim=1, prepend=luma[:, :1])
        return torch.stack([motion, motion.abs()], dim=2)  # (B, T, 2, H, W)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self._motion(x).flatten(0, 1))  # (B*T, 2, H', W')

    def fit_normalizer(self, x: torch.Tensor) -> None:
        self.norm.fit(self._input(x), dims=(0, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        h = self.norm(self._input(x))
        h = self.frame_net(h).mean(dim=(2, 3)).reshape(b, t, -1).transpose(1, 2)  # (B, C, T)
        h = self.temporal(h)
        return self.proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))

    def config(self) -> dict:
        return {"name": self.registry_name, **self._config}


@register("encoder", "keypoints_tcn")
class KeypointsTCN(nn.Module):
    """Dilated temporal convolutions over keypoint features (batch, T, features) -> (batch, dim)."""

    modality = "video"

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tcn(self.norm(x).transpose(1, 2))
        return self.proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))

    def config(self) -> dict:
        return {"name": self.registry_name, **self._config}
