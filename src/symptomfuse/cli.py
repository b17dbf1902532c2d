"""The ``symptomfuse`` command: one subcommand per stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from symptomfuse import NOTICE, __version__
from symptomfuse.errors import UsageError

DESCRIPTION = f"""\
symptomfuse: multi-modal (voice + video) classifiers for early signs of disease.
{NOTICE}

Stages:  synth -> curate -> train -> evaluate -> export -> stream (terminal) or serve (browser)
Run `symptomfuse COMMAND --help` for the options and an example of each."""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless the help already says what the default is in words
    (``(default: every curated modality)``), where argparse's ``(default: None)`` would only confuse."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    return w, h


def _csv_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _folds(text: str):
    """--folds: a number of folds, or "loo" (one per person)."""
    from symptomfuse.train.splits import LEAVE_ONE_OUT

    if text.strip().lower() == LEAVE_ONE_OUT:
        return LEAVE_ONE_OUT
    try:
        return _number(int, 2, 100)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (a number of folds from 2 to 100, or {LEAVE_ONE_OUT}: one per "
                                         "person)") from None


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a finite int or float within [low, high] (open ends where asked)."""
    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high}, got {text}")
        return value
    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at character {exc.pos}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError(f"expected a JSON object of objects such as "
                                         f"'{{\"audio\": {{\"dim\": 16}}}}', got {text!r}")
    return value


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", formatter_class=_Formatter,
        help="write the synthetic voice + video cohort (MP4s, keypoints, manifest.csv)",
        description="""\
Write a synthetic cohort of people with and without the condition: for each person several MP4
recordings (H.264 video of a hand resting, then finger tapping; AAC audio of a sustained /a/), the
ground-truth hand keypoints (.keypoints.npy, 21 MediaPipe landmarks a frame), the generative parameters
(.json, and people.json), and manifest.csv with path, person_id, label, session, keypoints.

People with the condition show voice signs only, movement signs only, or both, in the shares given by
--voice-only/--movement-only/--both; severities overlap healthy variation, so neither modality alone
finds everyone. The same --seed and options always give the same files.""",
        epilog="example:\n  symptomfuse synth --out data/cohort --people 48 --seed 0")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new or empty, or an earlier synth's (never a folder of other files)")
    p.add_argument("--people", type=_number(int, 2, 100_000), default=48, help="number of people")
    p.add_argument("--seed", type=_number(int, 0, 2**31 - 1), default=0, help="random seed")
    p.add_argument("--recordings", type=_number(int, 1, 1000), default=3, help="recordings (sessions) per person")
    p.add_argument("--duration", type=_number(float, 6, 3600), default=8.0, help="seconds per recording (>= 6)")
    p.add_argument("--fps", type=_number(int, 25, 240), default=25, help="video frame rate (>= 25)")
    p.add_argument("--size", type=_size, default=(320, 240), help="video WIDTHxHEIGHT, even, from 160x120 to 1920 on a side")
    p.add_argument("--condition-fraction", type=_number(float, 0, 1), default=0.5, help="share of people with the condition")
    p.add_argument("--voice-only", type=_number(float, 0, 1), default=0.35, help="share of the condition with voice signs only")
    p.add_argument("--movement-only", type=_number(float, 0, 1), default=0.35,
                   help="share of the condition with movement signs only")
    p.add_argument("--both", type=_number(float, 0, 1), default=0.30, help="share of the condition with both")
    p.add_argument("--tasks", choices=["together", "separate"], default="together",
                   help="together: one A/V file a session (voice and hand at once); separate: a voice recording "
                        "(.m4a) and a hand recording (.mp4) a session, on separate manifest rows with a task column")
    p.add_argument("--missing-task", type=_number(float, 0, 1, high_open=True), default=0.2,
                   help="with --tasks separate: share of people who lack one of the two tasks")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=None,
                   help="processes (default, and at most: one per CPU this process may use)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from symptomfuse.synth.cohort import SynthConfig, synthesize

    cfg = SynthConfig(people=args.people, seed=args.seed, recordings_per_person=args.recordings,
                      duration_s=args.duration, fps=args.fps, width=args.size[0], height=args.size[1],
                      condition_fraction=args.condition_fraction,
                      phenotypes={"voice": args.voice_only, "movement": args.movement_only, "both": args.both},
                      tasks=args.tasks, missing_task=args.missing_task)
    t0 = time.perf_counter()
    manifest = synthesize(cfg, args.out, workers=_local_workers(args.workers))
    counts = manifest.groupby("label")["person_id"].nunique().to_dict()
    print(f"wrote {len(manifest)} recordings of {manifest.person_id.nunique()} people {counts} "
          f"to {args.out} in {time.perf_counter() - t0:.1f} s; manifest: {args.out / 'manifest.csv'}")
    return 0


