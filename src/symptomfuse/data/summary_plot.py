"""The data set at a glance: class balance, recording durations and quarantined rows, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state, faster to import

from symptomfuse.atomic import atomic_path


def plot_summary(recordings: pd.DataFrame, windows: pd.DataFrame, quarantine: pd.DataFrame,
                 classes: list, path: Path) -> None:
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.92, wspace=0.35)  # not tight_layout: 1 s
    ax = axes[0]
    x = np.arange(len(classes))
    counts = {
        "people": [recordings.loc[recordings.label == c, "person_id"].nunique() for c in classes],
        "recordings": [int((recordings.label == c).sum()) for c in classes],
        "windows": [int((windows.label == c).sum()) for c in classes],
    }
    for i, (name, vals) in enumerate(counts.items()):
        bars = ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, classes)
    if any(v > 0 for vals in counts.values() for v in vals):
        ax.set_yscale("log")  # windows outnumber people by two orders of magnitude
        ax.set_ylim(bottom=0.8)
    ax.set_title("class balance")
    ax.legend(fontsize=8)

    ax = axes[1]
    durations = [recordings.loc[recordings.label == c, "duration_s"].to_numpy() for c in classes]
    if any(len(d) for d in durations):
        bins = np.histogram_bin_edges(np.concatenate([d for d in durations if len(d)]), bins=20)
        for c, d in zip(classes, durations):
            ax.hist(d, bins=bins, alpha=0.6, label=c)
        ax.legend(fontsize=8)
    ax.set_xlabel("recording duration (s)")
    ax.set_ylabel("recordings")
    ax.set_title("durations")

    ax = axes[2]
    reasons = quarantine["reason"].value_counts() if len(quarantine) else pd.Series(dtype=int)
    if len(reasons):
        ax.barh(reasons.index[::-1], reasons.values[::-1], color="tab:red")
        ax.set_xlabel("rows")
    else:
        ax.text(0.5, 0.5, "no quarantined rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"quarantined ({len(quarantine)})")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
