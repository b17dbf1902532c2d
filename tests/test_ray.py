"""Curation on Ray: a local Ray instance (in a network namespace with only loopback) gives the same
curated set as local processes: the same tables, cache keys and features."""

import subprocess
import sys

import numpy as np
import pytest

from symptomfuse.cli import main

pytest.importorskip("ray")


def test_curation_on_a_local_ray_instance_equals_the_local_run(cohort, tmp_path, loopback_only):
    args = [str(cohort / "manifest.csv"), "--labels", "healthy,parkinsons", "--workers", "2"]
    assert main(["curate", *args, "--out", str(tmp_path / "local")]) == 0
    done = subprocess.run(loopback_only + [sys.executable, "-m", "symptomfuse.cli", "curate", *args, "--out",
                                           str(tmp_path / "ray"), "--ray", "local"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(Ray)" in done.stderr  # the progress bar says where the work ran
    for name in ("windows.csv", "recordings.csv", "quarantine.csv", "contract.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    keys = sorted(p.relative_to(tmp_path / "local" / "cache")
                  for p in (tmp_path / "local" / "cache").rglob("*.npy"))  # entry folder / array
    assert keys and keys == sorted(p.relative_to(tmp_path / "ray" / "cache")
                                   for p in (tmp_path / "ray" / "cache").rglob("*.npy"))
    for key in keys:
        np.testing.assert_array_equal(np.load(tmp_path / "local" / "cache" / key),
                                      np.load(tmp_path / "ray" / "cache" / key), err_msg=str(key))
