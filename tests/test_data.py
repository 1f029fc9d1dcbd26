from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bo_tuner import data
from bo_tuner.errors import BoTunerWarning, DataError

# Most tables here are a few rows long, made to test reading them; their small validation split is not the point.
pytestmark = pytest.mark.filterwarnings("ignore:val_fraction.*validation rows:bo_tuner.errors.BoTunerWarning")


def prepare(source: str, target: str | None = None, task: str | None = None, seed: int = 0,
            ignore: tuple[str, ...] = ()) -> data.PreparedData:
    return data._prepare.__wrapped__(source, None, target, task, 0.2, 0.2, seed, ignore)


def test_digits_split_is_stratified_and_scaled() -> None:
    d = prepare("digits")
    assert d.task == "classification" and d.n_outputs == 10 and d.image_shape == (8, 8, 1)
    assert len(d.x_train) + len(d.x_val) + len(d.test_frame) == 1797
    assert d.x_train.dtype == np.float32
    assert abs(float(d.x_train.mean())) < 0.05
    train_share = np.bincount(d.y_train) / len(d.y_train)
    val_share = np.bincount(d.y_val) / len(d.y_val)
    assert np.abs(train_share - val_share).max() < 0.02
    assert list(d.test_frame.columns) == d.pipeline.columns


def test_a_validation_split_too_small_to_rank_trials_is_said_once_as_the_data_is_prepared(tmp_path: Path) -> None:
    import warnings

    rows = 15
    pd.DataFrame({"a": range(rows), "y": ["p", "q", "q"] * 5}).to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.warns(BoTunerWarning) as caught:
        tiny = prepare(str(tmp_path / "tiny.csv"), "y")
    said = [str(w.message) for w in caught if "validation rows" in str(w.message)]
    assert len(tiny.x_val) == 3 and said == [
        "val_fraction: (0.2) leaves 3 validation rows of 15: every trial is scored on them alone, so the search "
        "mostly compares noise (an accuracy moves in steps of 1/3); give the data more rows, or a larger "
        "val_fraction in the study file"]
    with pytest.warns(BoTunerWarning, match=r"3 validation rows of 15: .* noise \(each row is 1/3 of the error\)"):
        prepare(str(tmp_path / "tiny.csv"), "a", task="regression")  # no accuracy to speak of
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(prepare("iris").x_val) == data.MIN_VALIDATION_ROWS  # the smallest bundled dataset: no warning


def test_same_seed_same_split() -> None:
    a, b, c = prepare("wine", seed=1), prepare("wine", seed=1), prepare("wine", seed=2)
    assert np.array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)


def test_the_per_process_cache_reads_a_file_again_once_edited_and_a_same_named_file_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook runs studies one after the other in one process: the table edited between them (rows fixed or
    added), or another folder's file of the same relative name, is what the next study reads."""
    rng = np.random.default_rng(0)
    for folder, rows in (("a", 60), ("b", 80)):
        (tmp_path / folder).mkdir()
        pd.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows)}).to_csv(tmp_path / folder / "t.csv",
                                                                                    index=False)
    monkeypatch.chdir(tmp_path / "a")
    first = data.prepare("t.csv", "y", None, 0.2, 0.2, 0)
    assert data.prepare("t.csv", "y", None, 0.2, 0.2, 0) is first and first.n_rows == 60
    with open("t.csv", "a") as file:
        file.write("0.5,0.25\n" * 5)
    assert data.prepare("t.csv", "y", None, 0.2, 0.2, 0).n_rows == 65
    monkeypatch.chdir(tmp_path / "b")
    assert data.prepare("t.csv", "y", None, 0.2, 0.2, 0).n_rows == 80


