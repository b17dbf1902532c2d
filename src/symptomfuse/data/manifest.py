"""The label sheet: read a manifest CSV, map its columns, and check each row before any file is opened.

A recording is either one file with both sound and picture (column ``path``) or separate ``audio_path``
and ``video_path`` files; column names are configurable. Rows that cannot be used are returned with a
reason, never dropped: missing fields, labels outside the allowed set, repeated rows, and every row of a
person whose rows disagree on the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Every reason a row can be quarantined for, with what it means, in the order they are checked.
REASONS = {
    "missing_field": "a required column (person, label, or a media path) is empty",
    "unknown_label": "the label is not one of the allowed classes",
    "duplicate_row": "the same recording, person, label and session appear on an earlier row",
    "conflicting_labels": "this person's rows carry different labels",
    "missing_file": "a media file named by the row does not exist",
    "empty_file": "a media file is 0 bytes",
    "duplicate_content": "a media file has the same bytes as one on an earlier row",
    "unreadable": "not a media file that FFmpeg recognises",
    "corrupt": "a recognised media file that is damaged or truncated",
    "no_audio": "audio is required but the file has no (decodable) audio stream",
    "no_video": "video is required but the file has no (decodable) video stream",
    "too_short": "shorter than one analysis window",
    "bad_keypoints": "the keypoint file is missing, unreadable, or does not match the video",
}


@dataclass(frozen=True)
class Columns:
    """Names of the manifest's columns."""

    path: str = "path"
    audio: str = "audio_path"
    video: str = "video_path"
    person: str = "person_id"
    label: str = "label"
    session: str = "session"
    keypoints: str = "keypoints"


@dataclass(frozen=True)
class Candidate:
    """A manifest row that passed the table-level checks, with its paths resolved."""

    row: int  # 0-based data row of the manifest
    person_id: str
    label: str
    session: str
    audio_path: Path | None
    video_path: Path | None
    keypoints_path: Path | None
    fields: dict = field(default_factory=dict, compare=False)


@dataclass
class Quarantined:
    row: int
    reason: str
    detail: str
    fields: dict


def read_manifest(path: Path, columns: Columns = Columns()) -> pd.DataFrame:
    """Read the manifest as strings; fail with a message that names the columns to fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read manifest {path} as CSV: {exc}") from exc
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in (columns.person, columns.label) if c not in df.columns]
    has_media = columns.path in df.columns or columns.audio in df.columns or columns.video in df.columns
    if missing or not has_media:
        need = missing + ([] if has_media else [f"{columns.path} (or {columns.audio} / {columns.video})"])
        raise ValueError(f"manifest {path} lacks column(s) {', '.join(need)}; it has {list(df.columns)}. "
                         "Rename them, or name yours with --person-col, --label-col, --path-col, "
                         "--audio-col, --video-col.")
    return df


def _resolve(value: str, root: Path) -> Path | None:
    value = value.strip()
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)


def check_rows(
    df: pd.DataFrame,
    root: Path,
    columns: Columns = Columns(),
    labels: list[str] | None = None,
    modalities: tuple[str, ...] = ("audio", "video"),
    label_scope: str = "person",
) -> tuple[list[Candidate], list[Quarantined]]:
    """Table-level checks. Returns the usable candidates and the quarantined rows.

    ``label_scope="person"`` (a diagnosis: one label per person) quarantines every row of a person whose
    rows disagree; ``"recording"`` (e.g. which word was spoken) allows different labels per person.
    """
    if label_scope not in ("person", "recording"):
        raise ValueError(f"label scope must be 'person' or 'recording', got {label_scope!r}")
    candidates: list[Candidate] = []
    bad: list[Quarantined] = []
    seen: dict[tuple, int] = {}

    def get(rec: dict, col: str) -> str:
        return str(rec.get(col, "")).strip()

    for i, rec in enumerate(df.to_dict("records")):
        person, label = get(rec, columns.person), get(rec, columns.label)
        av_path = _resolve(get(rec, columns.path), root)
        audio = _resolve(get(rec, columns.audio), root) or av_path if "audio" in modalities else None
        video = _resolve(get(rec, columns.video), root) or av_path if "video" in modalities else None
        empty = [n for n, v in ((columns.person, person), (columns.label, label)) if not v]
        if "audio" in modalities and audio is None:
            empty.append(f"{columns.path} or {columns.audio}")
        if "video" in modalities and video is None:
            empty.append(f"{columns.path} or {columns.video}")
        if empty:
            bad.append(Quarantined(i, "missing_field", f"empty: {', '.join(empty)}", rec))
            continue
        if labels is not None and label not in labels:
            bad.append(Quarantined(i, "unknown_label", f"label {label!r} is not one of {labels}", rec))
            continue
        session = get(rec, columns.session)
        key = (person, label, session, str(audio), str(video))
        if key in seen:
            bad.append(Quarantined(i, "duplicate_row", f"repeats row {seen[key]}", rec))
            continue
        seen[key] = i
        candidates.append(Candidate(i, person, label, session, audio, video,
                                    _resolve(get(rec, columns.keypoints), root), rec))

    by_person: dict[str, set] = {}
    for c in candidates:
        by_person.setdefault(c.person_id, set()).add(c.label)
    conflicted = {p for p, ls in by_person.items() if len(ls) > 1} if label_scope == "person" else set()
    kept = []
    for c in candidates:
        if c.person_id in conflicted:
            bad.append(Quarantined(c.row, "conflicting_labels", f"person {c.person_id} has labels "
                                   f"{sorted(by_person[c.person_id])}", c.fields))
        else:
            kept.append(c)
    return kept, bad
