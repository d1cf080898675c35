"""One backend per library (core.backends): the built-in ones answer for peft, the adapters
library and the project's methods, and another package adds a fourth through an entry point
of `peft_utils.backends`, which a registry entry names as its library and trains with."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from peft_utils.classification.models import build_model
from peft_utils.classification.training import train_and_evaluate
from peft_utils.core import backends, methods
from peft_utils.core.backends import BACKENDS, BUILTIN, GROUP, Backend, plugins
from peft_utils.core.config import ConfigError
import fake_packages
from test_methods import tiny

# A bitfit-like library in a package of its own: only the biases train, built on the
# project's backend (nothing to merge, no adapter apart from the base).
BIAS_MODULE = '''
from peft_utils.core.backends import ProjectBackend


class BiasOnly(ProjectBackend):
    """Only the bias terms of the base model train."""
    name = "bias_only"

    def apply(self, model, entry, library_config, adapter_name):
        for name, param in model.named_parameters():
            param.requires_grad = name.endswith(".bias")
        return model


BACKEND = BiasOnly()
make_backend = BiasOnly          # a factory names it as well
CLASH = type("Clash", (ProjectBackend,), {"name": "peft"})()
NOT_A_BACKEND = "bias_only"
'''


@pytest.fixture
def fresh_backends():
    """plugins() is read once per process; a test that installs a backend reads it again,
    and the next test sees the installed packages only."""
    plugins.cache_clear()
    yield
    plugins.cache_clear()
    sys.modules.pop("bias_backend", None)


def install_fake_package(root: Path, value: str = "bias_backend:BACKEND") -> None:
    """A package `bias-backend` on sys.path as pip leaves one, whose entry point registers the
    `bias_only` backend (`value`: what it names)."""
    fake_packages.install_fake_package(root, "bias_backend", BIAS_MODULE, GROUP,
                                       {"bias_only": value})

def test_every_library_of_the_registry_has_its_backend():
    assert set(BUILTIN) == {"peft", "adapters", "project"}
    for entry in methods.REGISTRY.values():
        assert isinstance(entry.backend, Backend) and entry.backend is BACKENDS[entry.library]
        assert entry.backend.name == entry.library
    lora, pfeiffer, fft = (methods.REGISTRY[m] for m in ("lora", "pfeiffer", "fft"))
    assert lora.backend.trains_head and not pfeiffer.backend.trains_head
    assert pfeiffer.backend.adapter_trainer and not lora.backend.adapter_trainer
    assert not fft.backend.has_adapter and not fft.backend.configured
    assert (lora.backend.trained_name("task"), pfeiffer.backend.trained_name("task")) == \
        ("default", "task")
    assert pfeiffer.backend.model_problem(pfeiffer, "m2m_100", "seq2seq")
    assert pfeiffer.backend.model_problem(pfeiffer, "xlm-roberta", "classification") is None


def test_a_method_of_an_unknown_library_is_a_config_error():
    entry = methods.Method("mystery", "nolib", about="a library nobody registered")
    with pytest.raises(ConfigError, match="no backend for library 'nolib'; known libraries: "
                                          "peft, adapters, project"):
        entry.backend
    assert entry.status().startswith("no backend for library 'nolib'")


def test_a_backend_of_another_package_is_found(tmp_path, monkeypatch, fresh_backends):
    install_fake_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(BACKENDS) == ["peft", "adapters", "project", "bias_only"]
    assert type(backends.backend_of("bias_only")).__name__ == "BiasOnly"


def test_a_factory_entry_point_gives_its_backend(tmp_path, monkeypatch, fresh_backends):
    install_fake_package(tmp_path, "bias_backend:make_backend")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert BACKENDS["bias_only"].name == "bias_only"


@pytest.mark.parametrize("value, error, message", [
    ("bias_backend:CLASH", ValueError, "registers backend 'peft', which exists already"),
    ("bias_backend:NOT_A_BACKEND", TypeError, "is not a peft_utils.core.backends.Backend"),
])
def test_a_clashing_or_wrong_entry_point_is_refused(tmp_path, monkeypatch, fresh_backends,
                                                    value, error, message):
    install_fake_package(tmp_path, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(error, match=message):
        BACKENDS["bias_only"]


def test_a_registered_backend_trains_a_method_end_to_end(tmp_path, monkeypatch, sib_root,
                                                         tiny_model, fresh_backends):
    (tmp_path / "plugins").mkdir()
    install_fake_package(tmp_path / "plugins")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    entry = methods.Method("bias_only", "bias_only", about="only the biases train (a plugin)",
                           lr_range=(1e-4, 1e-2))
    monkeypatch.setitem(methods.REGISTRY, "bias_only", entry)
    config = tiny(tmp_path, sib_root, tiny_model, "bias_only", "results").replace(
        max_steps=4, eval_steps=2)
    result = train_and_evaluate(config)
    record = result.record
    assert (result.run_dir / "record.json").is_file() and record["status"] == "complete"
    assert record["meta"]["method"] == {"name": "bias_only", "library": "bias_only",
                                        "config_class": None, "settings": {}}
    assert record["inference"]["merge"] == "nothing to merge"
    # It trains what bitfit (the project's) trains: the same parameters, counted alike.
    bitfit = build_model(config.replace(method="bitfit"), meta=True).report
    assert record["costs"]["method_params"] == bitfit["method_params"] > 0