def _add_curate(sub) -> None:
    from symptomfuse import modalities as registry

    mods = {m: registry.get(m) for m in registry.available()}
    media_help = ", ".join(f"{m} ({cls.help})" for m, cls in mods.items())
    p = sub.add_parser(
        "curate", formatter_class=_Formatter,
        help="validate recordings and feature tables, cut aligned windows, extract and cache features",
        description=f"""\
Read a manifest CSV (one row per recording: a file with sound and picture in --path-col, or separate
files in --audio-col and --video-col; a person and a label on every row) and/or feature tables (--table),
check every row, decode with PyAV (audio to 16 kHz mono, video to a fixed rate and size), cut aligned
windows, and extract each modality's features with its one feature function. Features are cached by
content: a re-run with nothing changed decodes nothing.

Modalities: {media_help}. A row gives the modalities whose inputs it names: a --path-col file gives
every modality fed by sound or picture; separately recorded tasks (a voice recording in --audio-col
only, a hand recording in --video-col only) give theirs. Each --table NAME=FILE becomes a modality
NAME: one feature vector per table row, from the columns FEATURES names (numeric: every numeric column
but the person, label, session and task columns; prefix:P; cols:A,B).

Bad rows never stop the run: they go to quarantine.csv with a reason (bad_fields, missing_field,
unknown_label, duplicate_row, conflicting_labels, outside_root, missing_file, empty_file,
duplicate_content, unreadable, corrupt, no_audio, no_video, too_short, bad_keypoints, gated).
Writes recordings.csv, windows.csv, quarantine.csv, contract.json (the feature contract: settings,
classes, positive class, whether they are ordinal ratings), curation.json, summary.json and summary.png to --out.

Exit code: 0 when usable recordings remain; 1 when none does, or with --strict when any row was
quarantined; 2 for bad arguments or an unreadable manifest.""",
        epilog="examples:\n  symptomfuse curate data/cohort/manifest.csv --out data/curated --labels healthy,parkinsons\n"
               "  symptomfuse curate sheet.csv --out cur --person-col subject --label-col diagnosis \\\n"
               "      --audio-col wav --video-col mp4 --labels control,pd --window 4 --hop 2\n"
               "  symptomfuse curate --table voice=data/uci_parkinsons/parkinsons.csv --out cur \\\n"
               "      --person-col name --person-pattern '(phon_R01_S\\d+)' --label-col status --positive 1\n"
               "  symptomfuse curate --table tap=ratings.csv --out cur --person-col video --label-col updrs_3_4 \\\n"
               "      --labels 0,1,2,3,4 --ordinal --label-scope recording     # severity ratings")
    p.add_argument("manifest", type=Path, nargs="?", default=None, help="manifest CSV (optional with --table)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new or empty, or an earlier curation's, whose cache it reuses (never a folder "
                        "of other files)")
    p.add_argument("--table", action="append", default=[], metavar="NAME=FILE[::FEATURES]",
                   help="a feature table (CSV or Parquet) as modality NAME; FEATURES: numeric (default), "
                        "prefix:P or cols:A,B (repeatable)")
    p.add_argument("--labels", type=_csv_list, default=None,
                   help="allowed class names, comma-separated; with two, the second is the positive class unless "
                        "--positive says otherwise (default: every label found)")
    p.add_argument("--positive", default=None,
                   help="the positive class (the condition): required with two classes and no --labels")
    p.add_argument("--label-map", type=_csv_list, action="extend", default=[], metavar="RAW=CLASS,...",
                   help="rename raw label values before any check, e.g. 1.0=pd,0.0=control,yes=pd,no=control "
                        "(tables that spell the same classes differently; the flag may be repeated). A raw value "
                        "that no label cell has is named in the summary")
    p.add_argument("--root", type=Path, default=None,
                   help="the data root: relative paths start from it, and no media path, absolute or relative, "
                        "may lead outside it (quarantined as outside_root). Without it, relative paths start from "
                        "the manifest's folder and may not climb out of it")
    p.add_argument("--path-col", default="path", help="column of files holding both audio and video")
    p.add_argument("--audio-col", default="audio_path", help="column of separate audio files")
    p.add_argument("--video-col", default="video_path", help="column of separate video files")
    p.add_argument("--person-col", default="person_id", help="column identifying the person")
    p.add_argument("--person-pattern", default=None,
                   help="regular expression whose first group is the person id within --person-col "
                        "(e.g. '(phon_R01_S\\d+)' for UCI's recording names)")
    p.add_argument("--label-col", default="label", help="column with the class label")
    p.add_argument("--session-col", default="session", help="column with the session (optional)")
    p.add_argument("--task-col", default="task", help="column naming the task recorded (optional)")
    by_column: dict[str, list[str]] = {}  # a column (or an option) several modalities read is one flag
    for m, cls in mods.items():
        if cls.column is not None:
            by_column.setdefault(cls.column, []).append(m)
    for column, users in by_column.items():
        p.add_argument(f"--{column.replace('_', '-')}-col", dest=f"col_{column}", default=column,
                       help=f"column of the files {' and '.join(users)} read (optional)")
    p.add_argument("--modalities", type=_csv_list, default=None,
                   help=f"media modalities to curate (default with a manifest: "
                        f"{','.join(m for m, c in mods.items() if c.source != 'table' and c.curated_by_default)}; "
                        f"also available: {','.join(m for m, c in mods.items() if c.source != 'table' and not c.curated_by_default)})")
    p.add_argument("--window", type=_number(float, 0, low_open=True), default=3.0, help="window length in seconds")
    p.add_argument("--hop", type=_number(float, 0, low_open=True), default=1.0, help="hop between windows in seconds")
    p.add_argument("--fps", type=_number(float, 1, 240), default=25.0, help="video frame rate after decoding")
    by_flag: dict[str, list[str]] = {}
    for m, cls in mods.items():
        for flag, (_, text) in cls.options.items():
            by_flag.setdefault(flag, []).append(m)
    for flag, users in by_flag.items():
        text = mods[users[0]].options[flag][1] + (f" (for {' and '.join(users)})" if len(users) > 1 else "")
        p.add_argument(flag, dest=_option_dest(flag), default=None, help=text,
                       metavar=flag.strip("-").split("-")[-1].upper())
    p.add_argument("--label-scope", choices=["person", "recording"], default="person",
                   help="person: one label per person (a diagnosis), conflicting rows are quarantined; "
                        "recording: labels may differ between a person's recordings")
    p.add_argument("--ordinal", action="store_true",
                   help="the labels are ordered ratings, three or more numbers (e.g. --labels 0,1,2,3,4 for an "
                        "MDS-UPDRS item): evaluation adds the mean absolute error, within-one accuracy and a "
                        "confusion matrix of ratings, the model chosen on validation people is chosen by that "
                        "error, and train --loss ordinal may be used. Class names that are numbers but not "
                        "ratings (spoken digits, codes) stay plain classes without it")
    p.add_argument("--pad-short", action="store_true",
                   help="pad recordings shorter than one window instead of quarantining them")
    p.add_argument("--drop-gated", action="store_true",
                   help="leave out windows that fail the live quality gates (silence, no voice, dark or frozen "
                        "picture), so no model learns them as a class; they are counted in the summary either way")
    p.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: OUT/cache)")
    p.add_argument("--workers", type=_number(int, 1), default=None,
                   help="processes (default, and at most: one per CPU this process may use)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="decode and featurize on a Ray cluster (ADDRESS, e.g. ray://head:10001 or auto) or on a Ray "
                        "instance on this machine alone (local, with --workers CPUs). The media and the cache must be "
                        "at the same paths on every node (a shared file system). The outputs equal a local run's")
    p.add_argument("--strict", action="store_true", help="exit with 1 if any row was quarantined")
    p.set_defaults(func=_run_curate)


def _option_dest(flag: str) -> str:
    """Where argparse keeps a modality option's text (one place for every modality that takes the flag)."""
    return f"opt_{flag.strip('-').replace('-', '_')}"


def _run_curate(args) -> int:
    from symptomfuse import modalities as registry
    from symptomfuse.contract import FeatureContract
    from symptomfuse.data.curate import curate, format_summary
    from symptomfuse.data.manifest import Columns, TableSource
    from symptomfuse.modalities import Timing

    if args.manifest is None and not args.table:
        raise UsageError("give a manifest CSV, or at least one --table NAME=FILE")
    tables = [TableSource.parse(t) for t in args.table]
    names = args.modalities
    if names is None:
        names = [m for m in registry.available() if registry.get(m).source != "table"
                 and registry.get(m).curated_by_default] if args.manifest else []
    elif not names and args.manifest is not None:
        raise UsageError("--modalities names no modality, so no row of the manifest could "
                         f"be curated: name some ({', '.join(m for m in registry.available() if registry.get(m).source != 'table')}), "
                         "or leave --modalities out for the default")
    registry.check_names(names)
    settings = {}
    flags = {flag for m in registry.available() for flag in registry.get(m).options}
    for flag in sorted(flags):
        text = getattr(args, _option_dest(flag), None)
        if text is None:
            continue
        takers = [m for m in registry.available() if flag in registry.get(m).options]
        users = [m for m in takers if m in names]
        if not users:
            raise UsageError(f"{flag} sets {' and '.join(takers)}, which are not curated (--modalities {','.join(names)})")
        for m in users:
            parse, expected = registry.get(m).options[flag]
            try:
                settings.setdefault(m, {}).update(parse(text))
            except (TypeError, ValueError):
                raise UsageError(f"{flag}: cannot read {text!r}; expected the {expected}") from None
    try:
        contract = FeatureContract.build(names, Timing(args.window, args.hop, args.fps), settings,
                                         label_scope=args.label_scope, pad_short=args.pad_short,
                                         ordinal=args.ordinal)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    files = tuple(dict.fromkeys((cls.column, getattr(args, f"col_{cls.column}"))
                                for cls in map(registry.get, registry.available()) if cls.column is not None))
    label_map = []
    for item in args.label_map:
        raw, sep, name = item.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise UsageError(f"--label-map {item!r}: expected RAW=CLASS, e.g. 1.0=pd")
        earlier = dict(label_map).get(raw.strip())
        if earlier is not None and earlier != name.strip():
            raise UsageError(f"--label-map maps {raw.strip()!r} twice, to {earlier!r} and to {name.strip()!r}: keep one")
        label_map.append((raw.strip(), name.strip()))
    columns = Columns(path=args.path_col, audio=args.audio_col, video=args.video_col, person=args.person_col,
                      label=args.label_col, session=args.session_col, task=args.task_col, files=files,
                      label_map=tuple(label_map))
    if args.labels is not None and not args.labels:
        raise UsageError("--labels names no class: give the allowed class names, e.g. --labels healthy,parkinsons, "
                         "or leave it out to take every label found")
    if args.labels is not None and len(set(args.labels)) != len(args.labels):
        raise UsageError(f"--labels repeats a class: {args.labels}")
    for t in tables:
        if not t.path.is_file():
            raise UsageError(f"--table {t.name}: no such file {t.path}")
    if args.manifest is not None and not args.manifest.is_file():
        raise UsageError(f"manifest not found: {args.manifest}")
    if args.person_pattern is not None:
        import re

        try:
            re.compile(args.person_pattern)
        except re.error as exc:
            raise UsageError(f"--person-pattern {args.person_pattern!r} is not a regular expression: {exc}") from None
    t0 = time.perf_counter()
    result = curate(args.manifest, args.out, contract, columns, labels=args.labels, positive=args.positive,
                    root=args.root, cache_dir=args.cache, tables=tables,
                    workers=_local_workers(args.workers) if args.ray in (None, "local") else args.workers,
                    person_pattern=args.person_pattern, drop_gated=args.drop_gated, ray=args.ray)
    print(format_summary(result.summary))
    print("\nmodalities: " + ", ".join(f"{m} ({v['people']} people, {v['recordings']} recordings)"
                                      for m, v in result.summary["modalities"].items()))
    c = result.contract
    print(f"classes: {', '.join(c.classes)}" + (f"; positive class: {c.positive}" if c.positive else ""))
    usable = sorted(set(result.recordings.label)) if not result.recordings.empty else []
    if len(usable) == 1:
        print(f"note: every usable recording has the label {usable[0]!r}, and `train` needs two classes or more: "
              "this folder serves to check the recordings (quarantine.csv, the quality gates); curate the other "
              "class's rows with them to train", file=sys.stderr)
    print(f"decoded {result.decoded} recording(s), {result.cache_hits} from the cache, "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {args.out}/: recordings.csv windows.csv quarantine.csv contract.json summary.json summary.png")
    if result.recordings.empty:
        print("error: no usable recording remains; see quarantine.csv for why", file=sys.stderr)
        return 1
    if args.strict and len(result.quarantine):
        print(f"error (--strict): {len(result.quarantine)} row(s) quarantined; see quarantine.csv",
              file=sys.stderr)
        return 1
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", formatter_class=_Formatter,
        help="cross-validate single-modality, fused and baseline classifiers, grouped by person",
        description=f"""\
Train every model of a run with k-fold cross-validation grouped by person (stratified by label): one
network per modality (--modalities), each intermediate fusion (--fusions) and late fusion (--late)
over --fusion-modalities, plain scikit-learn baselines (--baselines) under the same folds, and
chosen_on_val: in each fold, the network or baseline that did best on that fold's validation people
(the honest figure for a model picked from the table; the best test figure of many flatters). Fused
models take the same fold's single-modality encoders (frozen unless --finetune-fusion) and learn their
fusion with modality dropout, so they work with any subset of their modalities. Early stopping,
temperature scaling and late-fusion weights use validation people inside the training folds; test
people are only predicted. Writes run.json, samples.csv, predictions/ (out-of-fold) and models/
(safetensors + JSON).

--unit says what one prediction is about: recording (each window of a time-aligned recording, averaged
up to recordings and people), session or person (all of a person's separately recorded tasks fused:
each modality's windows are pooled over the person's recordings of it, and people missing a task are
still scored, with that modality masked).

Every name and number is checked before any data is loaded. {NOTICE}""",
        epilog="examples:\n  symptomfuse train demo_out/curated --out demo_out/run --fusion-modalities audio,keypoints\n"
               "  symptomfuse train fsdd_curated --out fsdd_run --modalities audio --folds 6\n"
               "  symptomfuse train tasks_curated --out tasks_run --unit person --encoder audio=logmel_cnn")
    p.add_argument("curated", type=Path, help="a folder written by `symptomfuse curate`")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder: new or empty, or an earlier run's, which is replaced (--resume: continued); never a "
                        "folder of other files")
    p.add_argument("--modalities", type=_csv_list, default=None,
                   help="single-modality models to train (default: every curated modality)")
    p.add_argument("--fusion-modalities", type=_csv_list, default=None,
                   help="modalities the fused models combine (default: --modalities; empty: no fusion)")
    p.add_argument("--fusions", type=_csv_list, default=["concat", "gated", "attention", "uncertainty"],
                   help="intermediate fusion modules")
    p.add_argument("--late", type=_csv_list, default=["mean", "weighted", "stacking"],
                   help="late fusions of the single-modality probabilities")
    p.add_argument("--baselines", type=_csv_list, default=["lr", "rf", "gb"],
                   help="scikit-learn baselines per modality and over the fusion modalities: lr, rf, gb (empty: none)")
    p.add_argument("--encoder", action="append", default=[], metavar="MODALITY=ENCODER",
                   help="the encoder of a modality (default: the modality's own default; repeatable)")
    p.add_argument("--encoder-args", type=_json_object, default={},
                   help='JSON keyword arguments per modality, e.g. \'{"audio": {"channels": [8, 16, 32]}}\'')
    p.add_argument("--unit", choices=["recording", "session", "person"], default="recording",
                   help="what a prediction is about (see above)")
    p.add_argument("--folds", type=_folds, default=5,
                   help="cross-validation folds (2-100), or loo: leave one person out, a fold per person (each "
                        "person's windows predicted by models trained on everyone else, as many small clinical "
                        "studies report; one training per person and model)")
    p.add_argument("--split", choices=["person", "record"], default="person",
                   help="group folds by person, or by record (recordings of one person on both sides: a leak, "
                        "refused unless --allow-leaky-split)")
    p.add_argument("--split-file", type=Path, default=None,
                   help="a fixed split instead of cross-validation: CSV with person_id and split (train, dev, "
                        "calib, test; people not named train). Dev people early-stop and fit late fusions, calib "
                        "people fit the temperatures, test people are only scored (once)")
    p.add_argument("--allow-leaky-split", action="store_true",
                   help="allow --split record, to show how much such a leak inflates results (the report says so)")
    p.add_argument("--allow-separating-columns", action="store_true",
                   help="allow feature-table columns that separate the classes perfectly on training people")
    p.add_argument("--held-out", type=_csv_list, default=[], help="people kept out of every fold")
    p.add_argument("--epochs", type=_number(int, 1, 10_000), default=20, help="maximum epochs")
    p.add_argument("--patience", type=_number(int, 1, 10_000), default=4, help="early-stopping patience (epochs)")
    p.add_argument("--fusion-epochs", type=_number(int, 1, 10_000), default=20, help="maximum epochs for fused models")
    p.add_argument("--finetune-fusion", action="store_true",
                   help="fine-tune the encoders with the fusion (default: encoders frozen, as trained alone; "
                        "only the fusion and head learn, which is cheaper and keeps each modality's evidence "
                        "as its own model saw it)")
    p.add_argument("--batch-size", type=_number(int, 1, 65_536), default=32)
    p.add_argument("--lr", type=_number(float, 0, 10, low_open=True), default=2e-3)
    p.add_argument("--modality-dropout", type=_number(float, 0, 1, high_open=True), default=0.3)
    p.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    p.add_argument("--prepared-mb", type=_number(float, 1, 1e7), default=2048.0, metavar="MB",
                   help="prepared inputs are kept in memory up to this size: every window's, per training "
                        "process, for all the model-folds it trains; if those do not fit, a fold's training and "
                        "validation windows'; beyond that (long recordings) each batch is prepared from the cache "
                        "on disk when drawn, and the encoders' scalers are fitted on a sample of the training "
                        "windows that fits")
    p.add_argument("--loss", choices=["cross-entropy", "ordinal"], default="cross-entropy",
                   help="ordinal: for ratings (curated with --ordinal, e.g. --labels 0,1,2,3,4), cross-entropy "
                        "plus the squared earth mover's distance between predicted and true rating distributions, "
                        "so a rating two off costs more than one off")
    p.add_argument("--seed", type=_number(int, 0, 2**31 - 1), default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was interrupted, from its last finished model-fold (the same arguments; "
                        "the result equals an uninterrupted run). Without it, a new run in a folder that holds one "
                        "clears the earlier run's artifacts first: two runs are never mixed")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=None,
                   help="processes that train networks side by side, one model-fold each (default, and at most: one per "
                        "CPU this process may use); "
                        "fused models start when their fold's single-modality models are done. The results do not "
                        "depend on this")
    p.add_argument("--threads", type=_number(int, 1, 1024), default=1,
                   help="threads each model-fold trains on. The numbers depend on it (float rounding), so it is "
                        "recorded in run.json; one per process uses the cores best when there are many model-folds")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                   help="where networks train: auto takes a CUDA GPU when torch sees one (mixed precision there)")
    p.add_argument("--strategy", choices=["auto", "ddp"], default="auto",
                   help="ddp: each network trains data-parallel over --devices x --num-nodes processes (Lightning's "
                        "DDP; gloo on CPUs). Lightning starts the other processes itself, or launch them with "
                        "torchrun --nproc-per-node N -m symptomfuse.cli train ...; only rank 0 writes the run folder")
    p.add_argument("--devices", type=_number(int, 1, 4096), default=1, help="processes (or GPUs) per node for --strategy ddp")
    p.add_argument("--num-nodes", type=_number(int, 1, 4096), default=1, help="nodes for --strategy ddp")
    p.set_defaults(func=_run_train)


