"""A moving hand: 21 keypoints per frame (MediaPipe hand-landmark order) and a renderer.

Kinematics are planar: each finger is a chain of three segments whose joint angles curl it; the thumb and
index finger close towards each other for finger tapping. The task in every recording is: hands at
rest, then tapping the index finger against the thumb. Everyone's hand drifts slowly and carries a tiny
8-12 Hz physiological tremor; the condition adds a 4-6 Hz rest tremor (a rocking of the hand and a
pill-rolling of thumb and index) and slower tapping whose amplitude shrinks over time, with hesitations.

Landmark order (MediaPipe Hands): 0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index MCP, PIP, DIP, tip;
9-12 middle; 13-16 ring; 17-20 pinky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Hand geometry in units of hand length (wrist to middle fingertip), y pointing up, thumb to the left.
_BASES = np.array([[-0.13, 0.10], [-0.10, 0.42], [0.0, 0.45], [0.09, 0.42], [0.17, 0.36]])
_SEGMENTS = np.array([
    [0.17, 0.14, 0.11],  # thumb: CMC-MCP, MCP-IP, IP-tip
    [0.21, 0.12, 0.09],  # index
    [0.24, 0.14, 0.10],  # middle
    [0.22, 0.13, 0.09],  # ring
    [0.17, 0.10, 0.08],  # pinky
])
_DIRECTIONS = np.array([-0.95, -0.12, 0.0, 0.10, 0.22])  # base angle from vertical (rad, + = to pinky)
# Joint angles (rad, + turns towards the pinky side) of the thumb (row 0) and index (row 1) with the
# pinch fully open and fully closed (tips touching).
_OPEN = np.array([[-0.10, 0.0, 0.0], [0.25, 0.05, 0.0]])
_CLOSED = np.array([[0.25, 0.20, 0.10], [-0.50, -1.375, -0.94]])
_PILL_ROLL = np.array([[1.0, 0.5, 0.0], [-1.0, -0.5, -0.2]])  # thumb and index roll towards each other
_REST_CLOSURE = 0.35
_FINGER_WIDTH = np.array([0.10, 0.085, 0.09, 0.085, 0.07])


@dataclass(frozen=True)
class HandParams:
    """Generative parameters of one person's hand movement."""

    rest_tremor_hz: float  # 0 for none
    rest_tremor_amp: float  # rocking amplitude (rad); translation and pill-rolling scale with it
    physio_tremor_hz: float  # 8-12 Hz physiological tremor, everyone
    physio_tremor_amp: float
    tap_hz: float  # finger-tapping rate at the start of the task
    tap_amplitude: float  # opening of the pinch, 0-1
    tap_decrement: float  # fraction of the amplitude lost by the end of tapping
    hesitation_rate: float  # pauses per second of tapping


