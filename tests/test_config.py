import pytest

from refine_iqa_lib.config import ConfigError, accelerate_config_path, available_profiles, load_config, save_config


def test_three_profiles_load():
    assert available_profiles() == ["paper", "smoke", "tiny"]
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
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; valid profiles: \['paper', 'smoke', 'tiny'\]"):
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
    for name in ("cpu", "ddp", "zero3"):
        assert accelerate_config_path(name).is_file()
    with pytest.raises(ConfigError, match="valid: \\['cpu', 'ddp', 'zero3'\\]"):
        accelerate_config_path("tpu")
