"""The label sheet: read a manifest CSV, map its columns, and check each row before any file is opened.

A recording is either one file with both sound and picture (column ``path``) or separate ``audio_path``
and ``video_path`` files; column names are configurable. Rows that cannot be used are returned with a
reason, never dropped: missing fields, labels outside the allowed set, repeated rows, and every row of a
person whose rows disagree on the label.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from symptomfuse.data.candidate import Candidate
from symptomfuse.data.media import STREAMS
from symptomfuse.errors import UsageError

# Every reason a row can be quarantined for, with what it means, in the order they are checked.
REASONS = {
    "bad_fields": "the row has more fields than the header (an unquoted comma?)",
    "missing_field": "a required column (person, label, or a media path) is empty",
    "unknown_label": "the label is not one of the allowed classes",
    "duplicate_row": "the same recording, person, label and session appear on an earlier row",
    "conflicting_labels": "this person's rows carry different labels",
    "outside_root": "a media path leads outside the data root (relative paths: the manifest's folder; with "
                    "--root, every path)",
    "missing_file": "a media file named by the row does not exist",
    "empty_file": "a media file is 0 bytes",
    "duplicate_content": "a media file has the same bytes as one on an earlier row",
    "unreadable": "not a media file that FFmpeg recognises",
    "corrupt": "a recognised media file that is damaged or truncated",
    "no_audio": "audio is required but the file has no (decodable) audio stream",
    "no_video": "video is required but the file has no (decodable) video stream",
    "too_short": "shorter than one analysis window",
    "bad_keypoints": "the keypoint file is missing, unreadable, or does not match the video",
    "gated": "every window failed a quality gate (silence, no voice, dark or frozen picture; --drop-gated)",
}


@dataclass(frozen=True)
class Columns:
    """Names of the manifest's columns. ``files`` maps a modality's own file column (e.g. ``keypoints``) to
    the manifest's name for it."""

    path: str = "path"
    audio: str = "audio_path"
    video: str = "video_path"
    person: str = "person_id"
    label: str = "label"
    session: str = "session"
    task: str = "task"
    files: tuple = ()  # ((modality column, manifest column), ...)
    label_map: tuple = ()  # ((raw label, class name), ...): e.g. 1.0 -> pd, yes -> pd

    def file_column(self, key: str) -> str:
        return dict(self.files).get(key, key)

    def label_of(self, raw: str) -> str:
        """The class name of a raw label cell (through ``label_map``; unmapped values stay as they are)."""
        raw = str(raw).strip()
        return dict(self.label_map).get(raw, raw)


@dataclass
class Quarantined:
    row: int
    reason: str
    detail: str
    fields: dict


ROW_ERROR = "__row_error__"  # set on a row that could not be split into the header's columns


