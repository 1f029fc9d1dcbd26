"""Datasets: scikit-learn's bundled ones by name, or the user's CSV/Parquet file via pandas.

:func:`prepare` loads the data, detects the task, makes a seeded train/validation/test split (stratified for
classification) and fits a :class:`FeaturePipeline` (numeric columns imputed and standardised, other columns
one-hot encoded) on the training split only. The pipeline travels inside the registered model, so the served model
takes raw rows in the input's own columns and answers in the target's own terms.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import functools
import gzip
import hashlib
import json
import lzma
import math
import shlex
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from bo_tuner.cache import cache_dir, save_once
from bo_tuner.errors import BoTunerWarning, ConfigError, DataError, first_line, name_hint

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
MIN_ROWS = 10
_MAX_CLASSES_FOR_INT_TARGET = 20
#: A whole-number or text column with a different value on every row of a table this long looks like an identifier.
_MIN_ROWS_FOR_IDENTIFIER = 50


def _bundled_loaders() -> dict[str, Callable[..., Any]]:
    from sklearn import datasets

    return {
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }


BUNDLED: dict[str, tuple[Task, tuple[int, ...] | None]] = {
    "digits": ("classification", (8, 8, 1)),
    "diabetes": ("regression", None),
    "breast_cancer": ("classification", None),
    "wine": ("classification", None),
    "iris": ("classification", None),
}
_FORMATS = {".csv": "csv", ".txt": "csv", ".data": "csv", ".dat": "csv", ".tsv": "tsv", ".parquet": "parquet",
            ".pq": "parquet"}  # .data: as UCI names its CSV files
#: Compressed text tables pandas reads as they are: table.csv.gz, table.tsv.zip (one file inside), ...
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")
#: Tried in turn when a text file is not UTF-8: a spreadsheet's export on Windows is usually cp1252; latin-1 reads
#: any byte. A UTF-16 file (Excel's "Unicode text") announces itself with a byte-order mark.
_FALLBACK_ENCODINGS = ("cp1252", "latin-1")
#: One-hot columns per text column at most: the most frequent values, the rest share one "infrequent" column (an
#: ID or free-text column would otherwise add a column per row).
MAX_CATEGORIES = 50


def is_bundled(data: str) -> bool:
    return data in BUNDLED


def _table_format(path: Path) -> tuple[str, bool]:
    """('csv' | 'tsv' | 'parquet' | '', compressed) from the file's suffixes: table.csv.gz is a compressed CSV."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSIONS
    if compressed:
        suffixes.pop()
    kind = _FORMATS.get(suffixes[-1], "") if suffixes else ""
    return ("" if compressed and kind == "parquet" else kind), compressed


def located(data: str) -> str:
    """``data`` as a study records it for ``--resume``: a file's absolute path (a relative one named the file from
    the folder the study ran in), anything else (a bundled name, a path that names no file) as given."""
    if is_bundled(data):
        return data
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else data


def dataset_label(data: str) -> str:
    """A short name for the data: the bundled name or the file's name without its suffixes (table.csv.gz → table),
    for run and model names."""
    if is_bundled(data):
        return data
    path = Path(data)
    kind, compressed = _table_format(path)
    return Path(path.stem).stem if compressed and kind else path.stem