def test_csv_with_categorical_column_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(size=60), "colour": rng.choice(["red", "blue", None], size=60),
                          "label": rng.choice(["cat", "dog"], size=60)})
    path = tmp_path / "pets.csv"
    frame.to_csv(path, index=False)
    d = prepare(str(path), "label")
    assert d.task == "classification" and d.pipeline.classes == ["cat", "dog"]
    assert d.x_train.shape[1] == 1 + 3  # scaled number + one-hot (blue, missing, red)
    decoded = d.pipeline.decode(np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert list(decoded) == ["cat", "dog"]
    unseen = pd.DataFrame({"size": [0.0], "colour": ["green"]})
    assert d.pipeline.transform(unseen).shape == (1, 4)  # unknown category ignored, not an error


def test_spreadsheet_csv_with_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    rows = [f"{i};{i % 3},5;{'ab'[i % 2]};{'yes' if i % 2 else 'no'}" for i in range(40)]
    path.write_text("id;weight (kg);kind;label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    frame, target = data.load_frame(str(path), "label")
    assert target == "label" and list(frame.columns) == ["id", "weight (kg)", "kind", "label"]
    assert frame["weight (kg)"].tolist()[:3] == [0.5, 1.5, 2.5]  # numbers, not text to one-hot
    d = prepare(str(path), "label")
    assert d.pipeline.numeric == ["id", "weight (kg)"] and d.pipeline.categorical == ["kind"]


@pytest.mark.parametrize(
    ("name", "write"),
    [  # the frame's text holds "€" (not in Latin-1) where the encoding can write it
        ("excel.csv", lambda f, p: f.to_csv(p, index=False, encoding="utf-8-sig")),  # Excel's "CSV UTF-8"
        ("windows.csv", lambda f, p: f.to_csv(p, index=False, sep=";", decimal=",", encoding="cp1252")),
        ("latin.csv", lambda f, p: f.to_csv(p, index=False, encoding="latin-1")),
        ("unicode.txt", lambda f, p: f.to_csv(p, index=False, sep="\t", encoding="utf-16")),  # Excel's "Unicode"
        ("shipped.csv.gz", lambda f, p: f.to_csv(p, index=False)),
        ("shipped.tsv.zip", lambda f, p: f.to_csv(p, index=False, sep="\t")),
        ("shipped.csv.bz2", lambda f, p: f.to_csv(p, index=False, sep=";")),
        ("shipped.csv.xz", lambda f, p: f.to_csv(p, index=False)),
        ("uci.data", lambda f, p: f.to_csv(p, index=False)),  # UCI's name for its CSV files
    ],
)
def test_text_tables_in_other_encodings_and_compressed(tmp_path: Path, name: str, write) -> None:
    money = "£ 5" if name == "latin.csv" else "€ 5"
    frame = pd.DataFrame({"größe (m)": [1.5 + i / 8 for i in range(30)],
                          "farbe": [["grün", "rot", money][i % 3] for i in range(30)],
                          "klasse": [["ja", "nein"][i % 2] for i in range(30)]})
    path = tmp_path / name
    write(frame, path)
    loaded, _ = data.load_frame(str(path), "klasse")
    pd.testing.assert_frame_equal(loaded, frame)
    assert data.dataset_label(str(path)) == name.split(".")[0]
    assert prepare(str(path), "klasse").pipeline.numeric == ["größe (m)"]


def test_parquet_categoricals_become_plain_values_and_text_columns_are_capped(tmp_path: Path) -> None:
    """A served model's schema takes what a JSON request carries (no pandas categoricals), and an ID-like text
    column adds at most MAX_CATEGORIES one-hot columns, not one per row."""
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"size": rng.normal(size=n),
                          "colour": pd.Categorical(rng.choice(["red", "blue", "green"], size=n)),
                          "name": [f"customer {i}" for i in range(n)], "label": rng.choice(["a", "b"], size=n)})
    path = tmp_path / "shop.parquet"
    frame.to_parquet(path)
    loaded, _ = data.load_frame(str(path), "label")
    assert not isinstance(loaded["colour"].dtype, pd.CategoricalDtype)
    assert set(loaded["colour"]) == {"red", "blue", "green"}
    with pytest.warns(BoTunerWarning, match=r"column 'name' has a different value on each of its 200 rows"):
        d = prepare(str(path), "label")
    assert not isinstance(d.test_frame["colour"].dtype, pd.CategoricalDtype)
    assert d.x_train.shape[1] == 1 + 3 + data.MAX_CATEGORIES  # size + colour + name (capped)
    assert d.pipeline.transform(d.test_frame).shape == (len(d.test_frame), d.x_train.shape[1])


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")
def test_parquet_nullable_types_read_as_a_csv_would_so_the_signature_holds_for_every_row(tmp_path: Path) -> None:
    """``Int64``/``boolean``/``string``/``Float64`` columns with gaps after the sample rows: the model's signature is
    inferred from 5 rows, then MLflow enforces it on each request (the champion check scores the whole test split).
    An ``Int64`` column was signed ``long`` and failed on the first ``<NA>``: "cannot convert NA to integer"."""
    from mlflow.models import infer_signature, validate_schema

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
                          "member": pd.array(rng.choice([True, False], n), dtype="boolean"),
                          "city": pd.array(rng.choice(["Oslo", "Lima"], n), dtype="string"),
                          "score": pd.array(rng.random(n), dtype="Float64"),
                          "full": pd.array(rng.integers(0, 9, n), dtype="Int64"),
                          "label": pd.array(rng.integers(0, 2, n), dtype="Int64")})
    for column in ("count", "member", "city", "score"):
        frame.loc[150::7, column] = pd.NA  # gaps only late in the file: not in the sample rows
    path = tmp_path / "nullable.parquet"
    frame.to_parquet(path)
    loaded, _ = data.load_frame(str(path), "label")
    assert {c: str(t) for c, t in loaded.dtypes.items()} == {
        "count": "float64", "member": "object", "city": "str", "score": "float64", "full": "int64", "label": "int64"}
    d = prepare(str(path), "label")
    assert d.pipeline.classes == [0, 1] and d.pipeline.numeric == ["count", "score", "full"]
    assert d.test_frame.head(5)["count"].notna().all() and d.test_frame["count"].isna().any()
    validate_schema(d.test_frame, infer_signature(d.test_frame.head(5)).inputs)