def _train_plan(args):
    """Check every name, encoder keyword and combination against the curated set's feature contract, before
    any data is loaded. Returns (contract, modalities, fusion modalities, encoder configs)."""
    import inspect

    from symptomfuse.atomic import read_json
    from symptomfuse.contract import FeatureContract
    from symptomfuse.data.dataset import REDO
    from symptomfuse.fusion.late import LATE
    from symptomfuse.models.multimodal import registered_class
    from symptomfuse.models.registry import available
    from symptomfuse.train.baselines import BASELINES

    if not (args.curated / "curation.json").exists():
        raise UsageError(f"{args.curated} is not a curated data set (no curation.json): run `symptomfuse curate`")
    contract = FeatureContract.load(args.curated)
    curated = list(contract.modalities)
    summary = read_json(args.curated / "summary.json", REDO) if (args.curated / "summary.json").exists() else {}
    counts = summary.get("modalities", {}) if isinstance(summary, dict) else None  # modality -> {"recordings": n}
    if not isinstance(counts, dict) or not all(isinstance(c, dict) for c in counts.values()):
        raise UsageError(f"{args.curated / 'summary.json'} is damaged (its modalities are not counts): {REDO}")
    empty = [m for m in curated if counts.get(m, {}).get("recordings", 1) == 0]
    if curated and len(empty) == len(curated):
        raise UsageError(f"{args.curated} holds no usable recording: its quarantine.csv says why each row was set aside")
    if args.modalities is None and empty:  # e.g. keypoints curated by default, but no row gave landmarks
        print(f"not trained: {', '.join(empty)} (no curated recording has it)", file=sys.stderr)
    mods = [m for m in curated if m not in empty] if args.modalities is None else args.modalities
    fusion_mods = mods if args.fusion_modalities is None else args.fusion_modalities
    bad = [m for m in dict.fromkeys([*mods, *fusion_mods]) if m not in curated]
    if bad:
        raise UsageError(f"modalities {bad} are not in {args.curated}; it has {', '.join(curated)}")
    bad = [m for m in dict.fromkeys([*mods, *fusion_mods]) if m in empty]
    if bad:
        raise UsageError(f"modalities {bad} have no curated recording in {args.curated} (see its summary.json: "
                         f"rows without their input were left out); train the others")
    if not mods and not fusion_mods:
        raise UsageError("no modality to train: give --modalities")
    mods = list(dict.fromkeys([*mods, *fusion_mods]))
    for kind, names, known in (("fusion", args.fusions, available("fusion")), ("late fusion", args.late, list(LATE)),
                               ("baseline", args.baselines, list(BASELINES))):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown {kind} {unknown}; available: {', '.join(known)}")
    chosen = {}
    for item in args.encoder:
        m, sep, name = item.partition("=")
        if not sep or m not in curated:
            raise UsageError(f"--encoder {item!r}: expected MODALITY=ENCODER with MODALITY one of {', '.join(curated)}")
        if name not in available("encoder"):
            raise UsageError(f"--encoder {item!r}: unknown encoder; available: {', '.join(available('encoder'))}")
        chosen[m] = name
    extra = [m for m in args.encoder_args if m not in mods]
    if extra:
        raise UsageError(f"--encoder-args names {extra}, which are not trained here ({', '.join(mods)})")
    encoders = {}
    for m in mods:
        mod = contract.modality(m)
        name = chosen.get(m, mod.default_encoder)
        params = inspect.signature(registered_class("encoder", name)).parameters
        given = args.encoder_args.get(m, {})
        unknown = [k for k in given if k not in params]
        if unknown:
            raise UsageError(f"--encoder-args for {m}: {name} takes no {unknown}; it takes {', '.join(params)}")
        shaped = {k: v for k, v in mod.encoder_args().items() if k in params}
        fixed = {k: v for k, v in shaped.items() if k in given and given[k] != v}
        if fixed:
            raise UsageError(f"--encoder-args for {m}: " + "; ".join(f"{k} is {v!r} in the curated data, not {given[k]!r}"
                                                                     for k, v in fixed.items())
                             + f": the encoder takes it from there; leave {', '.join(fixed)} out")
        encoders[m] = {"name": name, **shaped, **given}
        _check_buildable(m, encoders[m], given, len(contract.classes), mod.input_shape(), mod.dtype)
    if args.split_file is not None and (args.split == "record" or args.held_out):
        raise UsageError("--split-file is a split of its own: it goes with neither --split record nor --held-out")
    if args.split == "record" and not args.allow_leaky_split:
        raise UsageError("--split record puts recordings of one person on both sides of the split, which leaks: "
                         "add --allow-leaky-split to run it anyway (the report marks it), or use --split person")
    if args.unit != "recording" and args.finetune_fusion:
        raise UsageError("--finetune-fusion trains on windows: use it with --unit recording")
    if args.loss == "ordinal" and contract.class_values() is None:
        raise UsageError(f"--loss ordinal is for ordered ratings: three or more classes that are numbers (such as "
                         f"0,1,2,3,4), curated with --ordinal; this curated set's classes are "
                         f"{', '.join(contract.classes)}" + ("" if contract.ordinal else ", curated without --ordinal"))
    if args.strategy == "ddp" and (args.resume or (args.workers or 1) > 1):
        raise UsageError("--strategy ddp runs every model-fold over all its processes in step: it goes with neither "
                         "--resume nor --workers above 1")
    if args.strategy != "ddp" and (args.devices > 1 or args.num_nodes > 1):
        raise UsageError("--devices and --num-nodes above 1 train data-parallel: add --strategy ddp")
    if args.unit != "recording" and contract.label_scope != "person":
        raise UsageError(f"--unit {args.unit} needs one label per person (curate with --label-scope person)")
    return contract, mods, [m for m in fusion_mods if m], encoders


