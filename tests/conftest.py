from pathlib import Path

import numpy as np
import pytest

from symptomfuse.synth.cohort import SynthConfig, synthesize, write_av


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """A small synthetic cohort: 8 people (4 with the condition), 2 recordings each, 6 s."""
    out = tmp_path_factory.mktemp("cohort")
    synthesize(SynthConfig(people=8, seed=3, recordings_per_person=2, duration_s=6.0), out, workers=2,
               progress=False)
    return out


def make_av(path: Path, seconds: float, audio: bool = True, video: bool = True, seed: int = 0,
            fps: int = 25, rate: int = 16000, size=(160, 120)) -> Path:
    """A small media file with noise frames and a tone, or only one of the two streams."""
    import av

    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    tone = (0.3 * np.sin(2 * np.pi * rng.uniform(150, 300) * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    if audio and video:
        frames = (rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n))
        write_av(path, frames, tone, fps, rate, *size)
        return path
    with av.open(str(path), "w", format="mp4" if video else "ipod") as out:
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            for _ in range(n):
                img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        else:
            s = out.add_stream("aac", rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, 0
            for p in s.encode(frame):
                out.mux(p)
            for p in s.encode():
                out.mux(p)
    return path


@pytest.fixture
def loopback_only():
    """A command prefix that runs a command in a network namespace of its own with only loopback up, for
    engines that listen on every interface (Ray, torchrun's store): nothing outside the test can reach them.
    Needs root and iproute2 (``ip netns``); skipped otherwise."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "browser"))
    from headless import NetNamespace

    why = NetNamespace.available()
    if why is not None:
        pytest.skip(why)
    with NetNamespace() as ns:
        yield ns.prefix
