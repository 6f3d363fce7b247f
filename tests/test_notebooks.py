"""Notebook hygiene; every numbered notebook executed with the smoke profile, its executed copy
normalised to the same bytes on a second run; every cell of notebooks 05-09 run twice in one kernel,
as a reader runs a cell again; and the committed executed notebooks (profile tiny) holding their
figures."""
import json

import nbformat
import pytest

from refine_iqa_lib.executed import figure_gaps, normalise_file
from refine_iqa_lib.io import REPO_ROOT
from refine_iqa_lib.reproduce import NOTEBOOK_DIR, numbered_notebooks, run_notebook

NOTEBOOKS = numbered_notebooks()
#: Notebooks re-run cell by cell in one kernel (the evaluations, ablations and figures).
RERUN = [p for p in NOTEBOOKS if p.name[:2] >= "05"]
#: Where make reproduce writes the executed notebooks of the profile whose results are committed.
COMMITTED_EXECUTED = REPO_ROOT / "results" / "executed" / "tiny"


def test_numbered_notebooks_exist():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names[0] == "00" and names == sorted(names)
    assert [p.name[:2] for p in RERUN] == ["05", "06", "07", "08", "09"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_clean_with_kernelspec_and_parameters(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["language_info"]["name"] == "python"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored with outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert 'profile = "tiny"' in src and "overrides = {}" in src, "opens on the profile whose results are committed"
    assert code.index(params[0]) == 0, "the parameters cell is the first code cell"
    intro = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and "**Run time:** about " in intro and " on 2 cores" in intro


@pytest.fixture(scope="session")
def smoke_executed(tmp_path_factory):
    """The folder the smoke runs below write their executed copies to (shared by the tests after them)."""
    return tmp_path_factory.mktemp("executed_smoke")


def _executed(folder, path):
    """The smoke-executed copy of ``path`` in ``folder``, run now if an earlier test did not."""
    out = folder / path.name
    return out if out.is_file() else run_notebook(path, folder, "smoke")


# The numbered notebooks build on each other's outputs (01's data, 03's Stage-1 run, ...) in the
# smoke profile's work folder: under pytest-xdist they run in order on one worker, and the tests
# after them reuse those outputs.
@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_with_smoke_profile(path, smoke_executed):
    out = run_notebook(path, smoke_executed, "smoke")
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert NOTEBOOK_DIR.is_dir()


def rerun_in_one_kernel(path, profile: str = "smoke", timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``path`` in one kernel with every code cell run twice in a row, the way a reader runs
    a cell again in JupyterLab. (Running the whole notebook twice would not catch a cell that
    shadows a name it uses, such as a dict named like a module imported in an earlier cell: the
    second pass re-imports it first.) The parameters cell is set to ``profile``. A failing cell
    raises ``AssertionError`` naming the cell and the error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    params = cells[0][1]
    assert "parameters" in params.metadata.get("tags", [])
    params.source = f"profile = {profile!r}\noverrides = {{}}"
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for n, (i, cell) in enumerate(cells, 1):
            for run in ("first", "second"):
                try:
                    client.execute_cell(cell, i)
                except CellExecutionError as e:
                    raise AssertionError(f"{path.name}: code cell {n} failed on its {run} run:\n{e}") from None
    return nb


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
@pytest.mark.parametrize("path", RERUN, ids=lambda p: p.stem)
def test_cells_rerun_in_one_kernel(path, smoke_executed):
    _executed(smoke_executed, path)                     # the smoke run before it made what it reads
    nb = rerun_in_one_kernel(path)
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_rerun_catches_a_cell_that_breaks_on_its_second_run(tmp_path):
    path = tmp_path / "00_shadow.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "x"\noverrides = {}', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import json"),
        nbformat.v4.new_code_cell('json = {"a": json.dumps(1)}'),  # shadows the module it uses
    ])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    with pytest.raises(AssertionError, match="code cell 3 failed on its second run"):
        rerun_in_one_kernel(path)


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_a_second_smoke_run_writes_the_same_bytes(smoke_executed, tmp_path):
    """Notebook 02 has everything that varies between runs: model-loading progress bars, widgets,
    pandas Styler ids, object addresses, figures. Normalised, a second execution matches the first."""
    path = NOTEBOOK_DIR / "02_rewards.ipynb"
    first = _executed(smoke_executed, path).read_bytes()
    second = run_notebook(path, tmp_path, "smoke")
    assert second.read_bytes() == first
    normalise_file(second)
    assert second.read_bytes() == first                 # normalising a normalised copy changes nothing
    nb = json.loads(first)
    assert "widgets" not in nb["metadata"] and "start_time" not in nb["metadata"]["papermill"]
    assert nb["metadata"]["papermill"]["input_path"] == "./notebooks/02_rewards.ipynb"


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_smoke_executed_notebooks_hold_their_figures(smoke_executed):
    for path in NOTEBOOKS:
        _executed(smoke_executed, path)
    assert figure_gaps(smoke_executed, NOTEBOOKS) == []


def test_figure_gaps_names_a_missing_notebook_an_error_and_a_figure_without_image(tmp_path):
    books = [tmp_path / "nbs" / f"{n}.ipynb" for n in ("01_a", "02_b", "03_c")]
    plot = nbformat.v4.new_code_cell("fig, ax = plt.subplots()")
    png = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fig, ax = plt.subplots()", outputs=[png])])
    nbformat.write(good, tmp_path / "01_a.ipynb")
    failed = nbformat.v4.new_notebook(cells=[plot, nbformat.v4.new_code_cell(
        "1/0", outputs=[nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])])])
    nbformat.write(failed, tmp_path / "02_b.ipynb")
    assert figure_gaps(tmp_path, books) == [
        f"{tmp_path / '02_b.ipynb'}: code cell 1 draws a figure but holds no image/png output",
        f"{tmp_path / '02_b.ipynb'}: code cell 2 ended in an error",
        f"{tmp_path / '03_c.ipynb'}: no executed copy of 03_c.ipynb"]


def test_committed_executed_notebooks_hold_their_figures():
    """results/executed/tiny/ (written by make reproduce, committed): every numbered notebook, no
    error, and an image/png output in every cell that draws a figure."""
    assert figure_gaps(COMMITTED_EXECUTED, NOTEBOOKS) == []
