"""Training throughput: windows trained per second by one network (the demo's log-mel CNN, on audio).

1. **Fitting** (the goal): ``fit_prepared`` on one fold's training windows of the curated set, a fixed
   number of epochs, augmentation on, in one process with one and with two threads, and data-parallel
   over two processes with one thread each (Lightning's DDP, gloo on loopback, launched by torchrun).
   Windows per second = training windows x epochs / the fit's wall time (the slowest rank's). Each
   setting is fitted ``--repeats`` times, the settings in turns; the fastest fit of each is kept (as
   ``curate_bench.py`` keeps its best), and the median is recorded beside it. Goal: two processes at least
   1.6 times one process with one thread, on 2 cores' worth of work.
2. **Whole commands**, as a user waits for them (start-up, data loading, predictions and the embedding
   densities included, which every DDP rank does in full): ``symptomfuse train`` for that network on one
   process against ``--strategy ddp --devices 2``; and a whole cross-validation run (every network of
   the demo) with its model-folds over one and two worker processes (``--workers``).

    python benchmarks/train_bench.py [--curated demo_out/curated] [--epochs 6] [--repeats 3]

Without --curated it synthesizes and curates 16 people. Prints a table and writes
benchmarks/results/train_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "train_bench.json"


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB, the largest process of the command's tree) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, usage.ru_maxrss // 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_windows(curated: Path, folds: int, modalities: list[str]) -> int:
    """Training windows summed over the folds, split as ``symptomfuse train`` splits them."""
    from symptomfuse.data.dataset import load_curated
    from symptomfuse.train.crossval import ws_has_any
    from symptomfuse.train.splits import person_folds

    ws = load_curated(curated, modalities)
    split, _ = person_folds(ws.people, ws.y, folds, 0, [])
    return int(sum(ws_has_any(ws, modalities, f.train).sum() for f in split))


def fit_only(curated: Path, epochs: int, threads: int, out: Path) -> None:
    """One fit of the audio network on fold 0's training windows (every rank of a DDP launch runs this);
    rank 0 writes {seconds, windows, steps} to ``out``."""
    import torch

    torch.set_num_threads(threads)
    from symptomfuse.data.dataset import load_curated
    from symptomfuse.models.multimodal import MultimodalClassifier
    from symptomfuse.train import fit as F
    from symptomfuse.train.splits import person_folds

    ws = load_curated(curated, ["audio"])
    fold = person_folds(ws.people, ws.y, 2, 0, [])[0][0]
    model = MultimodalClassifier({"audio": {"name": "logmel_cnn"}}, None, len(ws.classes), init_seed=0)
    (xt, pt), (xv, pv) = F.prepare(model, ws, fold.train), F.prepare(model, ws, fold.val)
    model.encoders["audio"].fit_normalizer(xt["audio"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = F.TrainConfig(max_epochs=epochs, patience=epochs + 1, strategy="ddp" if world > 1 else "auto",
                        devices=world)
    augment = {"audio": ws.contract.modality("audio").augmentations.get("logmel")}
    t0 = time.perf_counter()
    F.fit_prepared(model, (xt, pt, ws.y[fold.train]), (xv, pv, ws.y[fold.val]), ws.classes, cfg, augment)
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps({"seconds": seconds, "windows": int(len(fold.train)) * epochs}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--fit-only":  # a child of the fitting benchmark
        fit_only(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curated", type=Path, default=None, help="a curated folder (default: synthesize 16 people)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3,
                    help="fits per setting, taken in turns; the fastest is kept, the median shown beside it")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the networks train")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    sf = [sys.executable, "-m", "symptomfuse.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))
    try:
        curated = args.curated
        if curated is None:
            print("synthesizing and curating 16 people ...", file=sys.stderr)
            subprocess.run([*sf, "synth", "--out", str(tmp / "cohort"), "--people", "16", "--seed", "0"], check=True,
                           capture_output=True)
            curated = tmp / "curated"
            subprocess.run([*sf, "curate", str(tmp / "cohort" / "manifest.csv"), "--out", str(curated), "--labels",
                            "healthy,parkinsons", "--modalities", "audio,keypoints"], check=True, capture_output=True)
        one = ["--modalities", "audio", "--fusion-modalities", "", "--late", "", "--baselines", "",
               "--folds", str(args.folds), "--epochs", str(args.epochs), "--patience", str(args.epochs + 1),
               "--device", args.device]
        windows = train_windows(curated, args.folds, ["audio"]) * args.epochs
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1"}
        rows = []
        me, result = [sys.executable, str(Path(__file__).resolve()), "--fit-only", str(curated), str(args.epochs)], \
            tmp / "fit.json"
        settings = {"1 process, 1 thread": lambda: [*me, "1", str(result)],
                    "1 process, 2 threads": lambda: [*me, "2", str(result)],
                    "DDP, 2 processes x 1 thread": lambda: [
                        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                        "127.0.0.1", "--master-port", str(_free_port()), *me[1:], "1", str(result)]}
        fits: dict[str, list] = {name: [] for name in settings}  # (seconds, windows, peak MB) of each fit
        for r in range(args.repeats if args.device == "cpu" else 0):  # in turns: a slow moment hits one fit
            for name, cmd in settings.items():
                print(f"fit, {name} ({r + 1} of {args.repeats}) ...", file=sys.stderr)
                _, rss = timed(cmd(), env)
                fit = json.loads(result.read_text())
                fits[name].append((fit["seconds"], fit["windows"], rss))
        for name, runs in fits.items():
            if runs:
                seconds, n, _ = min(runs)  # the fastest, as curate_bench keeps its best
                rows.append({"setting": name, "what": "fit (audio network)", "wall_s": round(seconds, 1),
                             "windows_per_s": round(n / seconds, 1),
                             "median_windows_per_s": round(n / statistics.median(s for s, _, _ in runs), 1),
                             "runs_s": [round(s, 2) for s, _, _ in runs], "peak_rss_mb": max(m for _, _, m in runs)})
        for name, extra in (("1 process, 1 thread", ["--workers", "1", "--threads", "1"]),
                            ("DDP, 2 processes x 1 thread", ["--strategy", "ddp", "--devices", "2", "--threads", "1"])):
            print(f"train command, {name} ...", file=sys.stderr)
            env["MASTER_PORT"] = str(_free_port())
            wall, rss = timed([*sf, "train", str(curated), "--out", str(tmp / "run"), *one, *extra], env)
            rows.append({"setting": name, "what": "train command (audio network)", "wall_s": round(wall, 1),
                         "windows_per_s": round(windows / wall, 1), "peak_rss_mb": rss})
        # a whole run: every network of the demo, model-folds over 1 and 2 workers
        mods = ["audio", "keypoints"]
        whole = ["--modalities", ",".join(mods), "--fusion-modalities", ",".join(mods), "--baselines", "lr",
                 "--folds", str(args.folds), "--epochs", str(args.epochs), "--patience", str(args.epochs + 1),
                 "--fusion-epochs", str(args.epochs), "--device", args.device]
        for workers in (1, 2):
            print(f"cross-validation, {workers} worker(s) ...", file=sys.stderr)
            wall, rss = timed([*sf, "train", str(curated), "--out", str(tmp / "run"), *whole, "--workers",
                               str(workers)], env)
            rows.append({"setting": f"--workers {workers}", "what": "whole run (audio, keypoints, fusions, lr)",
                         "wall_s": round(wall, 1), "windows_per_s": None, "peak_rss_mb": rss})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for group in ("fit (audio network)", "train command (audio network)"):
        members = [r for r in rows if r["what"] == group]
        for r in members:
            r["speedup"] = round(r["windows_per_s"] / members[0]["windows_per_s"], 2)
            if "median_windows_per_s" in r:
                r["median_speedup"] = round(r["median_windows_per_s"] / members[0]["median_windows_per_s"], 2)
    whole = [r for r in rows if r["what"].startswith("whole run")]
    for r in whole:
        r["speedup"] = round(whole[0]["wall_s"] / r["wall_s"], 2)
    header = f"{'setting':<30}{'what':<42}{'wall s':>8}{'windows/s':>11}{'speedup':>9}{'peak MB':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        wps = "" if r["windows_per_s"] is None else r["windows_per_s"]  # noqa: E501
        print(f"{r['setting']:<30}{r['what']:<42}{r['wall_s']:>8}{wps:>11}{r['speedup']:>9}{r['peak_rss_mb']:>9}"
              + (f"   (median of {len(r['runs_s'])}: {r['median_speedup']}x)" if "runs_s" in r else ""))
    print("(goal: fitting with DDP over 2 processes >= 1.6x one process with one thread)")
    record = {"benchmark": "train", "device": args.device, "goal_ddp_speedup": 1.6, "epochs": args.epochs,
              "folds": args.folds, "repeats": args.repeats,
              "curated": str(args.curated) if args.curated else "synthetic, 16 people", "rows": rows,
              "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    from symptomfuse.atomic import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
