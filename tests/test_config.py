"""Run configurations: presets, overrides, validation, stable run ids."""
from __future__ import annotations

from pathlib import Path

import pytest

from peft_utils.classification.config import RunConfig, load_config
from peft_utils.core.config import ConfigError, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_preset_method_overrides_and_cli_precedence():
    cfg = load_config(ROOT / "configs/semeval/st1.yaml", {"method": "pfeiffer"})
    assert (cfg.learning_rate, cfg.reduction_factor, cfg.warmup_steps) == (3.16e-5, 4, 100)
    cfg = load_config(ROOT / "configs/semeval/st1.yaml",
                      parse_overrides(["method=pfeiffer", "learning_rate=1e-3"]))
    assert cfg.learning_rate == 1e-3
    st3 = load_config(ROOT / "configs/semeval/st3.yaml", {"method": "lora"})
    assert (st3.lora_r, st3.threshold, st3.multilabel) == (2, 0.3, True)


def test_run_id_is_stable_and_ignores_where_it_runs():
    a = RunConfig(dataset="sib200", method="lora", seed=1)
    b = RunConfig(dataset="sib200", method="lora", seed=1, results_dir="elsewhere", device="cpu")
    c = RunConfig(dataset="sib200", method="lora", seed=2)
    assert a.run_id == b.run_id != c.run_id
    assert a.run_id.startswith("sib200-lora-multilingual-s1-")


@pytest.mark.parametrize("raw,needle", [
    ({"method": "adapterfusion"}, "unknown method"),
    ({"scenario": "fr-only"}, "unknown scenario"),
    ({"dataset": "semeval2023"}, "subtask"),
    ({"train_langs": ["en", "xx"]}, "unknown language 'xx'"),
    ({"learning_rate": -1}, "learning_rate must be a positive"),
    ({"lora_r": 0}, "lora_r"),
    ({"threshold": 1.5}, "threshold"),
    ({"batch_sise": 8}, "unknown key(s) batch_sise"),
    ({"device": "tpu"}, "device"),
])
def test_bad_configs_are_refused_with_the_reason(raw, needle):
    with pytest.raises(ConfigError, match=None) as err:
        RunConfig.from_dict(raw, source="my.yaml")
    assert needle in str(err.value) and "my.yaml" in str(err.value)


def test_language_codes_normalised():
    cfg = RunConfig.from_dict({"dataset": "semeval2023", "subtask": 1,
                               "train_langs": ["ge", "po", "en"]})
    assert cfg.train_langs == ["de", "pl", "en"]
    assert cfg.zero_shot_langs == ["es", "el", "ka"]


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [lora\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["learning_rate"])