def _finite_or_nan(frame: Any) -> npt.NDArray[np.float64]:
    """±inf in a numeric column (a division by zero upstream) → missing, imputed like a gap; the scaler refused it
    ("Input X contains infinity") in training and in every served request that carried one. A date-time column
    (a Parquet timestamp; a CSV's ISO 8601 dates, see :func:`_is_iso_dates`) → days since 1970 (UTC), missing or
    unreadable → missing: a point in time as a number, where one-hot encoding made every distinct date its own
    category."""
    frame = pd.DataFrame(frame)
    # Only the date columns are converted: a served request's feature matrix passes here (a loop over every
    # column with a copy took 0.67 ms for 64 digits columns, 0.07 ms like this).
    dates = [i for i, dtype in enumerate(frame.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    if dates:
        frame = frame.copy()
        for i in dates:
            values = frame.iloc[:, i]
            if not _is_datetime(values):  # dates as text: a CSV's column, a served request's
                values = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
            frame.isetitem(i, _days(values))
    values = np.array(frame.to_numpy(dtype=float))
    values[np.isinf(values)] = np.nan
    return values


def _is_datetime(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column)


#: A date, optionally with a time and a UTC offset, as ISO 8601 writes it (2024-03-01, 2024-03-01 12:30:00+01:00).
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"


def _is_iso_dates(column: pd.Series) -> bool:
    """A text column whose every value is an ISO 8601 date (or date-time) that pandas reads, with at least two
    distinct ones: a CSV's dates. Other date spellings (01/02/2024: day or month first?) stay text."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column) or _is_datetime(column):
        return False
    present = column.dropna()
    if present.nunique() < 2 or not present.map(lambda v: isinstance(v, str)).all():
        return False
    if not present.str.fullmatch(_ISO_DATE).all():
        return False
    return bool(pd.to_datetime(present, format="ISO8601", utc=True, errors="coerce").notna().all())


def _days(column: pd.Series) -> pd.Series:
    """Date-times → float days since 1970-01-01 UTC (time-zone aware ones converted to UTC; NaT → NaN)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    since = column - pd.Timestamp("1970-01-01")
    return since.dt.total_seconds() / 86400.0


def _numbers(values: pd.Series, column: str) -> pd.Series:
    """A whole-number column of a request that came as objects or text (``[3, None]``, ``["3", "4"]``) → numbers,
    missing → NaN (imputed). Anything else is refused, naming the column: imputing it would answer as if it were
    missing."""
    numbers = pd.to_numeric(values, errors="coerce")
    marks = values.map(lambda v: isinstance(v, str) and v.strip().lower() in _MISSING_TEXT)
    bad = values[numbers.isna() & values.notna() & ~marks]
    if len(bad):
        raise DataError(f"input: column {column!r} holds {bad.iloc[0]!r}, not a number; send a number, or null for a "
                        "missing value")
    return numbers


def _as_text(frame: Any) -> npt.NDArray[Any]:
    """Turn categorical columns into plain strings before one-hot encoding: without the spaces around them (a
    served request's " State-gov" is the category 'State-gov'), missing or blank → 'missing'."""
    frame = pd.DataFrame(frame)
    text = frame.astype(object).where(frame.notna(), "missing").astype(str)
    stripped = text.apply(lambda column: column.str.strip().replace("", "missing"))
    return np.asarray(stripped.to_numpy(dtype=object))


class FeaturePipeline:
    """Raw rows → model inputs, model outputs → predictions in the target's own terms.

    Fitted on the training split only; pickled with joblib into the registered model's artifacts.
    """

    def __init__(self, columns: list[str], numeric: list[str], categorical: list[str], task: Task,
                 classes: list[Any] | None) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

        self.columns = list(columns)
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.task = task
        self.classes = classes
        parts: list[tuple[str, Any, list[str]]] = []
        if numeric:
            parts.append(("numeric", make_pipeline(
                FunctionTransformer(_finite_or_nan, feature_names_out="one-to-one"),
                SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()), numeric))
        if categorical:
            parts.append(("categorical", make_pipeline(
                FunctionTransformer(_as_text, feature_names_out="one-to-one"),
                OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES,
                              sparse_output=False)), categorical))
        self.transformer = ColumnTransformer(parts, remainder="drop")

    def fit(self, frame: pd.DataFrame) -> FeaturePipeline:
        #: Numeric columns of whole numbers: typed ``Any`` in the served model's signature (MLflow's ``long`` refuses
        #: a missing value, which this pipeline imputes), so :meth:`transform` checks that they hold numbers.
        self.whole_numbers = [c for c in self.numeric if pd.api.types.is_integer_dtype(frame[c])]
        #: Columns with gaps in the training rows: the model has learnt to do without them (imputed), so the served
        #: model's signature marks them optional and :meth:`transform` reads one a request leaves out as missing.
        self.optional = [c for c in self.columns if bool(frame[c].isna().any())]
        self.transformer.fit(frame[self.columns])
        return self

    def transform(self, frame: pd.DataFrame) -> npt.NDArray[np.float32]:
        absent = [c for c in self.columns if c not in frame.columns]
        optional = getattr(self, "optional", ())  # a pipeline pickled before they were noted: none
        missing = [c for c in absent if c not in optional]
        if missing:
            may = list(optional)
            raise DataError(f"input: columns {missing} are missing; the model takes {self.columns}"
                            + (f" (of them {may} may be left out: missing values there are imputed)" if may else ""))
        if absent:  # optional ones (MLflow's schema lets a request leave them out): every value missing
            frame = frame.assign(**{c: np.nan for c in absent})
        frame = frame[self.columns]
        for column in getattr(self, "whole_numbers", ()):  # a pipeline pickled before they were noted: none
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame = frame.assign(**{column: _numbers(frame[column], column)})
        return np.asarray(self.transformer.transform(frame), dtype=np.float32)

    def encode_target(self, y: pd.Series) -> npt.NDArray[Any]:
        if self.task == "regression":
            return np.asarray(y, dtype=np.float32)
        assert self.classes is not None
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index[v] for v in y], dtype=np.int32)

    def class_names(self) -> list[str]:
        """The class labels as column names of a probability table, in the model's output order."""
        assert self.classes is not None
        return [str(c) for c in self.classes]

    def decode(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Model outputs → class labels (classification) or numbers (regression)."""
        if self.task == "regression":
            return np.asarray(outputs, dtype=float).reshape(len(outputs), -1)[:, 0]
        assert self.classes is not None
        labels: npt.NDArray[Any] = np.asarray(self.classes, dtype=object)[np.argmax(outputs, axis=1)]
        return labels


@dataclass(frozen=True)
class DatasetInfo:
    """The table a study trains on as MLflow's dataset tracking shows it (a run's "Datasets used"): its name, where
    it came from, a digest of its content and its size."""

    name: str
    source: str  # the file's absolute path, or "sklearn.datasets.load_<name>" for a bundled dataset
    digest: str
    n_rows: int
    n_columns: int


def _content_digest(frame: pd.DataFrame, *, index: bool = False, types: bool = False) -> str:
    """16 hex digits of the table's column names and cells (and its index, its column types where asked)."""
    try:
        hashed = pd.util.hash_pandas_object(frame, index=index).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists in a Parquet column): hash their text
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=index).to_numpy().tobytes()
    described: list[Any] = list(frame.columns)
    if types:
        described = [described, [str(t) for t in frame.dtypes]]
    return hashlib.sha256(json.dumps(described).encode() + hashed).hexdigest()[:16]


