"""A study run from a real Jupyter notebook (an IPython kernel, executed by nbclient), its builder defined in a cell."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import keras, bo_tuner\n"
    "from sklearn.datasets import load_wine\n"
    "frame = load_wine(as_frame=True).frame",

    "@keras.saving.register_keras_serializable(package='notebook')\n"
    "class Scale(keras.layers.Layer):\n"
    "    def call(self, x):\n"
    "        return x * 2.0\n"
    "\n"
    "def build_model(hp):\n"
    "    model = keras.Sequential([keras.layers.Dense(hp.Int('units', 8, 32), activation='relu'), Scale(),\n"
    "                              keras.layers.Dense(3, activation='softmax')])\n"
    "    model.compile(optimizer=keras.optimizers.Adam(hp.Float('lr', 1e-3, 1e-1, sampling='log')),\n"
    "                  loss='sparse_categorical_crossentropy')\n"
    "    return model",

    "result = bo_tuner.tune({'data': frame, 'target': 'target', 'model': build_model, 'n_calls': 3,\n"
    "                        'n_initial_points': 2, 'max_epochs': 3, 'parallel': 2, 'tracking_uri': URI},\n"
    "                       progress=False)\n"
    "print(result.n_failed, result.promotion.name, result.promotion.promoted)",

    "print(*result.load_model().predict(frame.drop(columns=['target']).head(20)))",

    "import matplotlib\n"
    "print(matplotlib.get_backend())",
]


@pytest.mark.extended
def test_a_notebook_tunes_a_builder_defined_in_its_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder, its custom layer and the data live in the kernel only (no file holds them); the study's worker
    processes train them, and the champion loads back, its layer with it; the kernel's matplotlib backend is left
    alone. The cells run as a user runs them."""
    import nbclient
    import nbformat

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cells = [f"URI = {uri!r}", *CELLS]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={
        "metadata": {"path": str(tmp_path)}}).execute()  # raises CellExecutionError, with the cell's traceback
    printed = ["".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout").strip()
               for cell in notebook.cells]
    assert printed[3] == "0 dataframe-build_model True"
    predictions = printed[4].split()
    assert len(predictions) == 20 and set(predictions) <= {"0", "1", "2"}
    # the kernel's own plots still show inline after the study (its plots were drawn into files elsewhere)
    assert printed[5] == "module://matplotlib_inline.backend_inline"
