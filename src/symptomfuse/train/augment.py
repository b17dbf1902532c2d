"""Training-time augmentation, per modality, on batches of tensors (never at evaluation).

audio (log-mel dB, (B, M, T)): gain, a noise floor relative to the sample's level, time shift, SpecAugment
masks.
video (uint8 frames, (B, T, H, W, 3)): brightness, contrast, small shifts.
keypoints (features, (B, T, 127)): scale and rotation jitter, applied alike to positions, velocities and
accelerations.
"""

from __future__ import annotations

import math

import torch


def augment_audio(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, m, t = x.shape
    x = x + (torch.rand(b, 1, 1, generator=g) * 12 - 6)  # gain +-6 dB
    # a noise floor 60-80 dB below the sample's loudest bins (levels differ a lot between data sets)
    peak = torch.quantile(x.reshape(b, -1), 0.99, dim=1).view(b, 1, 1)
    floor = peak - 60 - torch.rand(b, 1, 1, generator=g) * 20
    noisy = torch.rand(b, 1, 1, generator=g) < 0.5  # half the samples keep their own (clean) floor
    x = torch.where(noisy, 10 * torch.log10(10 ** (x / 10) + 10 ** (floor / 10)), x)
    shift = int(torch.randint(-t // 10, t // 10 + 1, (1,), generator=g))
    x = torch.roll(x, shift, dims=2)
    fill = x.mean(dim=(1, 2), keepdim=True)
    for _ in range(2):
        f0 = torch.randint(0, m, (b, 1, 1), generator=g)
        fw = torch.randint(0, max(1, m // 8), (b, 1, 1), generator=g)
        t0 = torch.randint(0, t, (b, 1, 1), generator=g)
        tw = torch.randint(0, max(1, t // 10), (b, 1, 1), generator=g)
        fm = (torch.arange(m).view(1, m, 1) >= f0) & (torch.arange(m).view(1, m, 1) < f0 + fw)
        tm = (torch.arange(t).view(1, 1, t) >= t0) & (torch.arange(t).view(1, 1, t) < t0 + tw)
        x = torch.where(fm | tm, fill, x)
    return x


def augment_video(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    f = x.float()
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, 1, generator=g)
    brightness = torch.rand(b, 1, 1, 1, 1, generator=g) * 40 - 20
    mean = f.mean(dim=(1, 2, 3, 4), keepdim=True)
    f = (f - mean) * contrast + mean + brightness
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    f = torch.roll(f, (dy, dx), dims=(2, 3))
    return f.clamp(0, 255).to(torch.uint8)


def augment_keypoints(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, t, n = x.shape
    pts = (n - 1) // 2  # pairs of (x, y) across positions, velocities, accelerations
    theta = (torch.rand(b, generator=g) - 0.5) * (2 * math.pi * 15 / 360)  # +-7.5 degrees
    scale = 0.9 + 0.2 * torch.rand(b, generator=g)
    c, s = torch.cos(theta) * scale, torch.sin(theta) * scale
    xy = x[..., :-1].reshape(b, t, pts, 2)
    rot = torch.stack([xy[..., 0] * c.view(b, 1, 1) - xy[..., 1] * s.view(b, 1, 1),
                       xy[..., 0] * s.view(b, 1, 1) + xy[..., 1] * c.view(b, 1, 1)], dim=-1)
    return torch.cat([rot.reshape(b, t, -1), x[..., -1:]], dim=2)


AUGMENT = {"audio": augment_audio, "video": augment_video, "keypoints": augment_keypoints}