def test_parquet_timestamps_are_days_since_1970_for_the_model(tmp_path: Path) -> None:
    """A date-time column was one-hot encoded as text: every distinct timestamp its own category (the top 50, the
    rest "infrequent"), which says nothing about time. It is a number now — and the label here depends on it."""
    rng = np.random.default_rng(0)
    n = 300
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    frame = pd.DataFrame({"signed_up": when, "spend": rng.normal(size=n),
                          "churned": np.where(when > pd.Timestamp("2021-06-01"), "yes", "no")})
    frame.loc[::13, "signed_up"] = pd.NaT
    frame["seen"] = frame["signed_up"].dt.tz_localize("Europe/Oslo")  # time-zone aware too
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    d = prepare(str(path), "churned")
    assert d.pipeline.numeric == ["signed_up", "spend", "seen"] and d.x_train.shape[1] == 3
    assert np.isfinite(d.x_train).all()  # NaT imputed like a gap
    days = data._finite_or_nan(d.test_frame[["signed_up", "seen"]].head(3))
    expected = (d.test_frame["signed_up"].head(3) - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400
    assert np.allclose(days[:, 0], expected, equal_nan=True)
    offsets = d.test_frame["seen"].head(3).map(lambda t: t.utcoffset().total_seconds() / 86400 if pd.notna(t) else 0)
    assert np.allclose(days[:, 1], days[:, 0] - offsets, equal_nan=True)  # Oslo's wall clock, read as UTC
    assert abs(np.corrcoef(d.x_train[:, 0], d.y_train)[0, 1]) > 0.5  # the model can see time


def test_a_csvs_iso_dates_are_days_too_and_other_spellings_stay_text(tmp_path: Path) -> None:
    """A CSV has no date type: ISO 8601 text (2021-06-01, 2021-06-01T08:30:00+02:00) is read as dates, the model
    sees days since 1970, and a served request's strings (a bad one included) go through the same parse."""
    rng = np.random.default_rng(0)
    n = 300
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    frame = pd.DataFrame({"signed_up": when.strftime("%Y-%m-%d"), "last_seen": when.strftime("%Y-%m-%dT08:30:00+02:00"),
                          "us_style": when.strftime("%m/%d/%Y"), "churned": np.where(when > "2021-06-01", "y", "n")})
    frame.loc[::11, "signed_up"] = None
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    d = prepare(str(path), "churned")
    assert d.pipeline.numeric == ["signed_up", "last_seen"] and d.pipeline.categorical == ["us_style"]
    assert np.isfinite(d.x_train).all()
    assert abs(np.corrcoef(d.x_train[:, 0], d.y_train)[0, 1]) > 0.5  # the model can see time
    request = pd.DataFrame({"signed_up": ["2021-07-01", "not a date"], "last_seen": ["2021-07-01T08:30:00+02:00", None],
                            "us_style": ["07/01/2021", "07/02/2021"]})
    days = data._finite_or_nan(request[["signed_up", "last_seen"]])
    assert days[0, 0] == (pd.Timestamp("2021-07-01") - pd.Timestamp("1970-01-01")).days
    assert days[0, 1] == pytest.approx(days[0, 0] + 6.5 / 24) and np.isnan(days[1]).all()
    assert np.isfinite(d.pipeline.transform(request)).all()  # unreadable and missing dates are imputed


def test_regression_detected_for_float_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "r.parquet"
    pd.DataFrame({"a": rng.normal(size=50), "y": rng.normal(100, 20, size=50)}).to_parquet(path)
    d = prepare(str(path), "y")
    assert d.task == "regression" and d.n_outputs == 1
    assert 80 < d.target_mean < 120 and 10 < d.target_scale < 30


def _text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return str(path)


def _csv(tmp_path: Path, frame: pd.DataFrame) -> str:
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("make", "target", "message"),
    [
        (lambda p: "nope", None, "data: ('nope') is neither a bundled dataset"),
        (lambda p: str(p / "missing.csv"), "y", "no such file"),
        (lambda p: str(p), "y", "is a directory"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20), "y": range(20)})), "z",
         "d.csv; columns are a, y"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20), "Price": range(20)})), "price", "did you mean 'Price'?"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20), "y": [None] * 20})), "y", "has no values"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20), "y": ["x"] * 20})), "y", "has one class only ('x')"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(5), "y": [0, 1, 0, 1, 0]})), "y", "has 5 rows"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20), "y": [3.5] * 20})), "y",
         "target: ('y') has one value only (3.5) in all 20 rows; there is nothing to predict"),
        (lambda p: _csv(p, pd.DataFrame({"a": [1, 2] * 10, "y": [f"user{i}" for i in range(20)]})), "y",
         "target: ('y') has a different value on each of its 20 rows, so no class could be learnt from another row; "
         "is it the right column?"),
        (lambda p: _csv(p, pd.DataFrame({"a": range(20)})), None,
         "target: (None) must name the column to predict (--target COLUMN, -P target=COLUMN or target: in a study "
         "file; a column named 'target' is taken without it); columns are a"),
        (lambda p: _csv(p, pd.DataFrame({f"c{i}": range(20) for i in range(30)})), None,
         "columns are c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 … (30 in all)"),
        (lambda p: _csv(p, pd.DataFrame({"y": range(20)})), "y", "has no feature columns"),
        (lambda p: _text(p, "5.1,3.5,setosa\n4.9,3.0,setosa\n" * 10), None,
         "columns are 5.1, 3.5, setosa; the first line reads like a row of values, not column names: give the file a "
         "header line naming its columns"),
        (lambda p: _text(p, "5.1,3.5,setosa\n4.9,3.0,setosa\n" * 10), "species",
         "d.csv; columns are 5.1, 3.5, setosa; the first line reads like a row of values"),
        (lambda p: str(p / "t.xlsx") if (p / "t.xlsx").write_bytes(b"x") else "", "y",
         "(a .csv or .tsv may be compressed: .gz, .bz2, .xz, .zip); from Python pass pandas.read_excel('t.xlsx') as "
         "data, or save it once with pandas.read_excel(...).to_parquet('t.parquet')"),
        (lambda p: str(p / "rows.JSONL") if (p / "rows.JSONL").write_bytes(b"x") else "", "y",
         "pandas.read_json('rows.JSONL', lines=True) as data"),
        (lambda p: str(p / "t.parquet.gz") if (p / "t.parquet.gz").write_bytes(b"x") else "", "y",
         "must be a .csv, .tsv or .parquet file"),
    ],
)
def test_bad_data_names_field_and_value(tmp_path: Path, make, target: str | None, message: str) -> None:
    with pytest.raises(DataError) as info:
        prepare(make(tmp_path), target)
    assert message in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot be read"):
        prepare(str(path), "y")


