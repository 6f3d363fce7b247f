"""The reward explorer as a person uses it: JupyterLab in headless Chromium, notebook 02 run with the
smoke profile, the MOS and a rollout edited through the page, and the table's numbers checked
against the pure function (:func:`refine_iqa_lib.method.explorer.explore_group`).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``.ci/run``
installs them); elsewhere it skips, saying what is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refine_iqa_lib.io import REPO_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not CHROMIUM or not DRIVER:
        return "no chromium / chromedriver on PATH (Debian packages chromium, chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(REPO_ROOT / "notebooks" / "02_rewards.ipynb", root / "02_rewards.ipynb")  # profile: smoke
    port, token = _free_port(), "refine-iqa-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_DATA_DIR": str(root / ".data"),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             "--LabApp.news_url=None", "--allow-root"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=root)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    yield f"http://127.0.0.1:{port}/lab/tree/02_rewards.ipynb?token={token}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1024,900", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _labelled(driver, label: str, tag: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//label[normalize-space(text())='{label}']/following-sibling::{tag}")


def _table_numbers(driver) -> dict[str, list[str]]:
    """The explorer's table as {column: cell texts} (the last table on the page)."""
    from selenium.webdriver.common.by import By

    table = driver.find_elements(By.CSS_SELECTOR, ".widget-output table")[-1]
    head = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [[td.text.strip() for td in tr.find_elements(By.CSS_SELECTOR, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    cols = head[-len(rows[0]):]
    return {c: [r[i] for r in rows] for i, c in enumerate(cols)}


def _apply(element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)
    element.send_keys(Keys.TAB)          # the explorer applies a field when it loses focus (or on Enter)


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # the page is still rendering
            last = e
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def test_explorer_in_a_browser_updates_as_the_pure_function_says(lab, browser):
    from selenium.webdriver.common.by import By

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.method.explorer import PRESETS, explore_group, parse_probs

    browser.get(lab)
    run_menu = _wait(lambda: browser.find_element(
        By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space(text())='Run']"),
        120, "JupyterLab's Run menu")
    time.sleep(2)                         # let the kernel start
    run_menu.click()
    _wait(lambda: browser.find_element(
        By.XPATH, "//div[contains(@class,'lm-Menu-itemLabel') and normalize-space(text())='Run All Cells']"),
        20, "Run All Cells").click()
    mos = _wait(lambda: _labelled(browser, "MOS", "input"), 300, "the explorer's MOS field")
    before = _wait(lambda: _table_numbers(browser), 60, "the explorer's table")

    s2 = load_config("smoke").stage2
    params = dict(eps=s2.answer_eps, lambdas=s2.lambdas, adv_eps=s2.adv_eps, variant=s2.variant)
    p = PRESETS["mixed group"]
    rollouts = list(p["rollouts"])
    zs = [list(z) for z in p["think_digit_probs"]]

    _apply(mos, "2.0")
    rollouts[1] = "<think>Soft, noisy, a little dark.</think><answer>2.1</answer>"
    _apply(_labelled(browser, "rollout 2", "textarea"), rollouts[1])
    want = explore_group(rollouts, 2.0, zs, list(p["no_think_digit_probs"]), **params).round(3)

    def matches():
        got = _table_numbers(browser)
        return got if all(float(a) == pytest.approx(float(b), abs=1e-3)
                          for col in ("r_ans", "r_final", "adv_refine") for a, b in zip(got[col], want[col])) else None

    after = _wait(matches, 60, "the table to show the pure function's numbers")
    assert after["r_ans"] != before["r_ans"]                  # the edit changed the table
    assert parse_probs(_labelled(browser, "z think 1", "input").get_attribute("value")) == pytest.approx(zs[0])
