"""Interrupted runs: curate's workers die with it."""

import os
import signal
import subprocess
import sys
import time


def test_killing_curate_leaves_no_worker_behind(cohort, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "symptomfuse.cli", "curate", str(cohort / "manifest.csv"),
                             "--out", str(tmp_path / "cur"), "--labels", "healthy,parkinsons", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    children = []
    while time.time() < deadline and not children:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        time.sleep(0.2)
    assert children, "curate started no worker"
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 20
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not alive, f"workers {alive} outlived their killed parent"
