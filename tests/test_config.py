import pytest

from refine_iqa_lib.config import ConfigError, accelerate_config_path, available_profiles, load_config, save_config


def test_every_profile_loads():
    assert available_profiles() == ["paper", "single_gpu", "smoke", "tiny"]
    for p in available_profiles():
        cfg = load_config(p)
        assert cfg.profile == p


def test_paper_profile_has_the_papers_settings():
    cfg = load_config("paper")
    assert cfg.model.path.endswith("Qwen2.5-VL-7B-Instruct")
    for stage in (cfg.stage1, cfg.stage2):
        assert stage.num_generations == 8 and stage.beta == 0.0 and stage.loss_type == "dapo"
    assert (cfg.stage1.mode, cfg.stage1.num_train_epochs) == ("no_think", 1.0)
    assert (cfg.stage2.mode, cfg.stage2.num_train_epochs) == ("think", 3.0)
    assert cfg.stage2.use_pd and cfg.stage2.use_pm and cfg.stage2.adv_eps == 0.02 and cfg.stage2.answer_eps == 0.5
    assert cfg.scoring.train == ["koniq", "spaq"]
    assert (cfg.launch.accelerate_config, cfg.launch.num_processes) == ("zero3", 8)
    assert cfg.perception.test_size == 1500
    assert not cfg.warmup.enabled


def test_dotted_overrides_are_typed():
    cfg = load_config("smoke", ["stage2.learning_rate=5e-5", "stage2.use_pd=false", "eval.modes=think,no_think"])
    assert cfg.stage2.learning_rate == 5e-5 and cfg.stage2.use_pd is False
    assert cfg.eval.modes == ["think", "no_think"]
    cfg = load_config("smoke", {"stage1": {"max_steps": "7"}, "scoring.roots.spaq": "/data/spaq"})
    assert cfg.stage1.max_steps == 7
    assert cfg.scoring.roots == {"koniq": "embedded", "spaq": "/data/spaq"}


