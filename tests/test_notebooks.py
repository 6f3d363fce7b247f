"""Notebook hygiene, and every numbered notebook executed with the smoke profile."""
import json

import pytest

from refine_iqa_lib.reproduce import NOTEBOOK_DIR, numbered_notebooks, run_notebook

NOTEBOOKS = numbered_notebooks()


def test_numbered_notebooks_exist():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names[0] == "00" and names == sorted(names)


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
    assert 'profile = "smoke"' in src and "overrides = {}" in src
    assert code.index(params[0]) == 0, "the parameters cell is the first code cell"


# The numbered notebooks build on each other's outputs (01's data, 03's Stage-1 run, ...) in the
# smoke profile's work folder: under pytest-xdist they run in order on one worker.
@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_with_smoke_profile(path, tmp_path):
    out = run_notebook(path, tmp_path, "smoke")
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert NOTEBOOK_DIR.is_dir()