def spreadsheet_text(path: Path, what: str) -> tuple[str, str]:
    """The text of a CSV file as spreadsheets save it, and its delimiter: UTF-8 (with or without the byte
    order mark Excel's "CSV UTF-8" writes) or UTF-16 with its mark (Excel's "Unicode text"); commas, or
    semicolons or tabs when the header has them and no comma (a spreadsheet set to a language whose
    decimal mark is a comma saves "CSV" with semicolons). Other encodings cannot be told apart reliably
    and are refused with how to convert them."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}): save "
                         "it as \"CSV UTF-8\", or convert it, e.g. iconv -f latin1 -t utf-8") from None
    header = text.split("\n", 1)[0]
    delimiter = "," if "," in header else ";" if ";" in header else "\t" if "\t" in header else ","
    return text, delimiter


def read_sheet(path: Path, what: str) -> pd.DataFrame:
    """A CSV table with every cell as text (``NA``, ``nan`` and ``null`` stay text), read as spreadsheets
    save it (``spreadsheet_text``): a split file, a table of person attributes, or one of this package's
    own tables opened and saved in a spreadsheet. One that is empty or not CSV is refused in one line."""
    text, delimiter = spreadsheet_text(Path(path), what)
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UsageError(f"{what} {path} is not a readable CSV table ({str(exc).strip()})") from None


def _read_rows(path: Path) -> pd.DataFrame:
    """Every cell as text (``NA``, ``nan``, ``null`` stay text). A row with more fields than the header is
    kept, empty, with ``ROW_ERROR`` saying why (quarantined as ``bad_fields``: one bad row never stops a
    run, and the rows after it keep their numbers); a row with fewer fields is padded, as CSV readers do."""
    import csv

    text, delimiter = spreadsheet_text(path, "manifest")
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True) if r]
    except csv.Error as exc:
        raise UsageError(f"cannot read manifest {path} as CSV: {exc}") from exc
    if not rows:
        raise UsageError(f"cannot read manifest {path} as CSV: it is empty")
    header = [c.strip() for c in rows[0]]
    if len(set(header)) != len(header) or "" in header:
        raise UsageError(f"manifest {path}: the header has empty or repeated column names: {header}")
    records = []
    for r in rows[1:]:
        if len(r) > len(header):
            records.append({ROW_ERROR: f"{len(r)} fields where the header has {len(header)}: "
                                       f"{','.join(r)[:200]}"})
        else:
            records.append(dict(zip(header, r + [""] * (len(header) - len(r)))))
    return pd.DataFrame(records, columns=header + [ROW_ERROR]).fillna("")


def read_manifest(path: Path, columns: Columns = Columns()) -> pd.DataFrame:
    """Read the manifest as strings; fail with a message that names the columns to fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    df = _read_rows(path)
    missing = [c for c in (columns.person, columns.label) if c not in df.columns]
    has_media = columns.path in df.columns or columns.audio in df.columns or columns.video in df.columns
    if missing or not has_media:
        need = missing + ([] if has_media else [f"{columns.path} (or {columns.audio} / {columns.video})"])
        raise UsageError(f"manifest {path} lacks column(s) {', '.join(need)}; it has {list(df.columns)}. "
                         "Rename them, or name yours with --person-col, --label-col, --path-col, "
                         "--audio-col, --video-col.")
    return df


class _Outside(Exception):
    pass


class _Unnamable(Exception):
    """A cell no file can have as its path (a NUL character)."""


def _resolve(value: str, root: Path, confine: bool) -> Path | None:
    """The path a manifest cell names, relative to ``root``. Raises _Outside when a relative path leads out
    of ``root`` (``..``, a link pointing away), and with ``confine`` (``--root`` given) when any path does,
    absolute ones included."""
    value = value.strip()
    if not value:
        return None
    if "\x00" in value:
        raise _Unnamable(value)
    p = Path(value).expanduser()
    full = p if p.is_absolute() else (root / p)
    if (confine or not p.is_absolute()) and not full.resolve().is_relative_to(root.resolve()):
        raise _Outside(value)
    return full


def person_of(value: str, pattern: re.Pattern | None) -> str:
    """The person id: the value itself, or the first group of ``pattern`` (e.g. ``(phon_R01_S\\d+)``);
    "" when the pattern does not match."""
    value = value.strip()
    if pattern is None or not value:
        return value
    m = pattern.search(value)
    return (m.group(1) if m.groups() else m.group(0)) if m else ""