def dataset_info(data: str, frame: pd.DataFrame) -> DatasetInfo:
    """``frame`` as loaded from ``data`` (before anything is dropped) described for MLflow."""
    digest = _content_digest(frame)
    source = f"sklearn.datasets.load_{data}" if is_bundled(data) else str(Path(data).expanduser().resolve())
    return DatasetInfo(dataset_label(data), source, digest, int(frame.shape[0]), int(frame.shape[1]))


@dataclass(frozen=True)
class PreparedData:
    """The split, transformed data one trial trains on, and the raw rows the champion is checked on."""

    name: str
    task: Task
    target: str
    pipeline: FeaturePipeline
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[Any]
    x_val: npt.NDArray[np.float32]
    y_val: npt.NDArray[Any]
    test_frame: pd.DataFrame
    test_target: pd.Series
    n_outputs: int
    image_shape: tuple[int, ...] | None
    target_mean: float
    target_scale: float
    dataset: DatasetInfo
    dataset_sample: pd.DataFrame  # a few rows of the table as read, every column (ignored ones too): its schema

    @property
    def n_rows(self) -> int:
        return len(self.x_train) + len(self.x_val) + len(self.test_frame)

    def signature_sample(self, n: int = 5) -> pd.DataFrame:
        """Raw test rows the served model's signature is read from: the first ``n``, and for a column missing in
        all of them the first row that has it, so that its type is read from a value (a text column whose first
        rows were gaps was typed ``Any``)."""
        head = self.test_frame.head(n)
        more = [int(present.idxmax()) for c in self.test_frame.columns
                if head[c].isna().all() and (present := self.test_frame[c].notna()).any()]
        return self.test_frame.iloc[sorted({*range(len(head)), *more})] if more else head

    def val_labels(self) -> npt.NDArray[Any]:
        """The validation split's classes, as the names :meth:`FeaturePipeline.class_names` gives them."""
        labels: npt.NDArray[Any] = np.asarray(self.pipeline.class_names(), dtype=object)[np.asarray(self.y_val)]
        return labels

    def commonest_val_class(self) -> tuple[Any, float]:
        """The validation split's commonest class and its share of the rows: the val_accuracy of a model that
        answers that class whatever the input."""
        codes, counts = np.unique(np.asarray(self.y_val).ravel(), return_counts=True)
        top = int(np.argmax(counts))
        return _python(self.pipeline.class_names()[int(codes[top])]), float(counts[top] / counts.sum())

    @property
    def interface(self) -> str:
        """A short hash of what a served model's callers depend on: the input columns (each numeric or not), the
        target and the task. Models of one registered name with different interfaces cannot stand in for each
        other behind the ``champion`` alias."""
        described = {"columns": self.pipeline.columns, "numeric": self.pipeline.numeric, "target": self.target,
                     "task": self.task}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _header_bytes(path: Path) -> bytes:
    """The first line of a (possibly compressed) text file, as bytes."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if not members:
                return b""
            with archive.open(members[0]) as file:
                return file.readline()
    openers: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    with openers.get(suffix, open)(path, "rb") as file:
        line: bytes = file.readline()
    return line


def _delimiter(header: str) -> str:
    """The CSV's delimiter: ',' unless its header line splits more ways on ';', tab or '|' (e.g. a CSV saved by
    a spreadsheet with a decimal comma)."""
    return max((",", ";", "\t", "|"), key=header.count) if header.strip() else ","


def _read_text_table(path: Path, kind: str) -> pd.DataFrame:
    """A CSV or TSV, compressed or not, in UTF-8 (with or without a byte-order mark), UTF-16 with a byte-order
    mark, or else a Windows/Latin-1 encoding."""
    first = _header_bytes(path)
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _read_csv(path, kind, first, "utf-16")
    for encoding in ("utf-8", *_FALLBACK_ENCODINGS[:-1]):
        with contextlib.suppress(UnicodeError):
            return _read_csv(path, kind, first, encoding)
    return _read_csv(path, kind, first, _FALLBACK_ENCODINGS[-1])


def _read_csv(path: Path, kind: str, first: bytes, encoding: str) -> pd.DataFrame:
    header = first.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="ignore")  # for counting
    sep = "\t" if kind == "tsv" else _delimiter(header)
    # A space after each separator ("age, workclass" as UCI's adult.data has it) is layout, not part of the names
    # and values: with it the target was ' income' and a served request's 'State-gov' an unseen category.
    read = functools.partial(pd.read_csv, path, sep=sep, encoding=encoding, skipinitialspace=True)
    frame = read()
    if sep == ";":  # spreadsheets that separate with ';' usually write decimal commas: 1,5
        comma = read(decimal=",")
        if _n_numeric(comma) > _n_numeric(frame):
            frame = comma
    _warn_repeated_names(read(header=None, nrows=1, dtype=str), list(frame.columns), path)
    return _marks_as_missing(frame, path)


#: What files write for a missing number beyond what pandas reads as missing ("", "NA", "N/A", "null", "NaN"):
#: UCI's "?", a spreadsheet's "-" or "#DIV/0!". A numeric column holding one was read as text and one-hot encoded.
_MISSING_MARKS = frozenset({"?", "-", "--", "---", ".", "missing", "unknown", "none", "nil", "#value!", "#div/0!",
                            "#ref!", "#num!"})
#: Text a request may send for a missing number: what pandas reads as missing, and the marks above (lower case).
_MISSING_TEXT = _MISSING_MARKS | {"", "na", "n/a", "nan", "null"}


def _marks_as_missing(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Each text column that holds numbers but for missing-value marks (:data:`_MISSING_MARKS`, any case): its
    numbers, the marks missing (imputed like any gap; rows of a target without a value are left out), with a
    warning that names them."""
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values) or _is_datetime(values):
            continue
        given = values.notna()
        text = values[given].astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        marks = text[numbers.isna()]
        if marks.empty or numbers.notna().sum() == 0 or not set(marks.str.lower()) <= _MISSING_MARKS:
            continue
        converted = pd.Series(np.nan, index=frame.index, dtype=float)
        converted[given] = numbers.astype(float)
        frame[column] = converted
        shown = ", ".join(repr(m) for m in sorted(set(marks)))
        warnings.warn(f"data: ({path.name!r}) column {column!r} holds numbers and {shown} (in {len(marks)} of "
                      f"{len(values)} rows): read as numbers, {shown} as missing values (imputed); a served request "
                      "gives a missing value as null", BoTunerWarning, stacklevel=2)
    return frame


