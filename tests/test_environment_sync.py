"""environment.yml (conda) and the Makefile (pip) must install the same environment."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_environment_matches_make():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    make = (ROOT / "Makefile").read_text()
    torch_spec = re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)", make, re.M).group(1)
    extras = re.search(r"^EXTRAS\s*\?=\s*(\S+)", make, re.M).group(1)
    assert torch_spec in pip
    assert f"-e .[{extras}]" in pip
    assert python == "python=3.11"
    lock = re.search(r"^LOCK\s*:?=\s*(\S+)", make, re.M).group(1)
    assert f"-c {lock}" in pip and "-c $(LOCK)" in make     # both install with the lock as constraints


def test_the_lock_pins_every_dependency_but_torch():
    """requirements-lock.txt pins (==) every package pyproject.toml asks for (the test extra
    included), never torch or what torch itself requires (TORCH_SPEC chooses those)."""
    import tomllib
    from importlib.metadata import requires

    lock = (ROOT / "requirements-lock.txt").read_text().splitlines()
    pins = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lock
            if ln and not ln.startswith("#")}
    assert all("==" in ln for ln in lock if ln and not ln.startswith("#"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[ <>=!~\[;]", w, maxsplit=1)[0].lower().replace("_", "-") for w in wanted}
    assert names <= set(pins), sorted(names - set(pins))
    torch_own = {re.split(r"[ <>=!~\[;(]", r, maxsplit=1)[0].lower() for r in (requires("torch") or [])
                 if "extra ==" not in r}
    assert "torch" not in pins and not ((torch_own - names) & set(pins)), sorted((torch_own - names) & set(pins))


def test_ci_runs_exactly_readmes_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make reproduce" in (ROOT / "README.md").read_text()
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-1] == "make test"


def test_package_data_ships_configs():
    import refine_iqa_lib

    pkg = Path(refine_iqa_lib.__file__).parent
    assert sorted(p.name for p in (pkg / "configs" / "profiles").glob("*.yaml")) == ["paper.yaml", "single_gpu.yaml", "smoke.yaml",
                                                                                "tiny.yaml"]
    toml = (ROOT / "pyproject.toml").read_text()
    assert "configs/**/*.yaml" in toml