def check_rows(
    df: pd.DataFrame,
    root: Path,
    columns: Columns = Columns(),
    labels: list[str] | None = None,
    modalities: dict | None = None,
    person_pattern: re.Pattern | None = None,
    confine: bool = False,
) -> tuple[list[Candidate], list[Quarantined]]:
    """Table-level checks of a media manifest. Returns the usable candidates and the quarantined rows.

    ``modalities`` maps names to bound modalities (``FeatureContract.bound()``); a row gives those whose
    inputs it names: a ``path`` (one file with sound and picture) gives every modality fed by audio or
    video, ``audio_path`` / ``video_path`` one of the two, and a modality with its own column (keypoints)
    needs that column too. A row that gives none is quarantined as ``missing_field``. Labels that differ
    within a person are checked by ``conflicts`` over every row, tables included.
    """
    modalities = modalities or {}
    candidates: list[Candidate] = []
    bad: list[Quarantined] = []
    seen: dict[tuple, int] = {}

    def get(rec: dict, col: str) -> str:
        return str(rec.get(col, "")).strip()

    media = [m for m in modalities.values() if m.source != "table"]
    for i, rec in enumerate(df.to_dict("records")):
        if rec.get(ROW_ERROR):
            bad.append(Quarantined(i, "bad_fields", rec[ROW_ERROR], {k: v for k, v in rec.items() if k != ROW_ERROR}))
            continue
        rec.pop(ROW_ERROR, None)
        person, label = person_of(get(rec, columns.person), person_pattern), columns.label_of(get(rec, columns.label))
        try:
            av_path = _resolve(get(rec, columns.path), root, confine)
            files = {"audio": _resolve(get(rec, columns.audio), root, confine) or av_path,
                     "video": _resolve(get(rec, columns.video), root, confine) or av_path}
            for m in media:
                if m.file_column() is not None:
                    files[m.column] = _resolve(get(rec, columns.file_column(m.column)), root, confine)
        except _Outside as out:
            bad.append(Quarantined(i, "outside_root", f"{out} is outside the data root {root} (use --root)", rec))
            continue
        except _Unnamable as cell:
            bad.append(Quarantined(i, "missing_file", f"{str(cell)!r} holds a NUL character: no file has that name", rec))
            continue
        given = tuple(m.name for m in media if m.available(files))
        if av_path is not None:  # an A/V file must give every modality fed by its streams alone
            given = tuple(dict.fromkeys(given + tuple(m.name for m in media if m.file_column() is None)))
        needed = {s for m in media if m.name in given for s in m.needs}
        files = {k: v for k, v in files.items() if v is not None and (k in needed or k not in STREAMS)}
        empty = [n for n, v in ((columns.person, person), (columns.label, label)) if not v]
        if not given:
            empty.append(f"{columns.path} (or {columns.audio} / {columns.video})")
        if empty:
            what = f"empty: {', '.join(empty)}"
            if person_pattern is not None and get(rec, columns.person) and not person:
                what += f" (the person pattern does not match {get(rec, columns.person)!r})"
            bad.append(Quarantined(i, "missing_field", what, rec))
            continue
        if labels is not None and label not in labels:
            bad.append(Quarantined(i, "unknown_label", f"label {label!r} is not one of {labels}", rec))
            continue
        session = get(rec, columns.session)
        key = (person, label, session, tuple(sorted((k, str(v)) for k, v in files.items())))
        if key in seen:
            bad.append(Quarantined(i, "duplicate_row", f"repeats row {seen[key]}", rec))
            continue
        seen[key] = i
        candidates.append(Candidate(i, person, label, session, get(rec, columns.task), given, files, rec))
    return candidates, bad


def conflicts(candidates: list[Candidate], label_scope: str) -> tuple[list[Candidate], list[Quarantined]]:
    """``label_scope="person"`` (a diagnosis: one label per person) quarantines every row of a person whose
    rows disagree (across the manifest and every table); ``"recording"`` (e.g. which word was spoken)
    allows different labels per person."""
    if label_scope not in ("person", "recording"):
        raise UsageError(f"label scope must be 'person' or 'recording', got {label_scope!r}")
    by_person: dict[str, set] = {}
    for c in candidates:
        by_person.setdefault(c.person_id, set()).add(c.label)
    conflicted = {p for p, ls in by_person.items() if len(ls) > 1} if label_scope == "person" else set()
    kept, bad = [], []
    for c in candidates:
        if c.person_id in conflicted:
            bad.append(Quarantined(c.row, "conflicting_labels", f"person {c.person_id} has labels "
                                   f"{sorted(by_person[c.person_id])}", c.fields))
        else:
            kept.append(c)
    return kept, bad


@dataclass(frozen=True)
class TableSource:
    """``curate --table NAME=FILE[:FEATURES]``: a feature table that becomes the modality NAME."""

    name: str
    path: Path
    features: str = "numeric"  # numeric | prefix:P | cols:A,B | cols:NAME=COLUMN,...
    live: str = ""  # a windowed modality whose measures the features are (``modalities.table``)

    @classmethod
    def parse(cls, text: str) -> "TableSource":
        name, sep, rest = text.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise UsageError(f"--table {text!r}: expected NAME=FILE, NAME=FILE::FEATURES or "
                             "NAME=FILE::FEATURES::live:MODALITY (FEATURES: numeric, prefix:P or cols:A,B)")
        path, _, more = rest.partition("::")
        features, _, live = more.partition("::")
        if live and not live.startswith("live:"):
            raise UsageError(f"--table {text!r}: after FEATURES only live:MODALITY may follow, got {live!r}")
        return cls(name.strip(), Path(path.strip()).expanduser(), features.strip() or "numeric",
                   live[len("live:"):].strip())