def test_regression_on_text_target_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, pd.DataFrame({"a": range(20), "y": ["a", "b"] * 10}))
    with pytest.raises(DataError, match="is not numeric"):
        prepare(path, "y", "regression")


def test_score_in_target_terms() -> None:
    scores = data.score("classification", pd.Series(["a", "b", "a"]), np.array(["a", "b", "b"], dtype=object))
    assert scores["test_accuracy"] == pytest.approx(2 / 3)
    reg = data.score("regression", pd.Series([1.0, 2.0]), np.array([1.0, 4.0]))
    assert reg["test_rmse"] == pytest.approx(np.sqrt(2.0))


def test_classification_report_and_test_plot_keep_the_models_class_order(tmp_path: Path) -> None:
    """Integer classes 1..12 as the model names them: "10" after "9", not after "1" as strings sort."""
    from bo_tuner import plots

    classes = [str(c) for c in range(1, 13)]
    truth = pd.Series(np.tile(np.arange(1, 13), 3))
    predicted = truth.to_numpy().copy()
    predicted[:2] = 10  # two rows of classes 1 and 2 taken for 10
    report = data.classification_report(truth, predicted, classes)
    rows = [line.split()[0] for line in report.splitlines()[2:14]]
    assert rows == classes
    assert report.splitlines()[11].split()[1:] == ["0.6000", "1.0000", "0.7500", "3"]  # class 10: 3 of 5 right
    for task, values, path in (("classification", data.as_labels(truth), tmp_path / "cm.png"),
                               ("regression", truth.to_numpy(dtype=float), tmp_path / "reg.png")):
        plots.test_predictions(task, values, values if task == "regression" else data.as_labels(predicted),
                               classes if task == "classification" else None, str(path), "t")
        assert path.read_bytes()[:4] == b"\x89PNG"
    many = [str(c) for c in range(40)]  # past 25 classes the counts are left out; it still draws
    plots.test_predictions("classification", np.array(many * 2), np.array(many * 2), many, str(tmp_path / "m.png"), "t")
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_interface_hash_follows_columns_target_and_task_not_the_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["x", "y"], 60), "y": rng.choice([0, 1], 60)})
    first = _csv(tmp_path, frame)
    base = prepare(first, "y").interface
    (tmp_path / "more.csv").write_text(pd.concat([frame, frame]).to_csv(index=False))  # more rows, same table
    assert prepare(str(tmp_path / "more.csv"), "y").interface == base
    assert prepare(first, "y", task="regression").interface != base
    (tmp_path / "renamed.csv").write_text(frame.rename(columns={"b": "c"}).to_csv(index=False))
    assert prepare(str(tmp_path / "renamed.csv"), "y").interface != base


def test_a_partitioned_parquet_folder_is_one_table(tmp_path: Path) -> None:
    """Spark and Dask write a table as a folder of Parquet files (here partitioned by a column)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "zone": rng.choice(["n", "s"], 60), "y": rng.choice([0, 1], 60)})
    frame.to_parquet(tmp_path / "sales", partition_cols=["zone"])
    loaded, _ = data.load_frame(str(tmp_path / "sales"), "y")
    assert len(loaded) == 60 and set(loaded.columns) == {"a", "zone", "y"}
    assert set(loaded["zone"]) == {"n", "s"} and not isinstance(loaded["zone"].dtype, pd.CategoricalDtype)
    assert data.dataset_label(str(tmp_path / "sales")) == "sales"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is a directory without Parquet files"):
        data.load_frame(str(tmp_path / "empty"), "y")


def test_a_home_relative_path_in_a_config_file_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    pd.DataFrame({"a": range(20), "y": [0, 1] * 10}).to_csv(tmp_path / "t.csv", index=False)
    loaded, target = data.load_frame("~/t.csv", "y")
    assert target == "y" and len(loaded) == 20


def test_infinite_numbers_are_imputed_in_features_and_refused_in_the_target(tmp_path: Path) -> None:
    """A feature's ±inf (a division by zero upstream) made the scaler refuse the whole table ("Input X contains
    infinity") and every trial fail; an infinite target did too. Now the feature's are imputed like gaps, in
    training and in served requests, and the target's are bad input, named before anything runs."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[[3, 9], "a"] = [np.inf, -np.inf]
    d = prepare(_csv(tmp_path, frame), "y")
    assert np.isfinite(d.x_train).all() and np.isfinite(d.x_val).all()
    request = pd.DataFrame({"a": [np.inf, 1.0], "b": [0.0, -np.inf]})
    assert np.isfinite(d.pipeline.transform(request)).all()
    frame.loc[[5, 20], "y"] = np.inf
    (tmp_path / "bad.csv").write_text(frame.to_csv(index=False))
    with pytest.raises(DataError, match=r"target: \('y'\) has 2 infinite values \(the first in row 6"):
        prepare(str(tmp_path / "bad.csv"), "y")


