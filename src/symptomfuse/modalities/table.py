"""Feature-table modalities: one vector of numbers per table row (one recording of one task).

Researchers often have features already: Praat measures, landmark kinematics, wearable summaries,
UCI-style CSVs. ``curate --table NAME=FILE`` makes each such table a modality named NAME: its rows are
recordings (person and label from the table's own person and label columns), and the feature columns are
the ones named (``cols:a,b``), those starting with a prefix (``prefix:smile_``), or every numeric column
not otherwise used (the default). NaN and inf are kept as missing: the ``mlp`` encoder and the baselines
impute them with statistics of the training people only, and see a missingness indicator per column.

A table modality has no live input: live, it is reported "no_data" and fused models use what is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from symptomfuse.modalities.base import Modality, SourceMedia
from symptomfuse.errors import UsageError


@dataclass(frozen=True)
class TableSettings:
    columns: tuple = ()  # the feature columns, in order
    file: str = ""  # the table's file name (for the record; the content is in the cache key)

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))


class Table(Modality):
    """The template; ``registry.ensure(NAME, "table")`` registers a table modality called NAME."""

    name = "table"
    source = "table"
    windowed = False
    help = "a feature table: one vector per row (curate --table NAME=FILE)"
    default_encoder = "mlp"
    Settings = TableSettings
    live_qualities = ("no_data",)

    def validate(self) -> None:
        if not self.settings.columns:
            raise UsageError(f"table modality {self.name!r} has no feature columns")

    def input_shape(self) -> tuple[int, ...]:
        return (len(self.settings.columns),)

    def encoder_args(self) -> dict:
        return {"n_features": len(self.settings.columns)}

    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.settings.columns)

    def available(self, files) -> bool:
        return False  # fed by its table, never by a manifest's media

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(media.table_row, np.float32)[None]}

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        return x


def select_columns(df: pd.DataFrame, spec: str, exclude: list[str]) -> list[str]:
    """Feature columns of a table: ``cols:a,b``, ``prefix:P``, ``numeric`` (every numeric column not in
    ``exclude``) or ``numeric-except:a,Rating*`` (the same, less those columns and prefixes). Refuses
    unknown, non-numeric and empty selections with a message that lists what exists."""
    spec = spec.strip() or "numeric"
    usable = [c for c in df.columns if c not in exclude]
    if spec.startswith("numeric-except:"):  # every numeric column but these (NAME* matches a prefix)
        drop = [d.strip() for d in spec[len("numeric-except:"):].split(",") if d.strip()]
        usable = [c for c in usable if not any(c == d or (d.endswith("*") and c.startswith(d[:-1])) for d in drop)]
        spec = "numeric"
    if spec == "numeric":
        cols = [c for c in usable if pd.api.types.is_numeric_dtype(df[c])]
    elif spec.startswith("prefix:"):
        cols = [c for c in usable if c.startswith(spec[len("prefix:"):])]
    elif spec.startswith("cols:"):
        cols = [c.strip() for c in spec[len("cols:"):].split(",") if c.strip()]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise UsageError(f"table has no column(s) {missing}; it has {list(df.columns)}")
    else:
        raise UsageError(f"feature columns {spec!r}: use numeric, numeric-except:A,B*, prefix:PREFIX or cols:A,B,...")
    if not cols:
        raise UsageError(f"feature columns {spec!r} select no column; the table has {list(df.columns)}")
    text = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise UsageError(f"feature column(s) {text} are not numeric; name numeric columns only")
    return cols