def read_table(path: Path, columns: Columns) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A feature table (CSV or Parquet) twice: as text (ids and labels, ``NA`` kept as text) and with
    numbers parsed (features; empty cells, NaN and inf become missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            values = pd.read_parquet(path)
            text = values.astype(str)
        else:
            raw, sep = spreadsheet_text(path, "table")
            _check_table_fields(raw, sep, path)
            # a semicolon-separated sheet writes decimals with a comma (0,53)
            decimal = "," if sep == ";" and re.search(r"(^|;)\s*-?\d+,\d+\s*(;|$)", raw, re.M) else "."
            text = pd.read_csv(io.StringIO(raw), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
            values = pd.read_csv(io.StringIO(raw), sep=sep, decimal=decimal, skipinitialspace=True)
    except UsageError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot read table {path}: {exc}") from exc
    missing = [c for c in (columns.person, columns.label) if c not in text.columns]
    if missing:
        raise UsageError(f"table {path} lacks column(s) {missing}; it has {list(text.columns)}. "
                         "Name yours with --person-col and --label-col.")
    return text, values


def _check_table_fields(raw: str, delimiter: str, path: Path) -> None:
    """Refuse a CSV feature table whose header repeats a column name (a reader would rename one copy, so
    that a feature would go by a name the table does not give it) or a line with more fields than the
    header (a reader would take the first fields for an index and shift every column of the table)."""
    import csv

    reader = csv.reader(io.StringIO(raw), delimiter=delimiter, skipinitialspace=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        named = [c.strip() for c in header if c.strip()]
        repeated = sorted({c for c in named if named.count(c) > 1})
        if repeated:
            raise UsageError(f"table {path}: the header repeats the column name(s) {repeated}; give each column "
                             "its own name")
        for fields in reader:
            if len(fields) > len(header):
                raise UsageError(f"table {path}, line {reader.line_num}: {len(fields)} fields where the header has "
                                 f"{len(header)} (a value with the delimiter {delimiter!r} in it, unquoted?); fix or "
                                 "remove that line")
    except csv.Error as exc:
        raise UsageError(f"cannot read table {path} as CSV, line {reader.line_num}: {exc}") from None


def table_candidates(source: TableSource, columns: Columns, labels: list[str] | None, first_row: int,
                     person_pattern: re.Pattern | None = None
                     ) -> tuple[list[Candidate], list[Quarantined], list[str], dict[str, str], dict[str, int]]:
    """The rows of a feature table as candidates of modality ``source.name`` (rows numbered from
    ``first_row``), the quarantined rows, the feature columns, and the columns left out although some of
    their values are numbers (``table.partly_numeric``: column -> why). Values that are infinite, or too
    large for the 32-bit floats features are kept in, count as missing (``beyond_float32`` says how many,
    per column)."""
    from symptomfuse.data.cache import file_digest
    from symptomfuse.modalities.table import partly_numeric, select_columns

    text, values = read_table(source.path, columns)
    used = [columns.person, columns.label, columns.session, columns.task]
    feature_cols, read_from = select_columns(values, source.features, used)
    x = values[read_from].to_numpy(np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        unusable = np.isinf(x) | (np.abs(x) > np.finfo(np.float32).max)
    x[unusable] = np.nan
    beyond_float32 = {c: int(n) for c, n in zip(feature_cols, unusable.sum(axis=0)) if n}
    digest = file_digest(source.path)
    candidates, bad, seen = [], [], {}
    for i, rec in enumerate(text.to_dict("records")):
        row = first_row + i
        rec = {"table": source.name, "table_row": i, **rec}
        person = person_of(str(rec.get(columns.person, "")), person_pattern)
        label = columns.label_of(rec.get(columns.label, ""))
        empty = [n for n, v in ((columns.person, person), (columns.label, label)) if not v]
        if empty:
            what = f"table {source.name}: empty {', '.join(empty)}"
            if person_pattern is not None and str(rec.get(columns.person, "")).strip() and not person:
                what += f" (the person pattern does not match {str(rec.get(columns.person)).strip()!r})"
            bad.append(Quarantined(row, "missing_field", what, rec))
            continue
        if labels is not None and label not in labels:
            bad.append(Quarantined(row, "unknown_label", f"label {label!r} is not one of {labels}", rec))
            continue
        if np.isnan(x[i]).all():
            bad.append(Quarantined(row, "missing_field", f"table {source.name}: every feature is empty", rec))
            continue
        session = str(rec.get(columns.session, "")).strip()
        key = (person, label, session, x[i].tobytes())
        if key in seen:
            bad.append(Quarantined(row, "duplicate_row", f"repeats table row {seen[key]}", rec))
            continue
        seen[key] = i
        candidates.append(Candidate(row, person, label, session, str(rec.get(columns.task, "")).strip() or source.name,
                                    (source.name,), {}, rec, x[i].astype(np.float32), digest))
    return candidates, bad, feature_cols, partly_numeric(values, source.features, used), beyond_float32


ID_COLUMNS = ("person_id", "recording_id", "session", "label", "task", "unit_id")


def read_id_csv(path: Path, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV this package wrote, with its id columns and the columns ``text`` as text (``NA``, ``nan`` and
    ``null`` stay ids, never missing values) and every other column parsed as usual. A file that is gone
    or is not a CSV table (emptied, binary, cut off mid-quote) is refused with what is wrong."""
    if not Path(path).is_file():
        raise UsageError(f"{path} is missing")
    df = read_sheet(path, "table")
    for c in df.columns:
        if c not in ID_COLUMNS and c not in text:
            converted = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
            if converted.notna().sum() == (df[c] != "").sum():
                df[c] = converted
    return df


# What a checked column of one of this package's own tables must hold (``read_checked_csv``).
CELL_KINDS = {"text": "a non-empty name", "key": "a cache key (64 hexadecimal digits)",
              "count": "a whole number from 0", "fold": "a whole number from -1 (not tested)",
              "time": "a time in seconds from 0", "probability": "a probability from 0 to 1, or empty"}


def _bad_cells(values: pd.Series, kind: str) -> np.ndarray:
    v = values.str.strip()
    if kind == "text":
        return (v == "").to_numpy()
    if kind == "key":
        return ~v.str.fullmatch(r"[0-9a-f]{64}").to_numpy(bool)
    if kind in ("count", "fold"):
        return ~v.str.fullmatch(r"\d{1,9}" if kind == "count" else r"-1|\d{1,9}").to_numpy(bool)
    number = pd.to_numeric(v, errors="coerce").to_numpy(float)
    if kind == "time":
        return ~(np.isfinite(number) & (number >= 0))
    return ~(v.isin(["", "nan", "NaN"]).to_numpy() | ((number >= 0) & (number <= 1)))


def check_lines(path: Path, checks: list[tuple[np.ndarray, Callable[[int], str]]], redo: str) -> None:
    """Refuse a table at its first wrong line: ``checks`` are, in order, (which lines are wrong, what is
    wrong with line i); the message names the file, the line (the header is line 1), how many lines are
    wrong that way, and what to do, ``redo``."""
    for wrong, why in checks:
        if np.any(wrong):
            i = int(np.flatnonzero(wrong)[0])
            raise UsageError(f"{path}, line {i + 2}: {why(i)} ({int(np.sum(wrong))} such line(s)); {redo}")


def read_checked_csv(path: Path, needs: dict[str, str], redo: str) -> pd.DataFrame:
    """One of this package's own tables (``read_id_csv``) read back as untrusted input: each column of
    ``needs`` (name -> a kind of ``CELL_KINDS``) must be there and each of its cells of that kind, else a
    UsageError with the file, the line, the cell and ``redo`` (what to do). Counts come back as integers,
    times and probabilities as floats (an empty probability as NaN), the rest as text."""
    df = read_id_csv(path, text=tuple(needs))
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise UsageError(f"{path} has no column {', '.join(map(repr, missing))}; {redo}")
    for column, kind in needs.items():
        check_lines(path, [(_bad_cells(df[column], kind),
                            lambda i: f"{column} is {df[column].iloc[i]!r}, not {CELL_KINDS[kind]}")], redo)
        if kind in ("count", "fold"):
            df[column] = df[column].astype(np.int64)
        elif kind in ("time", "probability"):
            df[column] = pd.to_numeric(df[column].str.strip(), errors="coerce").astype(float)
    return df