def _run_train(args) -> int:
    import numpy as np

    from symptomfuse.data.dataset import load_curated
    from symptomfuse.train.crossval import cross_validate, default_specs
    from symptomfuse.train.fit import TrainConfig
    from symptomfuse.train.splits import (LEAVE_ONE_OUT, check_label_columns, fixed_split, person_folds,
                                          not_curated, read_split_file)

    import shutil
    import tempfile

    from symptomfuse.train.distributed import global_rank
    from symptomfuse.train.fit import resolve_accelerator

    contract, mods, fusion_mods, encoders = _train_plan(args)
    resolve_accelerator(args.device)  # a GPU asked for and not there: said now, not after loading data
    rank = global_rank(args.devices) if args.strategy == "ddp" else 0
    assignment = read_split_file(args.split_file) if args.split_file is not None else None
    t0 = time.perf_counter()
    ws = load_curated(args.curated, mods)
    present = sorted({ws.classes[i] for i in np.unique(ws.y)})
    if len(present) < 2:  # the other classes' rows were all quarantined, or left out by --modalities
        raise UsageError(f"{args.curated}: " + (f"every usable recording has the label {present[0]!r}" if present else
                                                 "no usable recording") + ", and a classifier needs two classes or "
                         "more. Its quarantine.csv says why the other rows were set aside")
    if assignment is not None:
        folds = [fixed_split(ws.people, assignment)]
        _say_not_curated("split file", not_curated(ws.people, assignment), len(assignment), args.curated)
    else:
        groups = ws.windows.recording_id.to_numpy() if args.split == "record" else None
        folds, _ = person_folds(ws.people, ws.y, args.folds, args.seed, args.held_out, groups=groups)
        held = dict.fromkeys(args.held_out, "held out")
        _say_not_curated("--held-out", not_curated(ws.people, held), len(held), args.curated)
    for m in mods:  # a model needs windows of its modality to train and to stop early on, in every fold
        has = ws.has(m)
        for f in folds:
            for part, idx in (("training", f.train), ("validation", f.val)):
                if (len(idx) or part == "training") and not has[idx].any():
                    people = len(np.unique(ws.people[has]))
                    raise UsageError(f"{m}: fold {f.index} has no {part} window of it ({people} people have it): "
                                     f"use fewer --folds, curate more recordings with it, or leave it out "
                                     f"(--modalities / --fusion-modalities)")
            rows = f.train[has[f.train]]
            trained = np.unique(ws.y[rows])
            if len(trained) < 2:  # nothing to tell apart (and scikit-learn refuses to fit)
                people = len(np.unique(ws.people[rows]))
                raise UsageError(f"{m}: fold {f.index} trains on {people} {'person' if people == 1 else 'people'}, "
                                 f"all {ws.classes[trained[0]]!r} (the others went to its test and validation "
                                 f"people), so there is nothing to tell apart: use more people, or --folds {LEAVE_ONE_OUT} "
                                 f"(each fold trains on all but one person)")
    tables = {m: (list(contract.modalities[m].columns), _table_values(ws, m), ws.y)
              for m in mods if contract.modality(m).source == "table"}
    if tables and not args.allow_separating_columns:
        check_label_columns(tables, folds)
    # one model per modality (fusion modalities included: fused models start from them), then fusions
    specs = default_specs(encoders, args.fusions, args.late, fusion_mods, args.baselines)
    cfg = TrainConfig(max_epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                      modality_dropout=args.modality_dropout, augment=not args.no_augment, loss=args.loss,
                      seed=args.seed, progress=rank == 0, accelerator=args.device, devices=args.devices,
                      num_nodes=args.num_nodes, strategy=args.strategy, prepared_mb=args.prepared_mb)
    protocol = {"folds": len(folds), "leave_one_out": args.folds == LEAVE_ONE_OUT and assignment is None,
                "people": int(len(np.unique(ws.people))), "seed": args.seed,
                "held_out": args.held_out, "windows": int(len(ws.y)), "curated": str(args.curated.resolve()),
                "finetune_fusion": args.finetune_fusion,
                "split": "fixed" if assignment is not None else args.split,
                "split_people": {name: int(len(np.unique(ws.people[getattr(folds[0], attr)])))
                                 for name, attr in (("train", "train"), ("dev", "val"), ("calib", "calib"),
                                                    ("test", "test"))} if assignment is not None else None,
                "leaky_split": args.split == "record", "machine": _machine(args.threads)}
    # data-parallel: ranks other than 0 compute the same run in step and write it to a scratch folder
    out = args.out if rank == 0 else Path(tempfile.mkdtemp(prefix=f"symptomfuse-rank{rank}-"))
    try:
        run = cross_validate(ws, specs, folds, cfg, out, protocol, fusion_epochs=args.fusion_epochs,
                             finetune_fusion=args.finetune_fusion, unit=args.unit, resume=args.resume,
                             workers=1 if args.strategy == "ddp" else _local_workers(args.workers) or _cores(),
                             threads=args.threads)
    finally:
        if rank != 0:
            shutil.rmtree(out, ignore_errors=True)
    if rank != 0:
        return 0
    print(f"trained {len(run.models)} models x {len(folds)} fold(s) on {protocol['people']} people "
          f"({protocol['windows']} windows, unit: {args.unit}) in {time.perf_counter() - t0:.0f} s; "
          f"run folder: {args.out}")
    print(f"next: symptomfuse evaluate {args.out}")
    return 0


