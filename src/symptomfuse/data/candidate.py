"""A row of the manifest or of a feature table that passed the table-level checks: what curation hashes,
and what each worker featurizes (in its own module so that a worker need not import pandas to read it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    """A row (of the manifest or of a feature table) that passed the table-level checks."""

    row: int  # 0-based data row of the manifest; table rows are numbered after it
    person_id: str
    label: str
    session: str
    task: str
    modalities: tuple  # the curated modalities this row gives
    files: dict = field(default_factory=dict, compare=False)  # "audio"/"video"/modality column -> Path
    fields: dict = field(default_factory=dict, compare=False)
    table_row: object = field(default=None, compare=False)  # feature values of a table row
    table: str = ""  # the table's file digest, for table rows

    @property
    def audio_path(self) -> Path | None:
        return self.files.get("audio")

    @property
    def video_path(self) -> Path | None:
        return self.files.get("video")