def test_rows_without_a_target_are_left_out_and_said(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[::6, "y"] = np.nan
    with pytest.warns(BoTunerWarning, match=r"target: \('y'\) is missing in 10 of 60 rows; they are left out .* "
                                            r"the other 50\)"):
        d = prepare(_csv(tmp_path, frame), "y")
    assert d.n_rows == 50


def test_a_pandas_index_saved_with_the_csv_is_not_a_feature(tmp_path: Path) -> None:
    """`df.to_csv(path)` writes the index as a first column without a name; in a file sorted by its target, the
    row number predicts the target."""
    import sklearn.datasets

    frame = sklearn.datasets.load_iris(as_frame=True).frame  # sorted by species
    path = tmp_path / "iris.csv"
    frame.to_csv(path)
    with pytest.warns(BoTunerWarning, match=r"first column has no name and unique integers"):
        d = prepare(str(path))
    assert d.pipeline.columns == [c for c in frame.columns if c != "target"]
    assert list(d.test_frame.columns) == d.pipeline.columns  # what the served model's signature asks for

    repeated = frame.assign(**{"": frame["target"] * 0}).iloc[:, [-1, *range(frame.shape[1])]]
    repeated.to_csv(path, index=False)  # an unnamed first column that is not an index: kept
    assert prepare(str(path)).pipeline.columns[0] == "Unnamed: 0"


def test_roc_auc_of_two_classes_of_many_and_where_it_is_undefined() -> None:
    from sklearn.metrics import roc_auc_score

    from bo_tuner.data import roc_auc

    truth = np.array(["no", "yes", "yes", "no", "yes"], dtype=object)
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], dtype=np.float32)
    assert roc_auc(truth, probs, ["no", "yes"]) == pytest.approx(roc_auc_score([0, 1, 1, 0, 1], probs[:, 1]))
    three = np.array(["a", "b", "c", "a", "c", "b"], dtype=object)
    scores = np.random.default_rng(0).dirichlet([1, 1, 1], size=6).astype(np.float32)
    assert roc_auc(three, scores, ["a", "b", "c"]) == pytest.approx(
        roc_auc_score(three, scores / scores.sum(axis=1, keepdims=True), multi_class="ovr", labels=["a", "b", "c"]))
    assert roc_auc(np.array(["a", "a"], dtype=object), scores[:2], ["a", "b", "c"]) is None  # one class
    assert roc_auc(np.array(["a", "b"], dtype=object), scores[:2], ["a", "b", "c"]) is None  # "c" absent


def test_roc_auc_takes_the_classes_in_the_model_s_order_not_sorted_as_text() -> None:
    # An integer target 1..10 has classes in numeric order; as text "10" sorts before "2", and sklearn refuses labels
    # that are not sorted ("Parameter 'labels' must be ordered" — a study with such a target registered nothing).
    from sklearn.metrics import roc_auc_score

    from bo_tuner.data import roc_auc, score

    classes = [str(c) for c in range(1, 11)]
    rng = np.random.default_rng(1)
    truth = np.array(classes * 3, dtype=object)
    probs = rng.dirichlet(np.ones(10), size=len(truth)).astype(np.float32)
    probs[np.arange(len(truth)), [classes.index(t) for t in truth]] += 0.5  # better than chance
    by_text = sorted(range(10), key=classes.__getitem__)
    expected = roc_auc_score(truth, (probs / probs.sum(axis=1, keepdims=True))[:, by_text], multi_class="ovr",
                             labels=sorted(classes))
    assert roc_auc(truth, probs, classes) == pytest.approx(expected)
    assert 0.5 < expected < 1.0
    frame = pd.DataFrame(probs, columns=classes)
    assert score("classification", pd.Series([int(t) for t in truth]), np.array([int(t) for t in truth]),
                 frame)["test_auc"] == pytest.approx(expected)