def _warn_repeated_names(header: pd.DataFrame, columns: list[Any], path: Path) -> None:
    """pandas reads a header that names a column twice (``a,a,b``) as ``a, a.1, b``: say so, since those are the
    names the served model will ask for."""
    names = [str(n) for n in header.iloc[0].tolist()] if len(header) else []
    for name in dict.fromkeys(n for n in names if names.count(n) > 1 and n != "nan"):
        read_as = [str(columns[i]) for i, n in enumerate(names) if n == name and i < len(columns)]
        warnings.warn(f"data: ({path.name!r}) its header names column {name!r} {names.count(name)} times; they are "
                      f"read as {', '.join(map(repr, read_as))} (rename them in the header to choose the names)",
                      BoTunerWarning, stacklevel=5)


#: Table formats pandas reads with a package we do not install, and how to hand such a table to a study instead.
_OTHER_FORMATS = {".xlsx": "read_excel", ".xls": "read_excel", ".xlsm": "read_excel", ".ods": "read_excel",
                  ".json": "read_json", ".jsonl": "read_json", ".feather": "read_feather", ".arrow": "read_feather",
                  ".orc": "read_orc", ".sas7bdat": "read_sas", ".dta": "read_stata", ".sav": "read_spss",
                  ".pkl": "read_pickle", ".pickle": "read_pickle"}


def _convert_hint(path: Path) -> str:
    """For a table in another format pandas reads: how to give it to a study (as a DataFrame or a Parquet file)."""
    reader = _OTHER_FORMATS.get(path.suffix.lower())
    if reader is None:
        return ""
    lines = ", lines=True" if path.suffix.lower() == ".jsonl" else ""
    return (f"; from Python pass pandas.{reader}({path.name!r}{lines}) as data, or save it once with "
            f"pandas.{reader}(...).to_parquet('{path.stem}.parquet')")


def _without_saved_index(frame: pd.DataFrame, data: str, target: str | None) -> pd.DataFrame:
    """``frame`` without a first column that is a pandas index written along (``df.to_csv(path)``, no
    ``index=False``): no header (pandas names it "Unnamed: 0") and unique integers. As a feature it would carry
    only the row order — which, in a file sorted by its target, predicts the target (a score too good to be true,
    then a served model that wants row numbers)."""
    first = frame.columns[0]
    if (first != "Unnamed: 0" or first == target or frame.shape[1] < 3
            or not pd.api.types.is_integer_dtype(frame[first]) or not frame[first].is_unique):
        return frame
    warnings.warn(f"data: ({data!r}) its first column has no name and unique integers, a saved pandas index: it "
                  "is not used as a feature (give it a name in the header to use it)", BoTunerWarning, stacklevel=4)
    return frame.drop(columns=first)


def _n_numeric(frame: pd.DataFrame) -> int:
    return sum(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes)


#: The file name of a DataFrame handed to the Python API (its dataset label: runs and registered models are named
#: ``dataframe-<model>`` unless ``study_name`` / ``registered_model`` say otherwise).
FRAME_FILE = "dataframe.parquet"


def frames_dir() -> Path:
    """Where :func:`frame_file` keeps DataFrames: ``$XDG_CACHE_HOME/bo_tuner/frames`` (``~/.cache/…``)."""
    return cache_dir("frames")


def is_frame_file(data: Any) -> bool:
    """Is ``data`` a path :func:`frame_file` made (a DataFrame's saved copy)?"""
    return isinstance(data, str) and Path(data).name == FRAME_FILE and Path(data).parent.parent == frames_dir()


def frame_file(frame: pd.DataFrame) -> str:
    """A DataFrame given as a study's data (the Python API), saved once as Parquet, named by its content:
    ``frames_dir()/<digest>/dataframe.parquet``. A file is what the trials' worker processes read, what the
    study's config records, and what ``--resume`` reads back (the same frame again gives the same path, so a
    resume from Python with it is the same study). Its columns read back as a Parquet file's do.

    Raises:
        ConfigError: no rows or columns, column names that are not text or repeat, or the frame cannot be saved.
    """
    shape = f"a DataFrame of {frame.shape[0]} rows x {frame.shape[1]} columns"
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ConfigError(f"data: ({shape}) has no rows or no columns")
    odd = [c for c in frame.columns if not isinstance(c, str)]
    if odd:
        raise ConfigError(f"data: ({shape}) column names must be text, not {odd[0]!r} "
                          f"({type(odd[0]).__name__}): frame.columns = frame.columns.astype(str)")
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise ConfigError(f"data: ({shape}) names a column twice: {', '.join(map(repr, repeated))}")
    path = frames_dir() / _content_digest(frame, index=True, types=True) / FRAME_FILE
    try:
        save_once(path, frame.to_parquet)
    except OSError as exc:  # the cache folder: not writable, full
        raise ConfigError(f"data: ({shape}) could not be saved as {path} for the study's workers: "
                          f"{first_line(exc)}; save it yourself (frame.to_parquet('table.parquet')) and pass "
                          "the path") from None
    except Exception as exc:  # a column Parquet cannot hold: mixed types in one object column, say
        raise ConfigError(f"data: ({shape}) cannot be saved as Parquet for the study's workers: "
                          f"{first_line(exc)}; give such a column one type (frame[col].astype(str), or "
                          "pd.to_numeric(frame[col], errors='coerce'))") from None
    return str(path)


