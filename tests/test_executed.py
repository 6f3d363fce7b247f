"""Executed notebooks normalised (refine_iqa_lib.executed): two runs that differ only in what varies
from run to run write the same bytes; numbers, tables and figures are kept."""
import json

import nbformat

from refine_iqa_lib.executed import normalise_file, normalise_notebook
from refine_iqa_lib.io import REPO_ROOT


def _run(seed: int, out_dir) -> dict:
    """An executed notebook as papermill writes it; ``seed`` changes only what varies between runs."""
    t = f"2026-01-0{seed}T10:00:0{seed}"
    bar = "Loading weights: 100%|##########| 80/80 [00:0{0}<00:00, {0}1.5it/s]".format(seed)
    cells = [
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("train()", execution_count=2, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=f"$ {REPO_ROOT}/.venv/bin/accelerate launch\n"),
            nbformat.v4.new_output("stream", name="stdout",
                                   text=f"[stage1] step 1/2: loss 0.75 ({seed}.2 s/step)\n\r{bar}\r{bar}\nsaving\r"
                                        f"saved 3 files\n[stage1] done in {seed}3 s\n"),
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": f"{seed}abc", "version_major": 2},
                "text/plain": bar}),
        ]),
        nbformat.v4.new_code_cell("table", execution_count=3, outputs=[
            nbformat.v4.new_output("execute_result", execution_count=3, data={
                "text/html": f'<style>#T_{seed}f00a_row0 {{}}</style><table id="T_{seed}f00a">0.412</table>',
                "text/plain": f"<pandas.io.formats.style.Styler at 0x7f5ea0{seed}508d0>"}),
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": f"{seed}def", "version_major": 2},
                "text/plain": "RewardExplorer(children=(...))"}),
        ]),
    ]
    for i, c in enumerate(cells):
        c.id = f"cell{i}" if i else f"rand{seed}"
        c.metadata["execution"] = {"iopub.execute_input": t}
        c.metadata["papermill"] = {"start_time": t, "end_time": t, "duration": seed * 1.5, "status": "completed",
                                   "exception": False}
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"start_time": t, "end_time": t, "duration": seed * 10.0, "exception": None,
                      "input_path": str(REPO_ROOT / "notebooks" / "03_x.ipynb"),
                      "output_path": str(out_dir / "03_x.ipynb"), "parameters": {"profile": "smoke"}},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {f"{seed}abc": {}}}}})
    return nb


def test_two_runs_that_differ_in_timing_only_write_the_same_bytes(tmp_path):
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"run{seed}" / "03_x.ipynb"
        path.parent.mkdir()
        path.write_text(nbformat.writes(_run(seed, path.parent)))
        paths.append(normalise_file(path))
    first = paths[0].read_bytes()
    assert paths[1].read_bytes() == first
    assert normalise_file(paths[0]).read_bytes() == first          # normalising again changes nothing
    nb = nbformat.reads(first.decode(), as_version=4)
    assert "widgets" not in nb["metadata"]
    assert nb["metadata"]["papermill"] == {"exception": None, "input_path": "./notebooks/03_x.ipynb",
                                           "output_path": "03_x.ipynb", "parameters": {"profile": "smoke"}}
    params, train, table = nb["cells"]
    assert params["id"] == "injected-parameters" and "execution" not in params["metadata"]
    assert train["metadata"]["papermill"] == {"status": "completed", "exception": False}
    assert train["execution_count"] == 2
    assert train["outputs"] == [{"name": "stdout", "output_type": "stream", "text": (
        "$ ./.venv/bin/accelerate launch\n[stage1] step 1/2: loss 0.75 (<t>)\nsaved 3 files\n[stage1] done in <t>\n")}]
    result, figure, widget = table["outputs"]
    assert result["data"]["text/plain"] == "<pandas.io.formats.style.Styler at 0x…>"
    assert result["data"]["text/html"] == '<style>#T_00000_row0 {}</style><table id="T_00000">0.412</table>'
    assert figure["data"] == {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    assert widget["data"] == {"text/plain": "RewardExplorer(children=(...))"}


def test_a_different_number_still_shows():
    a, b = _run(1, REPO_ROOT), _run(1, REPO_ROOT)
    b["cells"][2]["outputs"][0]["data"]["text/html"] = b["cells"][2]["outputs"][0]["data"]["text/html"].replace(
        "0.412", "0.413")
    assert normalise_notebook(a) != normalise_notebook(b)
    assert normalise_notebook(a) == normalise_notebook(_run(2, REPO_ROOT))