def _check_buildable(m: str, encoder: dict, given: dict, n_classes: int, input_shape: tuple, dtype) -> None:
    """Refuse, before any data is loaded, an encoder that ``--encoder-args`` (``given``) make impossible to
    build or run (a wrong type, a negative or empty size, layers that do not fit the input) or too large
    to train in this machine's memory. The network is first built on PyTorch's meta device (shapes only,
    no memory), then, once its size is known to fit, for real, and run on two windows of zeros. The
    package's own configurations (nothing ``given``) are not checked."""
    if not given:
        return  # the package's own configuration
    import os

    import numpy as np
    import torch

    from symptomfuse.models.multimodal import MultimodalClassifier

    def cannot(exc: Exception) -> UsageError:
        return UsageError(f"--encoder-args for {m}: {encoder['name']} cannot be built or run with {given}: {exc}")

    try:
        with torch.device("meta"):
            model = MultimodalClassifier({m: encoder}, None, n_classes, init_seed=0)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise cannot(exc) from None
    if model.encoders[m].out_dim < 1:
        raise UsageError(f"--encoder-args for {m}: {encoder['name']} with {given} gives embeddings of size "
                         f"{model.encoders[m].out_dim}; they need at least 1")
    weights = sum(p.numel() for p in model.parameters())
    need = 16 * weights  # weights, their gradients and Adam's two moments, 4 bytes each
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    if ram and need > ram / 2:
        raise UsageError(f"--encoder-args for {m}: {encoder['name']} with {given} has {weights:,} weights, about "
                         f"{need / 2**30:.0f} GiB to train (weights, gradients and the optimizer's state), more than "
                         f"half of this machine's {ram / 2**30:.0f} GiB")
    try:
        model = MultimodalClassifier({m: encoder}, None, n_classes, init_seed=0).eval()
        with torch.no_grad():
            model({m: torch.from_numpy(np.zeros((2, *input_shape), dtype))})
    except (TypeError, ValueError, RuntimeError, OverflowError, IndexError) as exc:
        raise cannot(exc) from None


def _table_values(ws, m: str):
    """(N windows, columns) values of table modality ``m``, NaN where a window lacks it."""
    import numpy as np

    x = np.full((len(ws.y), ws.inputs[m].shape[1]), np.nan)
    x[ws.has(m)] = np.asarray(ws.inputs[m])
    return x


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _say_not_curated(what: str, missing: dict[str, list[str]], named: int, curated: Path) -> None:
    """A note on the people a split file or --held-out names who are not in the curated folder: a typo would
    quietly move a test person into training, or a person meant to be held out into the folds."""
    if missing:
        print(f"{what}: {sum(map(len, missing.values()))} of its {named} people are not in {curated} (no curated "
              "row, or an id spelt otherwise): "
              + "; ".join(f"{side} {len(who)}, e.g. {', '.join(who[:3])}" for side, who in sorted(missing.items())),
              file=sys.stderr)


def _local_workers(n: int | None) -> int | None:
    """``--workers`` for processes on this machine, at most the CPUs this process may use: each worker holds
    its own decoder or model (100 MB to 1 GB) and takes about half a second to start, so more workers than
    CPUs add memory and time, never speed (``--workers 100000`` would otherwise start one process per
    recording). Says so when it lowers the number."""
    cores = _cores()
    if n is None or n <= cores:
        return n
    print(f"--workers {n}: this process may use {cores} CPU(s), so {cores} worker process(es) run (more would "
          "only add memory and start-up time)", file=sys.stderr)
    return cores


def _machine(threads: int) -> dict:
    """What the numbers of a run depend on besides the seed: the threads each model-fold trained on and the
    CPU's kernels (MKL and oneDNN pick code paths by CPU; a different count or CPU changes float rounding)."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"threads": threads, "cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return fh.readlines()
    except OSError:
        return []


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=_Formatter,
        help="metrics per window, recording and person with bootstrap intervals; report.html",
        description=f"""\