def arrays_frame(x: Any, y: Any, target: str) -> tuple[pd.DataFrame, tuple[int, ...] | None]:
    """``(x, y)`` arrays (the Python API's ``data=(x, y)``, as ``model.fit`` takes them) as a table: one column per
    feature, ``x0`` … ``x<n-1>`` (what the served model is sent), and ``target``; images (x of 3 or 4 dimensions)
    flattened a row each, their shape (height, width, channels) returned beside the table (else None). An x that is
    a DataFrame (scikit-learn's ``return_X_y=True, as_frame=True``) keeps its columns.

    Raises:
        ConfigError: x is not one row per sample of numbers, y not one value per row, or their lengths differ.
    """
    shown = f"(x of shape {np.shape(x)}, y of shape {np.shape(y)})"
    if isinstance(x, pd.DataFrame):  # scikit-learn's (X, y) with as_frame=True: the columns keep their names
        labels = _one_per_row(y, len(x), shown)
        if target in x.columns:
            raise ConfigError(f"target: ({target!r}) names one of x's columns; give the target another name")
        return x.assign(**{target: labels}), None
    features = np.asarray(x)
    image_shape = None
    if features.ndim == 1:
        features = features.reshape(-1, 1)
    if features.ndim in (3, 4):  # (n, height, width) or (n, height, width, channels)
        image_shape = (*features.shape[1:], 1)[:3]
        features = features.reshape(len(features), -1)
    if features.ndim != 2:
        raise ConfigError(f"data: {shown} x must hold one row of features, or one image, per sample")
    labels = _one_per_row(y, len(features), shown)
    if not np.issubdtype(features.dtype, np.number) and features.dtype != bool:
        raise ConfigError(f"data: {shown} x must hold numbers (dtype {features.dtype}); pass a DataFrame for "
                          "text columns")
    columns = [f"x{i}" for i in range(features.shape[1])]
    if target in columns:
        raise ConfigError(f"target: ({target!r}) names one of x's columns (x0 … x{len(columns) - 1})")
    frame = pd.DataFrame(features, columns=columns)
    frame[target] = labels
    return frame, image_shape


def _one_per_row(y: Any, n_rows: int, shown: str) -> npt.NDArray[Any]:
    """``y`` of :func:`arrays_frame` as one label or value per row of x (a column of them is read as one)."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise ConfigError(f"data: {shown} y must hold one label or value per row: for one-hot labels pass "
                          "y.argmax(axis=1)")
    if len(labels) != n_rows:
        raise ConfigError(f"data: {shown} x and y must have as many rows")
    return labels


def load_frame(data: str, target: str | None) -> tuple[pd.DataFrame, str]:
    """Load the raw table and resolve the target column's name."""
    if is_bundled(data):
        bunch = _bundled_loaders()[data](as_frame=True)
        frame = bunch.frame.copy()
        target_col = bunch.target.name if hasattr(bunch.target, "name") else "target"
        if target not in (None, target_col):
            raise DataError(f"target: ({target!r}) is not a column of {data}; its target is {target_col!r}")
        return frame, target_col
    path = Path(data).expanduser()  # "~/data.csv" in a config file (a shell expands it on the command line)
    if not path.exists():
        known = ", ".join(BUNDLED)
        if _table_format(path)[0] or "/" in data or "\\" in data:
            raise DataError(f"data: ({data!r}) no such file")
        raise DataError(f"data: ({data!r}) is neither a bundled dataset ({known}) nor an existing file")
    if path.is_dir() and not any(path.rglob("*.parquet")):
        raise DataError(f"data: ({data!r}) is a directory without Parquet files, not a CSV or Parquet file")
    kind = "parquet" if path.is_dir() else _table_format(path)[0]  # a folder: a partitioned dataset (Spark, Dask)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind:
            frame = _without_saved_index(_read_text_table(path, kind), data, target)
        else:
            raise DataError(f"data: ({data!r}) must be a .csv, .tsv or .parquet file (a .csv or .tsv may be "
                            f"compressed: {', '.join(_COMPRESSIONS)}){_convert_hint(path)}")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"data: ({data!r}) cannot be read: {first_line(exc)}") from None
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise DataError(f"data: ({data!r}) has no rows or no columns")
    frame.columns = [str(c) for c in frame.columns]
    for column in frame.columns:
        frame[column] = _plain_column(frame[column])
    if target is None:
        if "target" in frame.columns:
            target = "target"
        else:
            shown = [str(c) for c in frame.columns[:12]]
            more = f" … ({frame.shape[1]} in all)" if frame.shape[1] > len(shown) else ""
            raise DataError(f"target: (None) must name the column to predict (--target COLUMN, -P target=COLUMN or "
                            f"target: in a study file; a column named 'target' is taken without it); columns are "
                            f"{', '.join(shown)}{more}{_headerless_hint(frame)}")
    if target not in frame.columns:
        raise DataError(f"target: ({target!r}) is not a column of {data}"
                        f"{name_hint(target, [str(c) for c in frame.columns], listed='columns are')}"
                        f"{_headerless_hint(frame)}")
    return frame, target


