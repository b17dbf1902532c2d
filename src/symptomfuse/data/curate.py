"""Curation: manifest + media files -> validated, windowed, cached features, a quarantine and a summary.

Steps, in order: read and check the manifest's rows (``manifest.check_rows``); hash each row's files and
reject missing, empty and duplicate files; look the content hash up in the feature cache; decode what is
not cached (``media.decode``, into scratch files), cut it into aligned windows and compute features with
the per-modality feature functions, a run of windows at a time, into the cache (so that a worker's memory
does not grow with a recording's length); write ``recordings.csv``, ``windows.csv``, ``quarantine.csv``, ``curation.json``,
``summary.json`` and ``summary.png``. A bad row never stops the run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from symptomfuse.atomic import atomic_write_text, check_out_folder
from symptomfuse.contract import FILE as CONTRACT_FILE, FeatureContract, order_classes
from symptomfuse.data.cache import FeatureCache, cache_key, file_digest
from symptomfuse.data.manifest import (REASONS, Candidate, Columns, Quarantined, TableSource, check_rows,
                                       conflicts, read_manifest, table_candidates)
from symptomfuse.data.featurize import featurize_job
from symptomfuse.data.media import STREAMS
from symptomfuse.parallel import run_jobs
from symptomfuse.errors import UsageError


def default_contract(**kw) -> FeatureContract:
    """Every registered media modality curated by default, with its default settings (``Timing`` fields and contract fields as
    keywords, e.g. ``hop_s=0.5``, ``pad_short=True``)."""
    from symptomfuse.modalities import Timing, available, get

    timing = {k: kw.pop(k) for k in list(kw) if k in Timing.__dataclass_fields__}
    names = kw.pop("modalities", [m for m in available() if get(m).source != "table" and get(m).curated_by_default])
    return FeatureContract.build(names, Timing(**timing), kw.pop("settings", None), **kw)


@dataclass
class CurationResult:
    recordings: pd.DataFrame
    windows: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict
    contract: FeatureContract
    decoded: int  # recordings decoded in this run (0 when everything came from the cache)
    cache_hits: int


def _recording_id(c: Candidate, used: set) -> str:
    path = c.video_path or c.audio_path
    rid = path.stem if path is not None else (f"{c.modalities[0]}_{c.fields.get('table_row', c.row)}"
                                              if c.table_row is not None else f"row{c.row}")
    if rid in used:
        rid = f"{rid}_row{c.row}"
    used.add(rid)
    return rid


def _file_checks(c: Candidate) -> tuple[str, str] | None:
    for p in dict.fromkeys(v for k, v in c.files.items() if k in STREAMS):
        if not p.exists():
            return "missing_file", f"file not found: {p}"
        if not p.is_file():
            return "unreadable", f"not a regular file: {p}"
        if p.stat().st_size == 0:
            return "empty_file", f"file is empty (0 bytes): {p}"
    return None


# What curate writes into its --out folder (and the default cache folder): it writes nothing else there.
OUTPUTS = ("recordings.csv", "windows.csv", "quarantine.csv", CONTRACT_FILE, "curation.json", "summary.json",
           "summary.png", "cache")


def curate(
    manifest: Path | None,
    out: Path,
    contract: FeatureContract | None = None,
    columns: Columns = Columns(),
    labels: list[str] | None = None,
    positive: str | None = None,
    root: Path | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    tables: list[TableSource] = (),
    person_pattern: str | None = None,
    drop_gated: bool = False,
    ray: str | None = None,
) -> CurationResult:
    """Curate a media manifest and/or feature tables into ``out``. ``contract`` names the media modalities
    and their settings (default: ``default_contract()``); each table becomes a modality of its own name.
    ``drop_gated``: leave out windows that fail a quality gate (a recording left with none is quarantined
    as ``gated``); either way, windows.csv says each window's gates and the summary counts them.
    ``ray``: decode and featurize on a Ray cluster (its address, or "local") instead of local processes;
    the media and the cache folder must be at the same paths on every node (a shared file system)."""
    import re

    contract = contract or default_contract()
    out = Path(out)
    if manifest is None and not tables:
        raise UsageError("give a manifest, or at least one --table")
    check_out_folder(out, OUTPUTS, "curate")
    pattern = None
    if person_pattern:
        try:
            pattern = re.compile(person_pattern)
        except re.error as exc:
            raise UsageError(f"--person-pattern {person_pattern!r} is not a regular expression: {exc}") from None
    candidates, bad, n_rows, df_cols, left_out, as_missing = [], [], 0, [], {}, {}
    if manifest is not None:
        manifest = Path(manifest)
        df = read_manifest(manifest, columns)
        candidates, bad = check_rows(df, Path(root) if root else manifest.parent, columns, labels,
                                     contract.bound(), pattern, confine=root is not None)
        n_rows, df_cols = len(df), list(df.columns)
    mods, kinds = dict(contract.modalities), dict(contract.kinds)
    from symptomfuse import modalities as registry

    for source in tables:
        registry.ensure(source.name, "table")
        if source.name in mods:
            raise UsageError(f"--table name {source.name!r} is already a modality: choose another")
        got, rejected, feature_cols, left_out[source.name], as_missing[source.name] = table_candidates(
            source, columns, labels, n_rows, pattern)
        candidates += got
        bad += rejected
        n_rows += len(got) + len(rejected)
        mods[source.name] = registry.get(source.name).Settings(tuple(feature_cols), source.path.name, source.live)
        kinds[source.name] = "table"
    candidates, rejected = conflicts(candidates, contract.label_scope)
    bad += rejected
    found = sorted({c.label for c in candidates})
    raw_labels = {str(r.fields.get(columns.label, "")).strip() for r in [*candidates, *bad]}
    label_map_unused = {raw: sorted(raw_labels - {""})[:5] for raw, _ in columns.label_map if raw not in raw_labels}
    classes = list(labels) if labels is not None else found
    if len(classes) == 2 and positive is None and labels is None:
        raise UsageError(f"two classes, {classes[0]!r} and {classes[1]!r}: say which one is positive (the "
                         f"condition) with --positive, or give --labels NEGATIVE,POSITIVE")
    if positive is None and len(classes) == 2:
        positive = classes[1]
    if positive is not None and positive not in classes and bad:  # its rows may all have failed a check
        reasons = Counter(q.reason for q in bad)
        raise UsageError(f"--positive {positive!r} is not the label of any row that passed the checks (labels "
                         f"found: {found}); {len(bad)} row(s) failed them: "
                         + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
                         + f" (e.g. row {bad[0].row}: {bad[0].detail}). Fix those rows, or check --positive "
                           "and --label-col")
    contract = FeatureContract(contract.timing, mods, kinds, tuple(order_classes(classes, positive)),
                               positive if len(classes) == 2 else None, contract.label_scope, contract.pad_short,
                               contract.ordinal)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(cache_dir) if cache_dir else out / "cache"
    cache = FeatureCache(cache_root)
    cache.sweep()  # scratch and staging folders of a curation that was killed

    # File-level checks and content hashes (cheap: no decoding).
    todo, hits, seen_content = [], [], {}
    for c in tqdm(candidates, desc="hash", unit="rec", disable=not progress, leave=False):
        problem = _file_checks(c)
        if problem:
            bad.append(Quarantined(c.row, *problem, c.fields))
            continue
        if c.table_row is not None:
            digests = [c.table, str(c.fields["table_row"])]
        else:
            digests = [file_digest(p) for p in dict.fromkeys(v for k, v in c.files.items() if k in STREAMS)]
            if tuple(digests) in seen_content:
                bad.append(Quarantined(c.row, "duplicate_content",
                                       f"same bytes as row {seen_content[tuple(digests)]}", c.fields))
                continue
            seen_content[tuple(digests)] = c.row
            for k, p in sorted(c.files.items()):
                if k not in STREAMS:
                    digests.append(file_digest(p) if p.is_file() else "missing")
        key = cache_key(digests, contract.cache_settings(list(c.modalities)))
        meta = cache.meta(key)
        (hits if meta is not None else todo).append((c, key, meta))

    results = list(hits)
    if todo:
        media = [t for t in todo if t[0].table_row is None]
        results += [featurize_job((c, contract, key, cache_root)) for c, key, _ in todo if c.table_row is not None]
        if media:
            results += run_jobs(featurize_job, [(c, contract, key, cache_root) for c, key, _ in media], workers,
                                "decode + features", progress, ray=ray)

    rec_rows, win_rows, used_ids = [], [], set()
    summary_cols: list[str] = []
    gated: dict[str, Counter] = {}  # stream -> gate answer -> windows
    dropped = 0
    for c, key, meta in sorted(results, key=lambda r: r[0].row):
        if meta["status"] != "ok":
            bad.append(Quarantined(c.row, meta["reason"], meta["detail"], c.fields))
            continue
        rid = _recording_id(c, used_ids)
        rec = {"recording_id": rid, "row": c.row, "person_id": c.person_id, "label": c.label,
               "session": c.session, "task": c.task,
               "files": json.dumps({k: str(v) for k, v in sorted(c.files.items())}),
               "duration_s": meta["duration_s"], "n_windows": meta["n_windows"],
               "modalities": "+".join(meta["modalities"]), "cache_key": key}
        summaries = meta.get("summaries", {})
        summary_cols += [k for k in summaries if k not in summary_cols]
        gates = meta.get("quality", {})
        rows = []
        for w, start in enumerate(meta["window_start_s"]):
            quality = {f"quality_{k}": v[w] for k, v in gates.items()}
            for k, v in gates.items():
                gated.setdefault(k, Counter())[v[w]] += 1
            if drop_gated and any(v != "ok" for v in quality.values()):
                dropped += 1
                continue
            rows.append({"recording_id": rid, "person_id": c.person_id, "label": c.label,
                         "session": c.session, "window": w, "start_s": float(start),
                         "end_s": float(start) + (contract.timing.window_s if c.table_row is None else 0.0),
                         **{k: float(v[w]) for k, v in summaries.items()}, **quality})
        if not rows:
            bad.append(Quarantined(c.row, "gated", f"all {meta['n_windows']} windows failed a quality gate "
                                                   "(--drop-gated)", c.fields))
            continue
        rec_rows.append(rec)
        win_rows += rows

    recordings = pd.DataFrame(rec_rows, columns=["recording_id", "row", "person_id", "label", "session", "task",
                                                 "files", "duration_s", "n_windows", "modalities", "cache_key"])
    quality_cols = [f"quality_{k}" for k in sorted(gated)]
    windows = pd.DataFrame(win_rows, columns=["recording_id", "person_id", "label", "session", "window",
                                              "start_s", "end_s", *summary_cols, *quality_cols]).fillna(
        {c: "" for c in quality_cols})
    bad.sort(key=lambda q: q.row)
    quarantine = pd.DataFrame([{"row": q.row, "reason": q.reason, "detail": q.detail,
                                **{k: v for k, v in q.fields.items()}} for q in bad])
    if quarantine.empty:
        quarantine = pd.DataFrame(columns=["row", "reason", "detail", *df_cols])
    summary = summarize(recordings, windows, quarantine, list(contract.classes))
    summary["cache"] = {"decoded": len(todo), "hits": len(hits)}
    summary["window_gates"] = {k: dict(sorted(v.items())) for k, v in sorted(gated.items())}
    summary["dropped_windows"] = dropped
    summary["columns_left_out"] = {name: cols for name, cols in left_out.items() if cols}
    summary["values_beyond_float32"] = {name: cols for name, cols in as_missing.items() if cols}
    summary["label_map_unused"] = label_map_unused  # raw value -> some label cells there are (a typo?)
    given = [set(v.split("+")) for v in recordings.modalities]
    summary["modalities"] = {}
    for m in contract.modalities:
        rows = [i for i, g in enumerate(given) if m in g]
        summary["modalities"][m] = {"recordings": len(rows),
                                    "people": int(recordings.person_id.iloc[rows].nunique()) if rows else 0}

    atomic_write_text(out / "recordings.csv", recordings.to_csv(index=False))
    atomic_write_text(out / "windows.csv", windows.to_csv(index=False))
    atomic_write_text(out / "quarantine.csv", quarantine.to_csv(index=False))
    contract.save(out)
    atomic_write_text(out / "curation.json", json.dumps({
        "manifest": str(manifest.resolve()) if manifest is not None else None,
        "tables": [{"name": t.name, "path": str(t.path.resolve()), "features": t.features} for t in tables],
        "columns": asdict(columns), "person_pattern": person_pattern,
        "cache_dir": str(cache_root.resolve()),
        # what the cache entries were computed with: a contract.json edited afterwards is told from it
        "features": contract.cache_settings(list(contract.modalities))}, indent=1))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    from symptomfuse.data.summary_plot import plot_summary  # matplotlib only when writing the plot
    plot_summary(recordings, windows, quarantine, list(contract.classes), out / "summary.png")
    return CurationResult(recordings, windows, quarantine, summary, contract, decoded=len(todo), cache_hits=len(hits))


def summarize(recordings: pd.DataFrame, windows: pd.DataFrame, quarantine: pd.DataFrame, classes: list) -> dict:
    per_class = {}
    for cls in classes:
        r = recordings[recordings["label"] == cls]
        d = r["duration_s"]
        per_class[cls] = {
            "people": int(r["person_id"].nunique()),
            "recordings": int(len(r)),
            "windows": int((windows["label"] == cls).sum()),
            "duration_s": {"total": float(d.sum()), "mean": float(d.mean()) if len(d) else 0.0,
                           "min": float(d.min()) if len(d) else 0.0, "max": float(d.max()) if len(d) else 0.0},
        }
    reasons = quarantine["reason"].value_counts().to_dict() if len(quarantine) else {}
    return {
        "classes": per_class,
        "totals": {"people": int(recordings["person_id"].nunique()), "recordings": int(len(recordings)),
                   "windows": int(len(windows)), "quarantined": int(len(quarantine)),
                   "duration_s": float(recordings["duration_s"].sum())},
        "quarantined_by_reason": {k: int(v) for k, v in sorted(reasons.items())},
        "reason_meanings": {k: REASONS[k] for k in reasons if k in REASONS},
    }


def format_summary(summary: dict) -> str:
    """The printed table: people, recordings, windows and durations per class; quarantine by reason."""
    lines = [f"{'class':<16}{'people':>8}{'recs':>8}{'windows':>9}{'total s':>10}{'mean s':>8}{'min s':>8}{'max s':>8}"]
    lines.append("-" * len(lines[0]))
    for cls, s in summary["classes"].items():
        d = s["duration_s"]
        lines.append(f"{cls:<16}{s['people']:>8}{s['recordings']:>8}{s['windows']:>9}{d['total']:>10.1f}"
                     f"{d['mean']:>8.2f}{d['min']:>8.2f}{d['max']:>8.2f}")
    t = summary["totals"]
    lines.append("-" * len(lines[0]))
    lines.append(f"{'all':<16}{t['people']:>8}{t['recordings']:>8}{t['windows']:>9}{t['duration_s']:>10.1f}")
    lines.append("")
    if summary["quarantined_by_reason"]:
        lines.append(f"quarantined rows: {t['quarantined']}")
        for reason, n in summary["quarantined_by_reason"].items():
            lines.append(f"  {reason:<20}{n:>5}  {REASONS.get(reason, '')}")
    else:
        lines.append("quarantined rows: 0")
    for table, cols in summary.get("columns_left_out", {}).items():
        lines.append(f"table {table}: column(s) left out, since some of their values are not numbers: "
                     + "; ".join(f"{c} ({why})" for c, why in cols.items())
                     + f". Correct those cells (a missing value is an empty cell), or leave the column(s) out "
                       f"knowingly: --table {table}=FILE::numeric-except:{','.join(cols)}")
    for table, cols in summary.get("values_beyond_float32", {}).items():
        lines.append(f"table {table}: values infinite or beyond 32-bit floats (|x| > 3.4e38), kept as missing: "
                     + ", ".join(f"{c} {n}" for c, n in cols.items()))
    for raw, cells in summary.get("label_map_unused", {}).items():
        lines.append(f"--label-map {raw}=...: no label cell is {raw!r} (the label cells are e.g. "
                     f"{', '.join(map(repr, cells))}); check how it is spelt")
    for stream, counts in summary.get("window_gates", {}).items():
        failed = {k: v for k, v in counts.items() if k != "ok"}
        if failed:
            lines.append(f"{stream} windows failing a quality gate: " + ", ".join(f"{k} {v}" for k, v in failed.items())
                         + (f" ({summary['dropped_windows']} windows dropped in all)" if summary.get("dropped_windows")
                            else " (kept; --drop-gated leaves them out)"))
    return "\n".join(lines)