def test_ignored_columns_are_not_features_and_identifier_like_columns_are_pointed_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"customer_id": rng.permutation(n) + 1000, "email": [f"u{i}@x.org" for i in range(n)],
                          "spend": rng.normal(size=n), "visits": rng.integers(0, 5, n), "day": pd.date_range(
                              "2024-01-01", periods=n).strftime("%Y-%m-%d"), "y": rng.choice(["a", "b"], n)})
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(BoTunerWarning) as caught:
        prepare(str(path), "y")
    identifiers = [str(w.message) for w in caught if "like an identifier" in str(w.message)]
    flagged = sorted(message.split("column ")[1].split(" ")[0] for message in identifiers)
    assert flagged == ["'customer_id'", "'email'"]  # not the unique floats or the dates, nor the repeating counts
    assert "leave it out with --ignore-columns customer_id" in identifiers[0]
    from bo_tuner.trial import prepared_data

    data._prepare.cache_clear()
    prepared_data((str(path), "y", None, 0.2, 0.2, 0, ()))  # where trials run: the study has said it (no warning)

    d = prepare(str(path), "y", ignore=("customer_id", "email"))  # no warning left (BoTunerWarning is an error here)
    assert d.pipeline.columns == ["spend", "visits", "day"]
    assert list(d.test_frame.columns) == d.pipeline.columns  # what the served model's signature asks for
    assert d.interface != prepare(str(path), "y", ignore=("customer_id", "email", "day")).interface
    with pytest.raises(DataError, match=r"ignore_columns: \('emial'\) is not a column of .*; did you mean 'email'"):
        prepare(str(path), "y", ignore=("customer_id", "emial"))
    with pytest.raises(DataError, match=r"ignore_columns: \('target'\) is the target"):
        prepare("iris", ignore=("target",))
    small = frame.head(data._MIN_ROWS_FOR_IDENTIFIER - 1)
    small.to_csv(path, index=False)
    prepare(str(path), "y")  # too few rows to tell an identifier from a measurement: no warning


