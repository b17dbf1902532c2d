"""Feature-table modalities: one vector of numbers per table row (one recording of one task).

Researchers often have features already: Praat measures, landmark kinematics, wearable summaries,
UCI-style CSVs. ``curate --table NAME=FILE`` makes each such table a modality named NAME: its rows are
recordings (person and label from the table's own person and label columns), and the feature columns are
the ones named (``cols:a,b``), those starting with a prefix (``prefix:smile_``), or every numeric column
not otherwise used (the default). NaN and inf are kept as missing: the ``mlp`` encoder and the baselines
impute them with statistics of the training people only, and see a missingness indicator per column.

A table modality has no live input, unless its columns are measures that a windowed modality computes
live: ``curate --table NAME=FILE::cols:OURS=THEIRS,...::live:MODALITY`` names each feature after one of
MODALITY's measures (``feature_names``), read from the table's column THEIRS, and records MODALITY in the
settings (``live``). Live, the table modality then reads MODALITY's window from the engine's rings, behind
MODALITY's gate, and keeps those measures: a model trained on a study's own feature table (e.g. 241 real
people's finger tapping) scores a camera. Whether the study's pipeline and ours compute a measure alike
is the user's claim to check (``benchmarks/real/hand_measures.py`` compares their ranges). Without
``live``, a table modality is reported "no_data" live and fused models use what is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from symptomfuse.modalities.base import Modality, SourceMedia
from symptomfuse.errors import UsageError

if TYPE_CHECKING:  # pandas is imported where a table is read, not in a media worker (data/featurize.py)
    import pandas as pd


@dataclass(frozen=True)
class TableSettings:
    columns: tuple = ()  # the feature names, in order
    file: str = ""  # the table's file name (for the record; the content is in the cache key)
    live: str = ""  # a windowed modality whose measures the features are, read live ("" for none)

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

    def validate(self) -> None:
        if not self.settings.columns:
            raise UsageError(f"table modality {self.name!r} has no feature columns")
        if self.settings.live:
            names = self.live_source.feature_names() or ()
            unknown = [c for c in self.settings.columns if c not in names]
            if unknown:
                raise UsageError(f"table {self.name!r}: live:{self.settings.live} needs every feature to be one of "
                                 f"its measures; {unknown} are not (it has {', '.join(names)}). Name them with "
                                 "cols:OURS=THEIRS")

    # ---- live, when the features are a windowed modality's measures ----------------------------------------

    @cached_property
    def live_source(self) -> Modality | None:
        """The windowed modality whose measures the features are, bound to default settings, or None."""
        if not self.settings.live:
            return None
        from symptomfuse.modalities.base import get

        source = get(self.settings.live)
        if not source.windowed or source.source == "table":
            raise UsageError(f"table {self.name!r}: live:{self.settings.live} must be a windowed media modality")
        return source(None, self.timing)

    @property
    def live_landmarks(self):
        source = self.live_source
        return source.live_landmarks if source is not None else None

    @property
    def tasks(self):
        source = self.live_source
        return source.tasks if source is not None else ()

    @property
    def live_qualities(self):
        source = self.live_source
        return source.live_qualities if source is not None else ("no_data",)

    def live_state(self, keep_s: float):
        source = self.live_source
        return source.live_state(keep_s) if source is not None else None

    def live_window(self, streams, state, start, wanted):
        source = self.live_source
        if source is None:
            return "no_data", None
        quality, x = source.live_window(streams, state, start, True)
        if x is None:
            return quality, None
        names = list(source.feature_names())
        return quality, (x[:, [names.index(c) for c in self.settings.columns]] if wanted else None)

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


def select_columns(df: pd.DataFrame, spec: str, exclude: list[str]) -> tuple[list[str], list[str]]:
    """Feature columns of a table: ``cols:a,b`` (``cols:name=column`` names a feature after something other
    than its column), ``prefix:P``, ``numeric`` (every numeric column not in ``exclude``) or
    ``numeric-except:a,Rating*`` (the same, less those columns and prefixes). Returns the feature names
    and the columns they are read from. Refuses unknown, non-numeric and empty selections with a message
    that lists what exists."""
    spec = spec.strip() or "numeric"
    if spec.startswith("cols:"):
        pairs = [c.strip().partition("=") for c in spec[len("cols:"):].split(",") if c.strip()]
        names = [name.strip() for name, _, _ in pairs]
        cols = [(col or name).strip() for name, _, col in pairs]
        if len(set(names)) != len(names):
            raise UsageError(f"feature columns {spec!r} name a feature twice")
        return names, _check_columns(df, spec, cols)
    cols = _pick_columns(df, spec, exclude)
    return cols, _check_columns(df, spec, cols)


def _numeric(column: pd.Series) -> bool:
    from pandas.api.types import is_numeric_dtype

    return is_numeric_dtype(column)


def _by_type(spec: str) -> bool:
    """Whether a selection picks columns by their type (``numeric``, ``numeric-except:...``)."""
    return spec == "numeric" or spec.startswith("numeric-except:")


def _usable(df: pd.DataFrame, spec: str, exclude: list[str]) -> list[str]:
    """The columns a ``numeric`` or ``numeric-except:`` selection looks at."""
    usable = [c for c in df.columns if c not in exclude]
    if spec.startswith("numeric-except:"):  # every numeric column but these (NAME* matches a prefix)
        drop = [d.strip() for d in spec[len("numeric-except:"):].split(",") if d.strip()]
        usable = [c for c in usable if not any(c == d or (d.endswith("*") and c.startswith(d[:-1])) for d in drop)]
    return usable


def _pick_columns(df: pd.DataFrame, spec: str, exclude: list[str]) -> list[str]:
    if _by_type(spec):
        return [c for c in _usable(df, spec, exclude) if _numeric(df[c])]
    if spec.startswith("prefix:"):
        return [c for c in df.columns if c not in exclude and c.startswith(spec[len("prefix:"):])]
    raise UsageError(f"feature columns {spec!r}: use numeric, numeric-except:A,B*, prefix:PREFIX or "
                     "cols:A,B,... (or cols:NAME=COLUMN,...)")


def partly_numeric(df: pd.DataFrame, spec: str, exclude: list[str]) -> dict[str, str]:
    """The columns that a ``numeric`` (or ``numeric-except:``) selection leaves out although some of their
    values are numbers: a typo, a unit or a spreadsheet error in a few cells makes a whole column text.
    Column -> how many of its values are not numbers, with one of them. Columns of text alone (ids, sex)
    are not listed."""
    import pandas as pd

    spec = spec.strip() or "numeric"
    if not _by_type(spec):
        return {}
    found = {}
    for c in _usable(df, spec, exclude):
        if _numeric(df[c]):
            continue
        given = df[c].dropna().astype(str).str.strip()
        given = given[given != ""]
        text = given[pd.to_numeric(given, errors="coerce").isna()]
        if 0 < len(text) < len(given):
            found[str(c)] = (f"{len(text)} of {len(given)} values {'is not a number' if len(text) == 1 else 'are not numbers'}"
                             f", e.g. {text.iloc[0][:40]!r}")
    return found


def _check_columns(df: pd.DataFrame, spec: str, cols: list[str]) -> list[str]:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UsageError(f"table has no column(s) {missing}; it has {list(df.columns)}")
    if not cols:
        raise UsageError(f"feature columns {spec!r} select no column; the table has {list(df.columns)}")
    text = [c for c in cols if not _numeric(df[c])]
    if text:
        raise UsageError(f"feature column(s) {text} are not numeric; name numeric columns only")
    return cols
