"""Two CPU processes (torchrun, gloo): every process computes the same Eq. 6 advantages over the
gathered groups, keeps its own slice, and the run completes.

Generation is replaced by fixed completions (answers 0.5 / 1.5 / 2.5 / 3.5, one without its think
block) so the groups carry real, MOS-dependent rewards; everything else - data, PD with the live
policy, gathering, advantage, loss, checkpoints - is the real code path under ``torchrun``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refine_iqa_lib.method.advantages import refine_advantages

DRIVER = textwrap.dedent('''
    import sys
    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.training.run import run_stage
    from refine_iqa_lib.training.trainer import RefineGRPOTrainer

    TEXTS = ["<think>clean</think><answer>0.5</answer>", "<think>noise</think><answer>1.5</answer>",
             "<answer>2.5</answer>", "<think>dark</think><answer>3.5</answer>"]

    def fixed_generation(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tok = self.processing_class.tokenizer
        ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in TEXTS]
        return [list(ids[i % len(ids)]) for i in range(len(prompt_ids))], None

    RefineGRPOTrainer._generate_single_turn = fixed_generation
    run_dir, overrides = sys.argv[1], sys.argv[2:]
    run_stage(load_config("smoke", overrides), "2", run_dir=run_dir, resume=False)
''')


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_agree_on_the_advantages(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the interpreter"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "run"
    overrides = [f"paths.work_dir={tmp_path / 'work'}",
                 f"paths.cache_dir={tmp_path / 'cache'}",  # empty cache: both ranks build the stand-in at once
                 "warmup.enabled=false", "stage2.init_from=base",
                 "stage2.max_steps=3", "stage2.no_think_every=0", "stage2.save_steps=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(driver), str(run_dir), *overrides],
                          capture_output=True, text=True, env=env, timeout=230)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    assert (run_dir / "final" / "refine_final.json").is_file()

    rows = {r: [json.loads(x) for x in (run_dir / "advantages" / f"rank{r}.jsonl").read_text().splitlines()]
            for r in (0, 1)}
    assert [x["step"] for x in rows[0]] == [x["step"] for x in rows[1]] == [1, 2, 3]
    G = 4
    informative = 0
    for a, b in zip(rows[0], rows[1]):
        assert a["world_size"] == b["world_size"] == 2
        assert a["advantages"] == b["advantages"] and a["rewards"] == b["rewards"]   # identical on both ranks
        full = np.array(a["advantages"])
        assert full.shape == (2 * G,)
        np.testing.assert_allclose(np.concatenate([a["local"], b["local"]]), full, atol=1e-6)  # own slices
        want = refine_advantages(np.array(a["rewards"]).reshape(-1, G), np.array(a["correct"]).reshape(-1, G))
        np.testing.assert_allclose(full, want.reshape(-1), atol=1e-9)
        informative += int(np.ptp(full) > 0)
    assert informative >= 1, "the fixed completions should give groups with different advantages"