def _headerless_hint(frame: pd.DataFrame) -> str:
    """For a table whose column names are mostly numbers (a file without a header line, as UCI's iris.data):
    say so, for the target error that follows."""
    def is_number(name: str) -> bool:
        try:
            return math.isfinite(float(name))
        except ValueError:
            return False

    if sum(is_number(c) for c in frame.columns) * 2 < frame.shape[1]:
        return ""
    return ("; the first line reads like a row of values, not column names: give the file a header line naming "
            "its columns")


def _plain_column(column: pd.Series) -> pd.Series:
    """A Parquet file's pandas-only column types → the NumPy types a CSV of the same table reads as.

    The served model's signature is inferred from a few rows and MLflow enforces it on every request, so a column
    must have the type a JSON request or a CSV carries: categoricals → their plain values; nullable integers and
    floats (``Int64``, ``Float64``) → int64 without missing values, else float64 with NaN (as ``read_csv`` gives);
    nullable booleans with missing values → objects with NaN; ``pd.NA`` strings → ``str`` with NaN; Arrow types
    likewise. Without this an ``Int64`` column whose sample rows had no gap was signed ``long`` and the champion
    check failed on the first row with ``<NA>``.
    """
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Series(np.asarray(column.astype(object)), index=column.index, name=column.name)
    if not isinstance(dtype, pd.api.extensions.ExtensionDtype) or _is_csv_text(dtype):
        return column
    if isinstance(dtype, pd.DatetimeTZDtype) or getattr(dtype, "kind", "") in "mM":
        return column  # datetimes: MLflow's schema has a type for them
    values = column.to_numpy(dtype=object, na_value=np.nan)
    return pd.Series(values, index=column.index, name=column.name).infer_objects()


def _is_csv_text(dtype: Any) -> bool:
    """pandas' default text type (what ``read_csv`` gives: ``str``, missing values are NaN)."""
    return isinstance(dtype, pd.StringDtype) and dtype.na_value is not pd.NA


def detect_task(y: pd.Series) -> Task:
    """Strings, booleans and categories → classification; few distinct integers → classification; else regression."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.to_numpy(dtype=float)
    if np.all(values == np.round(values)) and y.nunique() <= _MAX_CLASSES_FOR_INT_TARGET:
        return "classification"
    return "regression"


def _python(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``np.int64(10)`` → ``10``); anything else as it is."""
    return value.item() if hasattr(value, "item") else value


#: Fewer validation rows than this draw a warning: a trial's score then rests on too few rows to rank configurations
#: (iris, the smallest bundled dataset, has 30).
MIN_VALIDATION_ROWS = 30


def _split(n: int, y: pd.Series, task: Task, val_fraction: float, test_fraction: float,
           seed: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    from sklearn.model_selection import train_test_split

    index = np.arange(n)
    stratify = y.to_numpy() if task == "classification" else None
    if stratify is not None:
        counts = y.value_counts()
        n_test = math.ceil(n * test_fraction)
        n_val = math.ceil((n - n_test) * val_fraction / (1 - test_fraction))
        if counts.min() < 3 or n_test < len(counts) or n_val < len(counts):
            rare = _python(counts.idxmin())  # class 10, not np.int64(10)
            warnings.warn(f"class {rare!r} has {counts.min()} rows: the split is not stratified",
                          BoTunerWarning, stacklevel=3)
            stratify = None
    rest, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=stratify)
    rest_strat = stratify[rest] if stratify is not None else None
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
                                  stratify=rest_strat)
    if len(val) < MIN_VALIDATION_ROWS:
        grain = (f"an accuracy moves in steps of 1/{len(val)}" if task == "classification"
                 else f"each row is 1/{len(val)} of the error")
        warnings.warn(f"val_fraction: ({val_fraction:g}) leaves {len(val)} validation rows of {n}: every trial is "
                      f"scored on them alone, so the search mostly compares noise ({grain}); give the data more "
                      "rows, or a larger val_fraction in the study file", BoTunerWarning, stacklevel=3)
    return np.sort(train), np.sort(val), np.sort(test)


def _ignored(frame: pd.DataFrame, target: str, ignore_columns: Sequence[str], data: str) -> list[str]:
    """The columns of ``ignore_columns``, each checked to be a column of ``frame`` and not its target."""
    columns = [str(c) for c in frame.columns]
    for name in ignore_columns:
        if name == target:
            raise DataError(f"ignore_columns: ({name!r}) is the target; it cannot also be left out")
        if name not in columns:
            raise DataError(f"ignore_columns: ({name!r}) is not a column of {data}"
                            f"{name_hint(name, columns, listed='columns are')}")
    return list(ignore_columns)