def test_a_header_that_names_a_column_twice_is_read_with_pandas_suffixes_and_said(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv.gz"
    pd.DataFrame([[i % 7, i % 5, i % 3, i % 2] for i in range(40)]).to_csv(
        path, index=False, header=["a", "a", "b", "y"])
    with pytest.warns(BoTunerWarning, match=r"header names column 'a' 2 times; they are read as 'a', 'a.1'"):
        d = prepare(str(path), "y")
    assert d.pipeline.columns == ["a", "a.1", "b"]  # the names the served model's signature asks for


def test_a_dataframe_from_python_is_saved_once_by_its_content_and_read_back_as_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bo_tuner.tune({"data": frame, ...})``: the workers, the stored config and ``--resume`` need a file. The
    same content (cells, index, column names and types) gives the same file, written once; other content another."""
    from bo_tuner import StudyConfig
    from bo_tuner.errors import ConfigError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=50), "n": rng.integers(0, 9, 50), "y": rng.choice(["a", "b"], 50)})
    path = Path(StudyConfig(data=frame, target="y").data)
    assert path.parent.parent == tmp_path / "cache" / "bo_tuner" / "frames" and path.name == data.FRAME_FILE
    written = path.stat().st_mtime_ns
    assert data.frame_file(frame.copy()) == str(path) and path.stat().st_mtime_ns == written  # not written again
    assert data.dataset_label(str(path)) == "dataframe"
    loaded, target = data.load_frame(str(path), "y")
    pd.testing.assert_frame_equal(loaded, frame)
    assert target == "y"
    others = [frame.assign(x=frame["x"] + 1), frame.astype({"n": float}), frame.rename(columns={"x": "z"}),
              frame.set_axis(range(100, 150))]
    assert len({data.frame_file(f) for f in others} | {str(path)}) == 5
    with pytest.raises(ConfigError, match=r"^data: \(a DataFrame of 50 rows x 3 columns\) column names must be text, "
                       r"not 0 \(int\): frame.columns = frame.columns.astype\(str\)$"):
        StudyConfig(data=frame.set_axis([0, 1, 2], axis=1))
    with pytest.raises(ConfigError, match=r"names a column twice: 'x'"):
        data.frame_file(frame[["x", "x", "y"]])
    with pytest.raises(ConfigError, match=r"\(a DataFrame of 0 rows x 3 columns\) has no rows or no columns"):
        data.frame_file(frame.head(0))
    with pytest.raises(ConfigError, match=r"^data: \(a list\) must be"):
        StudyConfig(data=[1, 2])  # type: ignore[arg-type]
    assert StudyConfig(data=path, target="y").data == str(path)  # type: ignore[arg-type]  # a pathlib.Path
    with pytest.raises(ConfigError, match=r"^data: \(a numpy.ndarray\) must be a bundled dataset name, a file path or "
                       r"\(from Python\) a pandas DataFrame or a pair of arrays \(x, y\)$"):
        StudyConfig(data=frame.to_numpy())  # type: ignore[arg-type]
    mixed = frame.assign(x=[1, "one", 2.5, None, 3] * 10)  # one column, three types: Parquet holds one
    with pytest.raises(ConfigError, match=r"^data: \(a DataFrame of 50 rows x 3 columns\) cannot be saved as Parquet "
                       r"for the study's workers: .*Conversion failed for column x.*; give such a column one type"):
        data.frame_file(mixed)
    assert not list((tmp_path / "cache").rglob(".dataframe.parquet.*"))  # no partial file left behind
    (tmp_path / "not a folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not a folder"))  # no cache to write to: the way out is said
    with pytest.raises(ConfigError, match=r"could not be saved as .* save it yourself "
                       r"\(frame.to_parquet\('table.parquet'\)\) and pass the path"):
        data.frame_file(frame)


def test_arrays_from_python_are_a_table_of_numbered_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``data=(x, y)`` as ``model.fit(x, y)`` takes them: a table with columns x0 … x<n-1> and the target, saved
    as a DataFrame is (the same arrays, the same file); images are flattened, the cnn model told their shape; shapes
    that are no table say what they must be."""
    from sklearn.datasets import load_iris

    from bo_tuner import StudyConfig
    from bo_tuner.errors import ConfigError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x, y = load_iris(return_X_y=True)
    config = StudyConfig(data=(x, y))  # type: ignore[arg-type]
    assert config.target == "target" and StudyConfig(data=[x, y.reshape(-1, 1)]).data == config.data  # type: ignore
    prepared = data.prepare(config.data, config.target, None, 0.2, 0.2, 0)
    assert prepared.pipeline.columns == ["x0", "x1", "x2", "x3"] and prepared.pipeline.class_names() == ["0", "1", "2"]
    assert prepared.task == "classification" and prepared.n_rows == 150
    frame_x, series_y = load_iris(return_X_y=True, as_frame=True)  # scikit-learn's pair: the names are kept
    columns = data.load_frame(StudyConfig(data=(frame_x, series_y)).data, "target")[0].columns  # type: ignore
    assert columns.tolist() == [*frame_x.columns, "target"]
    named = StudyConfig(data=(x[:, 0], x[:, 1]), target="width", task="regression")  # type: ignore[arg-type]
    assert data.load_frame(named.data, "width")[0].columns.tolist() == ["x0", "width"]
    images = StudyConfig(data=(x.reshape(150, 2, 2), y), model="cnn")  # type: ignore[arg-type]
    assert images.fixed == {"image_shape": "2x2x1"} and data.load_frame(images.data, "target")[0].shape == (150, 5)
    assert StudyConfig(data=(x.reshape(150, 1, 2, 2), y), model="cnn",  # type: ignore[arg-type]
                       space={"image_shape": {"type": "categorical", "choices": ["2x2x1"]}}).fixed == {}
    assert StudyConfig(data=(x.reshape(150, 2, 2), y)).fixed == {}  # type: ignore[arg-type]  # the mlp: rows
    for arrays, message in (((x.reshape(150, 1, 1, 2, 2), y), r"x must hold one row of features, or one image, per "
                                                              r"sample"),
                            ((x, np.eye(3)[y]), r"y must hold one label or value per row: for one-hot labels pass "
                                                r"y.argmax\(axis=1\)"),
                            ((x, y[:100]), r"x and y must have as many rows"),
                            ((x.astype(str), y), r"x must hold numbers")):
        with pytest.raises(ConfigError, match=r"^data: \(x of shape .*, y of shape .*\) " + message):
            StudyConfig(data=arrays)  # type: ignore[arg-type]


def test_a_numeric_column_with_missing_value_marks_is_read_as_numbers(tmp_path: Path) -> None:
    """UCI's files mark a missing number with "?" (auto-mpg's horsepower), spreadsheets with "-" or "#DIV/0!":
    pandas reads such a column as text, which was one-hot encoded (50 columns of values instead of one number).
    It is read as numbers, the marks as missing values, with a warning naming them; a column with other words
    stays text; marks in the target leave those rows out."""
    rng = np.random.default_rng(0)
    n = 80
    power = [str(v) if i % 9 else "?" for i, v in enumerate(rng.integers(50, 200, n))]
    ratio = [f"{v:.2f}" if i % 13 else ("-" if i % 2 else "#DIV/0!") for i, v in enumerate(rng.normal(size=n))]
    size = [str(v) if i % 7 else "XL" for i, v in enumerate(rng.integers(36, 46, n))]
    target = [f"{v:.3f}" if i != 5 else "?" for i, v in enumerate(rng.normal(size=n))]
    path = tmp_path / "auto.csv"
    pd.DataFrame({"horsepower": power, "ratio": ratio, "size": size, "mpg": target}).to_csv(path, index=False)
    with pytest.warns(BoTunerWarning) as caught:
        d = prepare(str(path), "mpg")
    messages = [str(w.message) for w in caught]
    assert "data: ('auto.csv') column 'horsepower' holds numbers and '?' (in 9 of 80 rows): read as numbers, '?' " \
           "as missing values (imputed); a served request gives a missing value as null" in messages
    assert any("column 'ratio' holds numbers and '#DIV/0!', '-' (in 7 of 80 rows)" in m for m in messages)
    assert any(m.startswith("target: ('mpg') is missing in 1 of 80 rows") for m in messages)
    assert d.task == "regression" and d.pipeline.numeric == ["horsepower", "ratio"]
    assert d.pipeline.categorical == ["size"] and d.x_train.shape[1] == 2 + 10 + 1  # sizes 36..45 and XL
    assert d.test_frame["horsepower"].dtype == np.float64


def test_a_space_after_each_comma_is_layout_and_categories_ignore_surrounding_spaces(tmp_path: Path) -> None:
    """UCI's adult.data writes "39, State-gov, <=50K": the names and values start after the space (the target is
    'income', not ' income'), and a served request's category with spaces around it is that category."""
    rng = np.random.default_rng(0)
    rows = [f"{rng.integers(18, 90)}, {rng.choice(['State-gov', 'Private', 'Self-emp'])}, "
            f"{rng.choice(['<=50K', '>50K'])}" for _ in range(60)]
    path = tmp_path / "adult.data"
    path.write_text("age, workclass, income\n" + "\n".join(rows) + "\n")
    d = prepare(str(path), "income")
    assert d.target == "income" and d.pipeline.classes == ["<=50K", ">50K"]
    assert d.pipeline.columns == ["age", "workclass"] and d.pipeline.numeric == ["age"]
    assert d.x_train.shape[1] == 1 + 3
    padded = d.pipeline.transform(pd.DataFrame({"age": [40, 40], "workclass": [" Private ", "Private"]}))
    assert np.array_equal(padded[0], padded[1]) and padded[0, 1:].sum() == 1  # one known category, not unseen


def test_a_whole_number_column_takes_a_request_s_missing_values_and_refuses_what_is_not_a_number(
        tmp_path: Path) -> None:
    """A column of whole numbers is typed ``Any`` in the served model (MLflow's ``long`` refuses JSON's null): the
    pipeline imputes a missing value there as in a column of decimals — null, NaN, blank or a missing-value mark,
    numbers as text read as numbers — and refuses anything else, naming the column."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"visits": rng.integers(0, 9, size=60), "size": rng.normal(size=60),
                          "label": rng.choice(["cat", "dog"], size=60)})
    path = tmp_path / "pets.csv"
    frame.to_csv(path, index=False)
    d = prepare(str(path), "label")
    assert d.pipeline.whole_numbers == ["visits"]
    imputed = d.pipeline.transform(pd.DataFrame({"visits": [np.nan], "size": [0.5]}))[0]
    as_sent = pd.DataFrame({"visits": [3, None, "4", " ", "n/a", "?"], "size": [0.5] * 6})
    got = d.pipeline.transform(as_sent)
    numbers = d.pipeline.transform(pd.DataFrame({"visits": [3.0, 4.0], "size": [0.5, 0.5]}))
    assert np.array_equal(got[[0, 2]], numbers) and all(np.array_equal(row, imputed) for row in got[[1, 3, 4, 5]])
    with pytest.raises(DataError, match=r"^input: column 'visits' holds 'many', not a number; send a number, or null "
                                        "for a missing value$"):
        d.pipeline.transform(pd.DataFrame({"visits": [3, "many"], "size": [0.5, 0.5]}))


def test_a_column_with_gaps_in_training_may_be_left_out_of_a_request_and_its_type_is_read_from_a_value(
        tmp_path: Path) -> None:
    """The served model's signature marks optional exactly the columns with gaps in the training rows, and a request
    may leave such a column out: MLflow's schema then passes the frame on without it, which the pipeline read as
    every value missing (imputed), not as an error. A column whose first test rows are all gaps is typed from the
    first row that has a value (it was ``Any``, read from five missing values)."""
    import warnings

    from mlflow.models import infer_signature

    from bo_tuner import tracking

    rng = np.random.default_rng(1)
    n = 200
    frame = pd.DataFrame({"size": rng.normal(size=n), "region": rng.choice(["north", "south"], size=n),
                          "visits": rng.integers(0, 9, size=n), "label": rng.choice(["a", "b"], size=n)})
    frame.loc[::3, "region"] = None
    frame.loc[::4, "size"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    d = prepare(str(tmp_path / "t.csv"), "label")
    assert d.pipeline.optional == ["size", "region"]
    d = data.PreparedData(**{**d.__dict__, "test_frame": d.test_frame.assign(  # the first test rows: gaps alone
        region=[None] * 6 + list(d.test_frame["region"][6:]))})
    sample = d.signature_sample()
    assert len(sample) == 6 and sample["region"].notna().sum() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's advice on integer columns: typed Any here
        signature = tracking._served_inputs(infer_signature(sample), sample, d.pipeline.whole_numbers,
                                            d.pipeline.optional)
    specs = {spec.name: (repr(spec.type), spec.required) for spec in signature.inputs.inputs}
    assert specs == {"size": ("double", False), "region": ("string", False), "visits": ("Any", True)}
    rows = d.test_frame.head(4).assign(size=1.0)
    without = d.pipeline.transform(rows.drop(columns=["region", "size"]))
    assert np.array_equal(without, d.pipeline.transform(rows.assign(region=None, size=np.nan)))
    with pytest.raises(DataError, match=r"^input: columns \['visits'\] are missing; the model takes \['size', "
                                        r"'region', 'visits'\] \(of them \['size', 'region'\] may be left out: missing "
                                        r"values there are imputed\)$"):
        d.pipeline.transform(rows.drop(columns=["visits"]))