def _chain(base: np.ndarray, direction: float, lengths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Joint positions (3, 2) after ``base`` along a planar chain; angle 0 points straight up."""
    out = np.empty((3, 2))
    pos, theta = base.copy(), direction
    for k in range(3):
        theta = theta + angles[k]
        pos = pos + lengths[k] * np.array([np.sin(theta), np.cos(theta)])
        out[k] = pos
    return out


def _pose(closure: float, pill: float) -> np.ndarray:
    """The hand's 21 landmarks (x, y, z) in hand units for a pinch closure in [0, 1]."""
    pinch = _OPEN + closure * (_CLOSED - _OPEN) + pill * _PILL_ROLL
    relaxed = np.array([-0.12, -0.10, -0.05])
    kp = np.zeros((21, 3))
    for f in range(5):
        if f < 2:
            angles = pinch[f]
        else:
            angles = relaxed * (1.0 + 0.4 * f / 4) * (0.6 + 0.6 * closure)
        joints = _chain(_BASES[f], _DIRECTIONS[f], _SEGMENTS[f], angles)
        first = 1 + 4 * f
        kp[first, :2] = _BASES[f]
        kp[first + 1:first + 4, :2] = joints
        # Depth: curled segments come towards the camera (negative z, as MediaPipe).
        kp[first + 1:first + 4, 2] = -0.25 * np.cumsum(np.abs(angles)) * _SEGMENTS[f]
    return kp


def hand_trajectory(
    p: HandParams, duration_s: float, fps: float, rest_until_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Landmarks in hand units, shape (frames, 21, 3), and the global motion applied later.

    Returns an array (frames, 21+1, 3): rows 0-20 the landmarks in hand coordinates after the hand's
    own rotation about the wrist; row 21 holds the wrist translation (dx, dy) in hand units.
    """
    n = int(round(duration_s * fps))
    t = np.arange(n) / fps
    out = np.zeros((n, 22, 3))

    # Task timing: rest, a short transition, then tapping.
    transition = 0.4
    tap_t = np.clip(t - rest_until_s - transition, 0.0, None)
    tapping = t >= rest_until_s + transition
    blend = np.clip((t - rest_until_s) / transition, 0.0, 1.0)

    # Tapping phase: rate and amplitude fall over time (bradykinesia); hesitations hold the phase.
    tap_len = max(duration_s - rest_until_s - transition, 1e-6)
    rate = p.tap_hz * (1.0 - 0.25 * p.tap_decrement * tap_t / tap_len) * (1.0 + 0.06 * rng.standard_normal(n))
    holding = np.zeros(n, bool)
    if p.hesitation_rate > 0:
        n_pauses = rng.poisson(p.hesitation_rate * tap_len)
        for start in rng.uniform(0, tap_len, n_pauses):
            holding |= (tap_t >= start) & (tap_t < start + rng.uniform(0.2, 0.45)) & tapping
    rate = np.where(holding | ~tapping, 0.0, rate)
    phase = np.cumsum(rate) / fps
    amplitude = p.tap_amplitude * (1.0 - p.tap_decrement * tap_t / tap_len)
    opening = amplitude * 0.5 * (1.0 - np.cos(2 * np.pi * phase))
    closure = (1.0 - blend) * _REST_CLOSURE + blend * (1.0 - opening)

    def oscillation(hz: float, amp: float) -> np.ndarray:
        if hz <= 0 or amp <= 0:
            return np.zeros(n)
        wobble = 1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3))
        waxing = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 6.3))
        return amp * waxing * np.sin(2 * np.pi * np.cumsum(np.full(n, hz) * wobble) / fps + rng.uniform(0, 6.3))

    # Rest tremor is strongest at rest and partly suppressed by the tapping action.
    rest_scale = np.where(tapping, 0.3, 1.0)
    tremor = oscillation(p.rest_tremor_hz, p.rest_tremor_amp) * rest_scale
    physio = oscillation(p.physio_tremor_hz, p.physio_tremor_amp)
    drift_hz = rng.uniform(0.1, 0.3, 2)
    drift = 0.015 * np.stack([np.sin(2 * np.pi * drift_hz[0] * t + rng.uniform(0, 6.3)),
                              np.sin(2 * np.pi * drift_hz[1] * t + rng.uniform(0, 6.3))], axis=1)

    rotation = tremor + physio
    for i in range(n):
        kp = _pose(float(closure[i]), pill=1.5 * tremor[i])
        c, s = np.cos(rotation[i]), np.sin(rotation[i])
        xy = kp[:, :2] @ np.array([[c, s], [-s, c]])
        out[i, :21, :2] = xy
        out[i, :21, 2] = kp[:, 2]
    out[:, 21, 0] = drift[:, 0] + 0.25 * tremor + 0.3 * physio
    out[:, 21, 1] = drift[:, 1] + 0.10 * tremor
    return out


@dataclass(frozen=True)
class SceneParams:
    """How one recording looks: placement, skin, background, lighting and camera noise."""

    width: int
    height: int
    wrist_x: float  # fraction of the width
    wrist_y: float  # fraction of the height
    hand_px: float  # hand length in pixels
    tilt: float  # rad
    skin_rgb: tuple[int, int, int]
    background_rgb: tuple[int, int, int]
    gain: float
    noise_sigma: float


def to_image_coords(traj: np.ndarray, scene: SceneParams) -> np.ndarray:
    """Hand-unit trajectory (frames, 22, 3) -> landmarks normalised as MediaPipe does:
    x/width, y/height in [0, 1] (y down), z in units of width relative to the wrist."""
    c, s = np.cos(scene.tilt), np.sin(scene.tilt)
    rot = np.array([[c, s], [-s, c]])
    xy = (traj[:, :21, :2] + traj[:, 21:22, :2]) @ rot * scene.hand_px
    px = scene.wrist_x * scene.width + xy[..., 0]
    py = scene.wrist_y * scene.height - xy[..., 1]
    z = traj[:, :21, 2] * scene.hand_px / scene.width
    return np.stack([px / scene.width, py / scene.height, z], axis=-1).astype(np.float32)


class HandRenderer:
    """Draws a hand over a static background, with lighting and camera noise, at 2x then downsampled."""

    _SS = 2  # supersampling factor, for smooth edges and sub-pixel motion

    def __init__(self, scene: SceneParams, rng: np.random.Generator):
        self.scene = scene
        self.rng = rng
        w, h = scene.width * self._SS, scene.height * self._SS
        base = np.array(scene.background_rgb, float)
        grad = np.linspace(1.1, 0.85, h)[:, None, None] * np.ones((1, w, 1))
        bg = np.clip(grad * base, 0, 255)
        img = Image.fromarray(bg.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(3):  # furniture-like blocks in muted colours
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            col = tuple(int(v) for v in np.clip(base * rng.uniform(0.6, 1.3, 3), 0, 255))
            draw.rectangle([x0, y0, x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h], fill=col)
        self.background = img.filter(ImageFilter.GaussianBlur(3 * self._SS))
        self.background_small = np.asarray(self.background.reduce(self._SS), dtype=np.float32)
        self.noise_bank = (rng.standard_normal((8, scene.height, scene.width, 3)) * scene.noise_sigma).astype(np.float32)
        yy, xx = np.mgrid[0:scene.height, 0:scene.width]
        r = np.hypot((xx - scene.width / 2) / scene.width, (yy - scene.height / 2) / scene.height)
        # one factor per pixel, repeated for its three channels: multiplying without broadcasting is
        # several times faster, with the same products
        self.lighting = np.repeat((scene.gain * (1.0 - 0.5 * r ** 2))[..., None].astype(np.float32), 3, axis=2)
        # Outside the hand's box every frame is the background, lit, with one of the noise patterns and
        # clipped: the same few pictures, finished once here (the same arithmetic as in ``_finish``).
        lit = self.background_small * self.lighting
        self.finished = [self._finish(lit + noise) for noise in self.noise_bank]
        skin = np.array(scene.skin_rgb, float)
        self.skin = tuple(int(v) for v in skin)
        self.outline = tuple(int(v) for v in skin * 0.7)

    @staticmethod
    def _finish(frame: np.ndarray) -> np.ndarray:
        """A lit, noisy float32 picture clipped to 0-255 as uint8 (in place: np.clip in two faster passes)."""
        np.maximum(frame, 0, out=frame)
        return np.minimum(frame, 255, out=frame).astype(np.uint8)

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        """One RGB frame (height, width, 3) uint8 for normalised landmarks (21, 3): the downsampled
        picture, times the lighting, plus one of the noise patterns, clipped."""
        ss = self._SS
        img, (x0, y0, x1, y1) = self.draw(landmarks)
        k = self.rng.integers(len(self.noise_bank))
        # Only the box drawn on is computed; elsewhere the frame is the finished background, pixel for
        # pixel the same numbers (downsampling works on whole ss x ss blocks, the rest pixel by pixel).
        frame = self.finished[k].copy()
        if x1 > x0 and y1 > y0:
            box = (slice(y0 // ss, y1 // ss), slice(x0 // ss, x1 // ss))
            part = np.asarray(img.reduce(ss, box=(x0, y0, x1, y1)), dtype=np.float32)
            np.multiply(part, self.lighting[box], out=part)
            part += self.noise_bank[k][box]
            frame[box] = self._finish(part)
        return frame

    def draw(self, landmarks: np.ndarray) -> tuple[Image.Image, tuple[int, int, int, int]]:
        """The hand drawn over the background at ``_SS`` times the frame's size, and a box (x0, y0, x1, y1)
        on whole ``_SS`` x ``_SS`` blocks outside which nothing was drawn."""
        sc = self.scene
        ss = self._SS
        pts = landmarks[:, :2] * np.array([sc.width * ss, sc.height * ss])
        img = self.background.copy()
        draw = ImageDraw.Draw(img)
        hand = sc.hand_px * ss
        wrist = pts[0]
        palm_dir = pts[9] - wrist
        palm_dir /= np.linalg.norm(palm_dir) + 1e-9
        side = np.array([palm_dir[1], -palm_dir[0]])
        fore_w = 0.34 * hand
        elbow = wrist - palm_dir * 2.0 * hand
        for colour, grow in ((self.outline, 2 * ss), (self.skin, 0)):
            draw.line([tuple(elbow), tuple(wrist)], fill=colour, width=int(fore_w + grow))
            palm = [wrist + side * 0.17 * hand, pts[1], pts[5], pts[9], pts[13], pts[17],
                    wrist - side * 0.17 * hand]
            draw.polygon([tuple(p) for p in palm], fill=colour, outline=colour, width=int(grow) or 1)
            for f in range(5):
                chain = [pts[1 + 4 * f + k] for k in range(4)]
                width = _FINGER_WIDTH[f] * hand + grow
                draw.line([tuple(p) for p in chain], fill=colour, width=int(width), joint="curve")
                r = width / 2
                for p in chain[1:]:
                    draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=colour)
        drawn = np.array([elbow, wrist, *palm, *pts])
        reach = (max(fore_w, _FINGER_WIDTH.max() * hand) + 2 * ss) / 2 + 2  # half the widest stroke, and some
        x0, y0 = (np.floor((drawn.min(axis=0) - reach) / ss).astype(int) * ss).clip(0, [img.width, img.height])
        x1, y1 = (np.ceil((drawn.max(axis=0) + reach) / ss).astype(int) * ss).clip(0, [img.width, img.height])
        return img, (int(x0), int(y0), int(x1), int(y1))