def _warn_identifiers(x: pd.DataFrame, data: str, dates: Sequence[str]) -> None:
    """Warn of whole-number or text feature columns with a different value on every row (``customer_id``, an
    e-mail, a free-text comment): nothing learnt from them carries over to new rows — as a number such a column
    carries the row order, as text one-hot categories seen once. ``dates`` (unique timestamps are normal) are not."""
    if len(x) < _MIN_ROWS_FOR_IDENTIFIER:
        return
    for column in x.columns:
        values = x[column]
        kind = values.dtype
        if pd.api.types.is_bool_dtype(kind) or column in dates:
            continue
        if not (pd.api.types.is_integer_dtype(kind) or pd.api.types.is_object_dtype(kind)
                or pd.api.types.is_string_dtype(kind)):
            continue
        if values.notna().all() and values.is_unique:
            warnings.warn(f"data: ({data!r}) column {column!r} has a different value on each of its {len(x)} rows, "
                          "like an identifier; nothing learnt from it carries over to new rows (leave it out with "
                          f"--ignore-columns {shlex.quote(str(column))})", BoTunerWarning, stacklevel=3)


def prepare(data: str, target: str | None, task: str | None, val_fraction: float, test_fraction: float,
            seed: int, ignore_columns: tuple[str, ...] = ()) -> PreparedData:
    """Load, split and transform the data; cached per process so each worker loads it once — per version of the
    file: a notebook's next study reads the CSV as edited since, or another folder's file of the same name.

    ``ignore_columns`` are not features: the pipeline (and so the served model) neither takes nor needs them.

    Raises:
        DataError: naming the field and bad value (file, target, rows, classes).
    """
    return _prepare(data, _file_version(data), target, task, val_fraction, test_fraction, seed, ignore_columns)


def _file_version(data: str) -> tuple[Any, ...] | None:
    """What tells the file ``data`` names now from another: its absolute path, size and modification time (a
    folder: its Parquet files'); None for a bundled dataset or a path that names nothing (``prepare`` says so)."""
    if is_bundled(data):
        return None
    path = Path(data).expanduser()
    try:
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        stats = [(str(file), file.stat()) for file in files]
        return (str(path.resolve()), *((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats))
    except OSError:
        return None


@functools.lru_cache(maxsize=4)
def _prepare(data: str, version: tuple[Any, ...] | None, target: str | None, task: str | None, val_fraction: float,
             test_fraction: float, seed: int, ignore_columns: tuple[str, ...]) -> PreparedData:
    """:func:`prepare` of one ``version`` of the file."""
    frame, target_col = load_frame(data, target)
    ignored = _ignored(frame, target_col, ignore_columns, data)
    dataset = dataset_info(data, frame)
    before = len(frame)
    if pd.api.types.is_float_dtype(frame[target_col]):
        rows = np.flatnonzero(np.isinf(frame[target_col].to_numpy(dtype=float)))
        if len(rows):
            raise DataError(f"target: ({target_col!r}) has {len(rows)} infinite values (the first in row "
                            f"{int(rows[0]) + 1}, header not counted); remove those rows or leave the target empty")
    frame = frame[frame[target_col].notna()].reset_index(drop=True)
    if len(frame) == 0:
        raise DataError(f"target: ({target_col!r}) has no values; all {before} rows are missing it")
    if len(frame) < before:
        warnings.warn(f"target: ({target_col!r}) is missing in {before - len(frame)} of {before} rows; they are left "
                      f"out (the split, the training and the scores use the other {len(frame)})", BoTunerWarning,
                      stacklevel=2)
    y = frame[target_col]
    if task is None:
        resolved: Task = BUNDLED[data][0] if is_bundled(data) else detect_task(y)
    elif task in TASKS:
        resolved = task  # type: ignore[assignment]
    else:
        raise DataError(f"task: ({task!r}) must be one of {', '.join(TASKS)}")
    if resolved == "regression" and (not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)):
        raise DataError(f"target: ({target_col!r}) is not numeric ({y.dtype}); use task classification")
    if resolved == "regression" and y.nunique() < 2:
        raise DataError(f"target: ({target_col!r}) has one value only ({_python(y.iloc[0])!r}) in all {len(frame)} "
                        "rows; there is nothing to predict")
    if len(frame) < MIN_ROWS:
        raise DataError(f"data: ({data!r}) has {len(frame)} rows with a target; at least {MIN_ROWS} are needed "
                        "for train/validation/test splits")
    features = [c for c in frame.columns if c != target_col and c not in ignored]
    if not features:
        left_out = f" and the ignored columns {ignored}" if ignored else ""
        raise DataError(f"data: ({data!r}) has no feature columns besides the target {target_col!r}{left_out}")
    classes: list[Any] | None = None
    if resolved == "classification":
        classes = sorted(y.unique().tolist(), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise DataError(f"target: ({target_col!r}) has one class only ({classes[0]!r}); need at least two")
        if len(classes) == len(frame):
            numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
            raise DataError(f"target: ({target_col!r}) has a different value on each of its {len(frame)} rows, so no "
                            "class could be learnt from another row; is it the right column?"
                            + (" For a number to predict, use task regression" if numeric else ""))
        classes = [_python(c) for c in classes]
    x = frame[features]
    dates = [c for c in features if _is_datetime(x[c]) or _is_iso_dates(x[c])]  # days since 1970 (_finite_or_nan)
    numeric = [c for c in features if (pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c]))
               or c in dates]
    categorical = [c for c in features if c not in numeric]
    if not is_bundled(data):
        _warn_identifiers(x, data, dates)
    train, val, test = _split(len(frame), y, resolved, val_fraction, test_fraction, seed)
    pipeline = FeaturePipeline(features, numeric, categorical, resolved, classes).fit(x.iloc[train])
    y_train_raw = y.iloc[train]
    target_mean, target_scale = 0.0, 1.0
    if resolved == "regression":
        target_mean = float(y_train_raw.mean())
        target_scale = float(y_train_raw.std()) or 1.0
    return PreparedData(
        name=dataset_label(data),
        task=resolved,
        target=target_col,
        pipeline=pipeline,
        x_train=pipeline.transform(x.iloc[train]),
        y_train=pipeline.encode_target(y_train_raw),
        x_val=pipeline.transform(x.iloc[val]),
        y_val=pipeline.encode_target(y.iloc[val]),
        test_frame=x.iloc[test].reset_index(drop=True),
        test_target=y.iloc[test].reset_index(drop=True),
        n_outputs=len(classes) if classes is not None else 1,
        image_shape=BUNDLED[data][1] if is_bundled(data) else None,
        target_mean=target_mean,
        target_scale=target_scale,
        dataset=dataset,
        dataset_sample=frame.iloc[test[:20]].reset_index(drop=True),
    )


