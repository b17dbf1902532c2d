"""Training-time augmentation on batches of prepared encoder inputs (never at evaluation), keyed by the
encoder's ``input_kind``.

logmel (log-mel dB, (B, M, T)): gain, a noise floor relative to the sample's level, time shift,
SpecAugment masks.
motion (the frames encoder's input, (B, T, 2, H, W): signed luma difference and its magnitude):
contrast, brightness flicker and small shifts. A steady brightness change leaves frame differences
unchanged, so brightness enters as flicker: a lighting step between two frames offsets that frame's
difference everywhere.
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


def augment_motion(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, t = x.shape[:2]
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, 1, generator=g)  # scales every luma difference
    flicker = torch.randn(b, t, 1, 1, 1, generator=g) * 0.01  # about 2.5 grey levels
    flicker = flicker * (torch.rand(b, t, 1, 1, 1, generator=g) < 0.1)  # on a tenth of the frames
    signed, magnitude = x[:, :, :1] * contrast + flicker, x[:, :, 1:] * contrast + flicker.abs()
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(torch.cat([signed, magnitude], dim=2), (dy, dx), dims=(3, 4))


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


AUGMENT = {"logmel": augment_audio, "motion": augment_motion, "keypoints": augment_keypoints}