@pytest.mark.parametrize("bad, fragment", [
    ({"stage2.lr": 1}, "'lr' is not in stage2; valid keys: ['enabled'"),
    ({"nope.x": 1}, "'nope' is not in config"),
    ({"stage2.max_steps": "many"}, "stage2.max_steps: expected a int"),
    ({"stage2.use_pd": "maybe"}, "expected true/false"),
    ({"stage2.max_steps.x": 1}, "is a value, not a section"),
])
def test_bad_overrides_name_the_key(bad, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        load_config("smoke", bad)
    assert fragment in str(e.value)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; valid profiles: \['paper', 'single_gpu', 'smoke', 'tiny'\]"):
        load_config("huge")


def test_unknown_key_in_a_profile_file_names_the_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("stage2:\n  learning_rat: 1.0\n")
    with pytest.raises(ConfigError, match=r"mine.yaml.*'learning_rat' is not in stage2"):
        load_config(str(f))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tiny", {"stage2.max_steps": 11})
    path = save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(str(path))
    assert again == cfg


def test_accelerate_configs_ship_with_the_package():
    for name in ("cpu", "ddp", "zero3", "zero3_cpu", "zero3_multinode"):
        assert accelerate_config_path(name).is_file()
    with pytest.raises(ConfigError, match="valid: \\['cpu', 'ddp', 'zero3', 'zero3_cpu', 'zero3_multinode'\\]"):
        accelerate_config_path("tpu")


@pytest.mark.parametrize("key, value, rule", [
    ("stage2.num_generations", 0, "expected >= 2"),
    ("stage1.num_generations", 1, "expected >= 2"),
    ("stage2.prompts_per_step", 0, "expected >= 1 (the generation batch is prompts_per_step x num_generations"),
    ("stage2.gradient_accumulation_steps", 0, "expected >= 1"),
    ("stage2.max_completion_length", 0, "expected >= 1 token"),
    ("stage2.learning_rate", 0, "expected > 0"),
    ("stage1.learning_rate", -1e-5, "expected > 0"),
    ("stage2.max_steps", 0, "expected -1 (train num_train_epochs) or >= 1"),
    ("stage2.max_steps", -5, "expected -1"),
    ("stage2.num_train_epochs", 0, "expected > 0"),
    ("stage2.rewards.format", "a", "expected a finite number (the reward's weight)"),
    ("stage2.rewards.pd", True, "expected a finite number (the reward's weight)"),
    ("stage2.temperature", 0, "expected > 0"),
    ("stage2.top_p", 0, "expected in (0, 1]"),
    ("stage2.top_p", 1.5, "expected in (0, 1]"),
    ("stage2.top_k", -1, "expected >= 0"),
    ("stage2.beta", -0.1, "expected >= 0"),
    ("stage2.warmup_ratio", 1.5, "expected a fraction in [0, 1]"),
    ("stage2.mode", "thinking", "expected one of no_think, think"),
    ("stage2.variant", "mine", "expected one of paper, authors"),
    ("stage2.pd_reference", "exact", "expected one of forced, sampled"),
    ("stage2.loss_type", "ppo", "expected one of dapo, grpo, bnpo, dr_grpo"),
    ("stage2.init_from", "stage0", "expected one of previous, base"),
    ("stage2.adv_eps", 0, "expected > 0"),
    ("stage2.save_steps", 0, "expected >= 1"),
    ("eval.batch_size", 0, "expected >= 1"),
    ("eval.max_new_tokens", 0, "expected >= 1"),
    ("eval.modes", [], "expected a non-empty list of no_think, think"),
    ("eval.methods", ["prob", "guess"], "expected a non-empty list of prob, numeric"),
    ("eval.qbench_split", "train", "expected dev or test"),
    ("perception.test_size", -1, "expected >= 0 images"),
    ("perception.source", "flickr", "expected one of embedded, coco, jsonl"),
    ("perception.image_size", 100, "expected a positive multiple of 28"),
    ("perception.min_object_area", 1.0, "expected a fraction of the image area in [0, 1)"),
    ("perception.n_options", 1, "expected >= 2 options"),
    ("perception.test_forms", ["xr"], "expected a non-empty list of fr, nr"),
    ("warmup.learning_rate", 0, "expected > 0"),
    ("launch.num_processes", 0, "expected >= 1"),
    ("launch.vllm_mode", "remote", "expected one of colocate, server"),
    ("launch.vllm_gpu_memory_utilization", 1.5, "expected a share of the GPU's memory in (0, 1]"),
    ("launch.vllm_tensor_parallel_size", 0, "expected >= 1"),
    ("launch.vllm_max_model_length", -1, "expected >= 0 tokens"),
    ("launch.vllm_server_port", 70000, "expected a TCP port in 1-65535"),
    ("launch.report_to", ["tensorbord"], "expected a list of trackers from none, all, tensorboard, wandb, trackio"),
    ("launch.report_to", ["none", "wandb"], "([none] or [all] alone)"),
    ("launch.num_machines", 0, "expected >= 1"),
    ("model.dtype", "int4", "expected one of float32, bfloat16, float16, auto"),
])
def test_impossible_settings_fail_at_load_naming_key_value_rule_and_the_override(key, value, rule):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", {key: value})
    msg = str(e.value)
    assert msg.startswith(f"--set {key}=") and f": {key} = " in msg and rule in msg, msg
    assert e.value.key == key and "smoke.yaml" not in msg
    with pytest.raises(ConfigError, match=rf"^--set {key}=") as e:  # the CLI form of the same override
        load_config("smoke", [f"{key}={value}"])


def test_set_error_shows_the_override_as_typed_and_a_bad_profile_value_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set stage2\.num_generations=0: stage2\.num_generations = 0: expected >= 2"):
        load_config("smoke", ["stage2.num_generations=0"])
    with pytest.raises(ConfigError, match=r"^--set eval\.batch_size=abc: eval\.batch_size: expected a int"):
        load_config("smoke", ["eval.batch_size=abc"])
    f = tmp_path / "mine.yaml"
    f.write_text("stage2:\n  top_p: 0\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: stage2.top_p = 0.0: expected in \(0, 1\]"):
        load_config(str(f))
    with pytest.raises(ConfigError, match=r"mine.yaml: stage2.top_p"):  # an override of another key is not blamed
        load_config(str(f), ["stage2.max_steps=3"])
    with pytest.raises(ConfigError, match=r"^--set stage2.temperature=0: "):  # reloading a loaded config
        load_config(load_config("smoke"), {"stage2.temperature": 0})
    with pytest.raises(ConfigError, match="model.max_pixels = 100: expected >= model.min_pixels"):
        load_config("smoke", {"model.max_pixels": 100})
    assert load_config("smoke", {"perception.test_size": 0}).perception.test_size == 0  # a build without a test split


def test_stage_rewards_list_names_and_weights_merged_onto_the_papers():
    cfg = load_config("smoke")
    assert cfg.stage1.rewards == {"stage1": 1.0, "format": 1.0}
    assert cfg.stage2.rewards == {"answer": 1.0, "format": 1.0, "pd": 1.0} and cfg.stage2.lambdas == (1.0, 1.0, 1.0)
    cfg = load_config("smoke", ["stage2.rewards.pd=0.5", "stage2.rewards.mcq=0"])  # listed names join the default
    assert cfg.stage2.rewards == {"answer": 1.0, "format": 1.0, "pd": 0.5, "mcq": 0.0}
    assert cfg.stage2.lambdas == (1.0, 1.0, 0.5) and cfg.stage1.rewards == {"stage1": 1.0, "format": 1.0}
    off = load_config("smoke", {"stage2.use_pd": False})                  # the w/o-PD ablation switch
    assert list(off.stage2.active_rewards()) == ["answer", "format"] and "pd" in off.stage2.rewards


@pytest.mark.parametrize("over, fragment", [
    ({"stage2.rewards.accuracy": 1.0}, "stage2.rewards: unknown reward 'accuracy'; known rewards: "
                                       "['answer', 'format', 'grounding', 'mcq', 'pd', 'stage1']"),
    ({"stage1.rewards.pd": 1.0, "stage1.use_pd": True}, "stage1.use_pd = true in no_think mode"),
    ({"stage1.use_pd": True}, "stage1.use_pd = true but stage1.rewards lists no pd"),
])
def test_unknown_or_impossible_rewards_fail_at_load(over, fragment):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", over)
    assert fragment in str(e.value)


def test_a_profile_without_a_required_reward_fails_naming_it(tmp_path):
    from refine_iqa_lib.config import PROFILE_DIR
    import yaml

    data = yaml.safe_load((PROFILE_DIR / "smoke.yaml").read_text())
    data["stage1"]["rewards"] = {"grounding": 1.0}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(str(path))  # merged onto the paper's: stage1 and format are still there
    assert cfg.stage1.rewards == {"stage1": 1.0, "format": 1.0, "grounding": 1.0}
    from refine_iqa_lib.config import check_stage_rewards

    cfg.stage1.rewards = {"grounding": 1.0}
    with pytest.raises(ConfigError, match=r"expected \['stage1', 'format'\] among them .* missing \['stage1', 'format'\]"):
        check_stage_rewards(cfg, "1")
def test_launch_settings_that_cannot_work_together_fail_at_load():
    with pytest.raises(ConfigError, match=r"launch.vllm_tensor_parallel_size = 3: expected a divisor of "
                                          r"launch.num_processes \(8\)"):
        load_config("paper", {"launch.vllm_tensor_parallel_size": 3})
    assert load_config("paper", {"launch.vllm_tensor_parallel_size": 3, "launch.vllm_mode": "server"})  # own GPUs
    with pytest.raises(ConfigError, match=r"launch.num_machines = 2: expected 1 with launch.use_cpu"):
        load_config("smoke", {"launch.num_machines": 2})
    assert load_config("smoke", ["launch.report_to=tensorboard,wandb"]).launch.report_to == ["tensorboard", "wandb"]