def score(task: str, y_true: pd.Series, y_pred: npt.NDArray[Any],
          probabilities: pd.DataFrame | None = None) -> dict[str, float]:
    """Test-set metrics in the target's own terms, computed once for the best trial. With a classifier's class
    ``probabilities`` (a column per class, named as :meth:`FeaturePipeline.class_names`), also ``test_auc``."""
    if task == "classification":
        truth, pred = as_labels(y_true), as_labels(y_pred)
        scores = {
            "test_accuracy": accuracy(truth, pred),
            "test_f1_macro": f1_macro(truth, pred),
        }
        auc = None if probabilities is None else roc_auc(truth, probabilities.to_numpy(),
                                                         [str(c) for c in probabilities.columns])
        if auc is not None:
            scores["test_auc"] = auc
        return scores
    truth_f = np.asarray(y_true, dtype=float)
    pred_f = np.asarray(y_pred, dtype=float)
    return {
        "test_rmse": rmse(truth_f, pred_f),
        "test_mae": mae(truth_f, pred_f),
        "test_r2": r2(truth_f, pred_f),
    }


def accuracy(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """The share of rows whose class is right: ``test_accuracy`` and, for a model that does not report it, the
    metric ``val_accuracy``."""
    from sklearn import metrics

    return float(metrics.accuracy_score(truth, predicted))


def rmse(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Root mean squared error in the target's units: ``test_rmse`` and, for a model that does not report it, the
    metric ``val_rmse``."""
    from sklearn import metrics

    return float(np.sqrt(metrics.mean_squared_error(truth, predicted)))


def mae(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Mean absolute error in the target's units: ``test_mae`` and, for a model that does not report it, the metric
    ``val_mae``."""
    from sklearn import metrics

    return float(metrics.mean_absolute_error(truth, predicted))


def f1_macro(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """F1 of each class (of those in ``truth`` or ``predicted``), averaged unweighted: ``test_f1_macro`` and the
    metric ``val_f1_macro``."""
    from sklearn import metrics

    return float(metrics.f1_score(truth, predicted, average="macro"))


def r2(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """The coefficient of determination: ``test_r2`` and the metric ``val_r2``."""
    from sklearn import metrics

    return float(metrics.r2_score(truth, predicted))


def as_labels(values: Any) -> npt.NDArray[Any]:
    """Class labels as strings, the form the test metrics and reports compare (the served model's probability
    columns are named so too)."""
    return np.asarray(values, dtype=object).astype(str)


def classification_report(y_true: pd.Series, y_pred: npt.NDArray[Any], classes: Sequence[str] | None) -> str:
    """scikit-learn's per-class precision, recall, F1 and support of the test split, as text."""
    from sklearn import metrics

    labels = list(classes) if classes is not None else None
    report: str = metrics.classification_report(as_labels(y_true), as_labels(y_pred), labels=labels, digits=4,
                                                zero_division=0)
    return report


def missing_for_auc(truth: npt.NDArray[Any], classes: Sequence[str]) -> list[str] | None:
    """Why ROC AUC of ``truth`` (labels as strings) is undefined — the classes it lacks (all but the one it holds, or
    for more than two classes any absent one), or labels that are not classes (``[]``) — else None."""
    present = set(np.asarray(truth).tolist())
    absent = [c for c in classes if c not in present]
    if not present <= set(classes):
        return []
    if len(present) < 2 or (len(classes) > 2 and absent):
        return absent
    return None


def roc_auc(truth: npt.NDArray[Any], probabilities: npt.NDArray[Any], classes: Sequence[str]) -> float | None:
    """ROC AUC of class ``probabilities`` (a column per class of ``classes``) against the true labels (strings):
    of the second class for two classes, else one-vs-rest, macro-averaged. None where it is undefined: the labels
    hold one class, or (more than two classes) not every class."""
    from sklearn import metrics

    columns = list(classes)
    if missing_for_auc(truth, columns) is not None:
        return None
    values = np.asarray(probabilities, dtype=float)
    if len(columns) == 2:
        return float(metrics.roc_auc_score(np.asarray(truth) == columns[1], values[:, 1]))
    values = values / values.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
    order = sorted(range(len(columns)), key=columns.__getitem__)  # sklearn wants sorted labels: "10" < "2"
    return float(metrics.roc_auc_score(truth, values[:, order], multi_class="ovr", average="macro",
                                       labels=[columns[i] for i in order]))