Evaluate a run's out-of-fold predictions: ROC AUC, balanced accuracy, sensitivity, specificity, F1,
Brier score and ECE per window, per recording and per person (window probabilities averaged), each with
a 95% bootstrap interval over people; an abstention band; the fusion ablation table (fused models also
with each modality removed). Writes metrics.json, report.html and report/*.png. {NOTICE}""",
        epilog="example:\n  symptomfuse evaluate demo_out/run")
    p.add_argument("run", type=Path, help="a folder written by `symptomfuse train`")
    p.add_argument("--bootstrap", type=_number(int, 0, 100_000), default=500, help="bootstrap resamples of people")
    p.add_argument("--abstain-band", type=_number(float, 0, 0.5, high_open=True), default=0.1,
                   help="abstain when the top probability is within this of chance")
    p.add_argument("--importance", action="store_true",
                   help="permutation importance of each feature-table modality's features on held-out people "
                        "(needs the curated set the run trained on)")
    p.add_argument("--mc-dropout", type=_number(int, 0, 1000), default=0, metavar="PASSES",
                   help="MC-dropout uncertainty of each network (single-modality and fused) on its held-out people, with "
                        "this many passes, and accuracy when the most uncertain are withheld (0: off)")
    p.add_argument("--subgroups", type=Path, default=None,
                   help="a CSV of person attributes (e.g. demographics): metrics per group of each --subgroup-cols "
                        "column, with intervals and counts. Groups: an age column (age, Age, age_at_visit...) in bands "
                        "<50, 50-59, 60-69, 70+; other numbers with at most 12 distinct values (a site code, a "
                        "stage) as written; other numbers in quartiles of the file's values; text as written")
    p.add_argument("--subgroup-person-col", default="person_id", help="the person column of --subgroups")
    p.add_argument("--subgroup-cols", type=_csv_list, default=["sex", "age"], help="attribute columns of --subgroups")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from symptomfuse.evaluate.report import (ablation_table, choice_summary, evaluate_run, format_table,
                                             read_subgroups)

    if args.subgroups is None and (args.subgroup_cols != ["sex", "age"] or args.subgroup_person_col != "person_id"):
        raise UsageError("--subgroup-cols and --subgroup-person-col name columns of --subgroups FILE: give it too")
    if not (args.run / "run.json").exists():
        raise FileNotFoundError(f"{args.run} is not a run folder (no run.json): run `symptomfuse train` first")
    subgroups = None
    if args.subgroups is not None:  # checked before any work
        subgroups = read_subgroups(args.subgroups, args.subgroup_person_col, args.subgroup_cols)
    metrics = evaluate_run(args.run, n_boot=args.bootstrap, band=args.abstain_band, subgroups=subgroups,
                           importance=args.importance, mc_passes=args.mc_dropout)
    for m, imp in metrics.get("feature_importance", {}).items():
        print(f"features of {m} that matter most ({imp['model']}, AUC drop when shuffled on held-out people): "
              + ", ".join(f"{t['feature']} {t['auc_drop']:+.3f}" for t in imp["top"][:5]))
    print(format_table(ablation_table(metrics)))
    if (choice := choice_summary(metrics)) is not None:
        print(f"\n{choice}")
    print(f"\n{NOTICE}\nreport: {args.run / 'report.html'}   metrics: {args.run / 'metrics.json'}")
    return 0


DEMO_MODEL = Path("demo_out/model")


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", formatter_class=_Formatter,
        help="live detection in the browser: camera + microphone over WebRTC, a live dashboard",
        description=f"""\
Serve a page that asks for the camera and the microphone (echo cancellation, noise suppression and
automatic gain off), streams them to this server over WebRTC (aiortc), runs the exported detector on
them with the streaming engine, and shows per-modality and fused probabilities as a moving chart, with
quality indicators (no voice, no hand or face in view). Predictions go back to the page over an
RTCDataChannel; the page can save them as JSON lines, and --event-log keeps them on the server.

"Guided session" on the page walks the person through the tasks of the model's modalities (sustain
"aaah"; smile; tap with each hand), each with a countdown and live feedback, and ends with one result
for the session: each task's windows pooled by the fused model, a 90% interval, and each task's
contribution. For a model with hand or face modalities, MediaPipe runs here on every frame
(--landmarks auto) and the page draws the landmarks it finds over the preview.

Every browser tab is its own session with its own engine on its own thread; a session ends when the
page presses Stop or leaves. No STUN or TURN server is used: sound and picture go only between the
browser and this server, and neither is stored or logged. {NOTICE}

Browsers give the camera only to https pages or to http://localhost / 127.0.0.1: to serve other
machines, use --host 0.0.0.0 with --cert and --key. --ice-addresses limits the addresses WebRTC
offers (default: this machine's, or 127.0.0.1 when it has no other).""",
        epilog="examples:\n  symptomfuse serve --demo                       # the model `make demo` exported\n"
               "  symptomfuse serve --model MODEL --port 8080     # MODEL from `symptomfuse export`\n"
               "  symptomfuse serve --model MODEL --host 0.0.0.0 --cert cert.pem --key key.pem")
    p.add_argument("--model", type=Path, default=None, help="an export folder written by `symptomfuse export`")
    p.add_argument("--demo", action="store_true", help=f"use the model `make demo` exported ({DEMO_MODEL})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_number(int, 1, 65535), default=8080, help="port to listen on")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="inference backend")
    p.add_argument("--update-every", type=_number(float, 0.01, 60), default=0.5,
                   help="seconds of media between predictions (0.01-60)")
    p.add_argument("--threads", type=_number(int, 1, 256), default=1,
                   help="threads per inference, torch or onnxruntime (sessions already run in parallel, one "
                        "thread each)")
    p.add_argument("--max-sessions", type=_number(int, 1, 10_000), default=16, help="refuse new sessions beyond this many")
    p.add_argument("--workers", type=_number(int, 1, 256), default=1,
                   help="server processes, at most one per CPU: each receives WebRTC on its own event loop (about 0.25 core per "
                        "session); with N > 1 they listen on loopback ports PORT+1..PORT+N and this process "
                        "hands each new session to the least busy")
    p.add_argument("--ice-addresses", default=None,
                   help="comma-separated addresses to offer for WebRTC, e.g. 127.0.0.1 (default: discovered)")
    p.add_argument("--event-log", type=Path, default=None,
                   help="append every session's events (predictions, start, end; never media) as JSON lines")
    p.add_argument("--cert", type=Path, default=None, help="TLS certificate (PEM) to serve https")
    p.add_argument("--key", type=Path, default=None, help="TLS private key (PEM) for --cert")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning"], help="server log level")
    p.add_argument("--token", default=None,
                   help="a secret the page's address and every offer must carry (required, with --cert/--key, for "
                        "any --host but loopback); the server prints the address with it. Or set it in the "
                        "environment, SYMPTOMFUSE_TOKEN, which keeps it out of the process list that every user of "
                        "the machine can read (ps); --workers hands it to the workers that way")
    p.add_argument("--allow-origin", type=_csv_list, default=[],
                   help="other web origins allowed to send offers (default: only the page's own)")
    p.add_argument("--max-sessions-per-client", type=_number(int, 1, 10_000), default=4,
                   help="sessions one client address may hold at once")
    p.add_argument("--connect-timeout", type=_number(float, 1, 600), default=10.0,
                   help="seconds an answered offer has to connect before its session is closed")
    p.add_argument("--media-timeout", type=_number(float, 1, 600), default=10.0,
                   help="seconds a connected session may send no sound or picture before it is closed (a peer "
                        "that vanished, or one that connects and sends nothing)")
    p.add_argument("--landmarks", choices=["auto", "none"], default="auto",
                   help="auto: for a model with hand or face modalities, run MediaPipe Hands / FaceMesh / the "
                        "Tasks FaceLandmarker on each frame (the page then sends up to 480-px-high video; Hands costs 12-19 ms a frame); "
                        "none: never (those modalities report no_landmarks)")
    p.set_defaults(func=_run_serve)


def _run_serve(args) -> int:
    import logging

    if args.demo == (args.model is not None):
        raise UsageError("give either --model DIR (from `symptomfuse export`) or --demo")
    model = DEMO_MODEL if args.demo else args.model
    if not model.is_dir():
        hint = "run `make demo` first (it trains and exports it)" if args.demo else \
            "export a trained run with `symptomfuse export RUN --out DIR`"
        raise FileNotFoundError(f"no exported model at {model}: {hint}")
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    if args.update_every <= 0 or args.threads < 1 or args.max_sessions < 1 or args.workers < 1:
        raise UsageError("--update-every must be > 0, --threads, --max-sessions and --workers >= 1")
    args.workers = _local_workers(args.workers)  # each loads the model: more than the CPUs only take memory
    from symptomfuse.serve.app import detector_engine_factory, serve
    from symptomfuse.serve.ice import parse_addresses

    ice = parse_addresses(args.ice_addresses) if args.ice_addresses else None
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    from symptomfuse.serve.guard import FRONT_KEY_ENV, TOKEN_ENV, Guard, check_exposure

    if args.token is None:
        args.token = os.environ.get(TOKEN_ENV) or None
    if args.token is not None and (len(args.token) < 16 or not args.token.isascii() or not args.token.isprintable()):
        raise UsageError("--token must be at least 16 printable ASCII characters (e.g. from `openssl rand -hex 16`)")
    args.guard = Guard(token=args.token, allow_origins=tuple(args.allow_origin), connect_timeout_s=args.connect_timeout,
                       media_timeout_s=args.media_timeout, per_client=args.max_sessions_per_client,
                       front_key=os.environ.get(FRONT_KEY_ENV) if args.workers == 1 else None)
    check_exposure(args.host, args.guard, args.cert)
    if args.workers > 1:
        return _run_serve_workers(args, model)
    from symptomfuse.stream.detector import limit_threads

    limit_threads(args.threads)   # torch and BLAS: idle spinning threads cost more than they give live
    factory = detector_engine_factory(model, backend=args.backend, update_every=args.update_every,
                                      threads=args.threads, landmarks=args.landmarks == "auto")
    print(NOTICE)
    page = "" if args.token is None else f"?token={args.token}"
    serve(factory, args.host, args.port, ice_addresses=ice, event_log=args.event_log,
          max_sessions=args.max_sessions, cert=args.cert, key=args.key, info={"model": str(model)},
          ready=lambda url: print(f"serving {url}{page}  (Ctrl-C to stop)", flush=True), guard=args.guard)
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", formatter_class=_Formatter,
        help="export a run's models for live use: safetensors + JSON and ONNX",
        description=f"""\
Export one fold of a trained run for live detection (`symptomfuse stream`, `symptomfuse serve`): the
chosen model (default: the intermediate fusion with the best cross-validated ROC AUC, the figure
`symptomfuse evaluate` reports, computed from the run's predictions: export need not wait for evaluate)
and every single-modality model of the same fold, which give each modality's own prediction. Each model
is split into one encoder per modality and a head (fusion + classifier), each written as safetensors +
JSON and as ONNX. export.json holds what the live engine needs and nothing else is read later: classes,
temperatures, the window and feature settings from the curated set, and the fold's test people.

Use --person to take the fold in which that person was a test person: streaming their recordings is
then a fair test of people the models never saw. {NOTICE}""",
        epilog="examples:\n  symptomfuse export demo_out/run --out demo_out/model --person P001\n"
               "  symptomfuse export demo_out/run --out model_dir --model fused_attention --fold 2")
    p.add_argument("run", type=Path, help="a folder written by `symptomfuse train`")
    p.add_argument("--out", type=Path, required=True,
                   help="export folder: new or empty, or an earlier export, replaced whole when this one is complete")
    p.add_argument("--model", default=None, help="the primary (fused) model; None: the fused model with the best cross-validated ROC AUC")
    p.add_argument("--fold", type=_number(int, 0, 1000), default=None, help="which fold's models; None: fold 0, or --person's fold")
    p.add_argument("--person", default=None, help="take the fold in which this person was a test person")
    p.add_argument("--no-onnx", action="store_true", help="write safetensors + JSON only")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from symptomfuse.stream.export import export_run

    t0 = time.perf_counter()
    spec = export_run(args.run, args.out, model=args.model, fold=args.fold, person=args.person,
                      onnx=not args.no_onnx)
    src = spec.source
    print(f"exported {', '.join(spec.models)} (fold {src['fold']}; primary: {spec.primary}) "
          f"to {args.out} in {time.perf_counter() - t0:.1f} s, {'with' if spec.onnx else 'without'} ONNX")
    print(f"this fold's test people (never trained on): {', '.join(src['test_people'])}")
    print(f"next: symptomfuse stream RECORDING --model {args.out} --realtime")
    return 0


def _add_stream(sub) -> None:
    p = sub.add_parser(
        "stream", formatter_class=_Formatter,
        help="live detection from a file, a webcam or a microphone, with a live view and JSON lines",
        description=f"""\
Run the exported models live. Every --update-every seconds the engine takes the last window (as long as
the training windows) of each modality, checks its quality (silence or no voice; black or frozen
picture; no hand in view when landmarks are given), computes the same features as training, and
predicts with each usable modality's model and with the fused model over the usable ones; the fused
result is smoothed over --smooth updates and abstains when it is too close to chance.

Sources: a recording (replayed as fast as possible, or at its own pace with --realtime; hand
landmarks from a NAME.keypoints.npy file beside it, or --landmarks), or a webcam (--camera, OpenCV)
and/or a microphone (--mic, sounddevice; needs Debian's libportaudio2). --landmarks mediapipe finds
hand landmarks in every frame with MediaPipe Hands (offline, the model is in the wheel), skipping
frames when it cannot keep up ("landmarks_behind"); without landmarks the keypoints modality is
reported missing and the fusion uses what is present.

--guided walks the person through the tasks of the model's modalities (voice: sustain "aaah"; smile;
tap the right, then the left hand), prompting each with a countdown on the media clock, and ends with
one result for the whole session (see `symptomfuse serve` for the same in the browser).

Output: a live view (a bar per modality and for the fused result) and/or JSON lines (--jsonl), one
event per update: {{t, modalities: {{audio: {{p, quality, ood, unlike_training}}, video: ..., keypoints: ...}},
fused: {{p, label, uncertainty, abstain, unlike_training}}, latency_ms, notice}}. A modality whose input lies
far from its training data (ood > 1: "unlike the training data") makes the fused result abstain. {NOTICE}""",
        epilog="examples:\n  symptomfuse stream demo_out/cohort/recordings/P001_s1.mp4 --model demo_out/model --realtime\n"
               "  symptomfuse stream rec.mp4 --model MODEL --jsonl events.jsonl --no-view --backend onnx\n"
               "  symptomfuse stream --camera 0 --mic default --model MODEL --seconds 60")
    p.add_argument("file", type=Path, nargs="?", default=None, help="a recording to replay")
    p.add_argument("--model", type=Path, required=True, help="an export folder written by `symptomfuse export`")
    p.add_argument("--realtime", action="store_true", help="replay the file at its own pace (default: as fast as possible)")
    p.add_argument("--camera", type=_number(int, 0, 1000), default=None, help="webcam index (OpenCV), e.g. 0")
    p.add_argument("--mic", default=None, help="microphone: default, an index, or part of a name")
    p.add_argument("--seconds", type=_number(float, 0, 10**7, low_open=True), default=None, help="stop a live stream after this long")
    p.add_argument("--landmarks", default="auto",
                   help="hand landmarks: auto (for a file, NAME.keypoints.npy beside it), none, a .npy path, or "
                        "mediapipe (MediaPipe Hands, and FaceMesh or the Tasks FaceLandmarker for a model with "
                        "face_measures or face_blendshapes, on every frame: a camera's default)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="inference backend")
    p.add_argument("--threads", type=_number(int, 1, 256), default=1, help="inference threads")
    p.add_argument("--update-every", type=_number(float, 0.01, 60), default=0.5,
                   help="seconds of media between updates (0.01-60)")
    p.add_argument("--smooth", type=_number(int, 1, 1000), default=3, help="updates averaged in the fused result")
    p.add_argument("--abstain-band", type=_number(float, 0, 0.5, high_open=True), default=0.1,
                   help="abstain when the top probability is within this of chance")
    p.add_argument("--jsonl", default=None, help="write events as JSON lines to this file (- for stdout)")
    p.add_argument("--no-view", action="store_true", help="no live view")
    p.add_argument("--guided", action="store_true",
                   help="walk the person through the model's tasks (e.g. say 'aaah' 6 s, tap each hand 10 s), "
                        "each with 3 s to get ready, then give one result for the session: each task's windows "
                        "pooled by the fused model, a 90%% interval, each task's contribution (--jsonl gets the "
                        "prompts and the result too); a live stream stops after the result")
    p.set_defaults(func=_run_stream)


def _run_stream(args) -> int:
    from symptomfuse.data.media import MediaError
    from symptomfuse.stream.detector import Detector, limit_threads
    from symptomfuse.stream.engine import StreamEngine, landmarks_needed, mediapipe_detectors
    from symptomfuse.stream.sources import DeviceError, live, replay_file
    from symptomfuse.stream.guided import GuidedSession
    from symptomfuse.stream.view import LiveView, render_guide, write_jsonl

    live_source = args.camera is not None or args.mic is not None
    if (args.file is None) == (not live_source):
        raise UsageError("give a FILE to replay, or --camera and/or --mic for a live stream (not both)")
    if args.file is not None and not args.file.is_file():
        if args.file.exists():
            raise UsageError(f"{args.file} is not a recording but a folder or a device: give a media file")
        raise FileNotFoundError(f"no such recording: {args.file}")
    if args.threads < 1:
        raise UsageError("--threads must be at least 1")
    if args.no_view and args.jsonl is None:
        raise UsageError("--no-view without --jsonl would show nothing: add --jsonl FILE (or --jsonl - for the "
                         "terminal), or leave out --no-view for the live view")
    limit_threads(args.threads)
    detector = Detector.load(args.model, args.backend, threads=args.threads)
    wants = landmarks_needed(detector)
    detect = args.landmarks == "mediapipe" or (args.landmarks == "auto" and args.camera is not None)
    engine = StreamEngine(detector, update_every=args.update_every, smooth=args.smooth, abstain_band=args.abstain_band,
                          **mediapipe_detectors(wants if detect else ()))
    guided = None
    if args.guided:
        guided = GuidedSession(detector, 0.0, update_every=args.update_every, settle_s=engine.max_wait_s,
                               abstain_band=args.abstain_band)
        engine.listeners.append(guided.on_window)
    try:
        jsonl = None if args.jsonl is None else (sys.stdout if args.jsonl == "-" else open(args.jsonl, "w"))
    except OSError as exc:
        raise UsageError(f"--jsonl {args.jsonl}: cannot write there ({exc.strerror})") from None
    view = None if args.no_view or args.jsonl == "-" else LiveView(detector.positive_class)
    if view is not None:
        print(NOTICE)
    events, code = [], 0

    def guide(messages: list[dict]) -> None:
        for msg in messages:
            if jsonl is not None:
                write_jsonl(jsonl, msg)
            if view is not None:
                view.note(render_guide(msg))
    try:
        if args.file is not None:
            landmarks = None if args.landmarks in ("none", "mediapipe") else args.landmarks
            source = replay_file(engine, args.file, realtime=args.realtime, landmarks=landmarks)
        else:
            source = live(engine, camera=args.camera, mic=args.mic, seconds=args.seconds)
        if guided is not None:
            guide(guided.advance(0.0))
        for event in source:
            events.append(event)
            if jsonl is not None:
                write_jsonl(jsonl, event)
            if view is not None:
                view.show(event)
            if guided is not None:
                guide(guided.advance(event["t"]))
                if guided.result is not None and args.file is None:
                    break  # a live guided session ends with its result
        if guided is not None and guided.result is None:  # the recording ended first: the result of what it had
            guide(guided.advance(events[-1]["t"] if events else 0.0, final=True))
    except (DeviceError, MediaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        pass
    finally:
        if jsonl is not None and jsonl is not sys.stdout:
            jsonl.close()
    if code == 0 and not events:  # e.g. a recording shorter than a window: say so rather than nothing
        print(f"no update: the {'recording' if args.file is not None else 'stream'} ended before a "
              f"{engine.window_s:g}-s window of any modality was complete", file=sys.stderr)
    if events and view is not None:
        print(_stream_summary(events, detector.positive_class))
    return code


def _stream_summary(events: list[dict], positive: str | None) -> str:
    """The closing line of ``stream``: updates, how many abstained (and how many of those because a
    modality was unlike the training data), the mean fused probability, the latency."""
    import numpy as np

    fused = [e["fused"]["p_window"] for e in events if e["fused"]["p_window"] is not None]
    abstained = sum(bool(e["fused"]["abstain"]) for e in events)
    unlike = sum(bool(e["fused"]["abstain"] and e["fused"].get("unlike_training")) for e in events)
    lat = np.percentile([e["latency_ms"] for e in events], [50, 95])
    mean = f"{np.mean(fused):.2f}" if fused else "--"
    what = f"p({positive})" if positive else "top-class probability"
    held = f"{abstained} of them abstaining" + (f" ({unlike} as unlike the training data)" if unlike else "")
    return (f"{len(events)} updates, {held}; mean fused {what} over the stream {mean}; "
            f"latency p50 {lat[0]:.0f} ms, p95 {lat[1]:.0f} ms.  {NOTICE}")


def _run_serve_workers(args, model: Path) -> int:
    import dataclasses
    import secrets

    from symptomfuse.serve.app import run_app
    from symptomfuse.serve.workers import create_front_app, start_workers, stop_workers, wait_ready

    worker_args = ["--model", str(model.resolve()), "--backend", args.backend, "--update-every", str(args.update_every),
                   "--threads", str(args.threads), "--max-sessions", str(math.ceil(args.max_sessions / args.workers))]
    if args.ice_addresses:
        worker_args += ["--ice-addresses", args.ice_addresses]
    if args.event_log:
        worker_args += ["--event-log", str(args.event_log.resolve())]
    worker_args += ["--connect-timeout", str(args.connect_timeout), "--media-timeout", str(args.media_timeout),
                    "--landmarks", args.landmarks,
                    "--max-sessions-per-client", str(args.max_sessions_per_client)]
    # the workers believe the browser this front names to them only with this key (serve.guard.client_of)
    args.guard = dataclasses.replace(args.guard, front_key=secrets.token_hex(16))
    workers = start_workers(args.workers, args.port + 1, worker_args, args.log_level, front_key=args.guard.front_key,
                            token=args.token)
    try:
        wait_ready(workers)
        print(NOTICE)
        page = "" if args.token is None else f"?token={args.token}"
        run_app(create_front_app(workers, args.guard), args.host, args.port, cert=args.cert, key=args.key,
                ready=lambda url: print(f"serving {url}{page} with {args.workers} workers (Ctrl-C to stop)",
                                        flush=True))
    finally:
        stop_workers(workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symptomfuse", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"symptomfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_synth(sub)
    _add_curate(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_stream(sub)
    _add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UsageError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine refused a path or a write: say which, not a traceback
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: the disk is full ({exc.strerror}{f': {exc.filename}' if exc.filename else ''}): free "
                  "some space, or write --out elsewhere; what was written is whole (every artifact is written "
                  "atomically), so the same command can be run again", file=sys.stderr)
            return 2
        if exc.filename is None:  # not about a path: a bug, which keeps its traceback
            raise
        print(f"error: cannot use {exc.filename}: {exc.strerror} (what is read must be readable by this user, "
              "and --out a folder that this user can write)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
