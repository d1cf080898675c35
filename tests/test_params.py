"""Parameter counts of the paper's XLM-RoBERTa-large settings against closed forms.

Built on the meta device from the shipped config: no weights, no download, no memory.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peft_utils.classification.config import RunConfig
from peft_utils.classification.models import build_model

ROOT = Path(__file__).resolve().parents[1]
H, FF, LAYERS, VOCAB, POS = 1024, 4096, 24, 250002, 514


def head(n_labels: int) -> int:
    return H * H + H + H * n_labels + n_labels  # dense + out_proj


BACKBONE = (VOCAB * H + POS * H + H + 2 * H                      # embeddings + LayerNorm
            + LAYERS * (4 * (H * H + H) + 2 * H                   # attention + LayerNorm
                        + (H * FF + FF) + (FF * H + H) + 2 * H))  # FFN + LayerNorm
LORA_R8 = LAYERS * 8 * (3 * (H + H) + (H + FF) + (FF + H))        # q,k,v + both FFN projections


def bottleneck(rf: int) -> int:
    down = H // rf
    return LAYERS * (H * down + down + down * H + H)


def report(**kw):
    return build_model(RunConfig(dataset="semeval2023", subtask=1, model="xlm-roberta-large",
                                 **kw), meta=True).report


def test_fft_counts_everything():
    r = report(method="fft")
    assert r["backbone"] == BACKBONE == 558_840_832
    assert r["head"] == head(3)
    assert r["trainable"] == r["total"] == BACKBONE + head(3)
    assert r["method_params"] == BACKBONE and r["percent_trainable"] == 100.0


@pytest.mark.parametrize("method,kw,added", [
    ("lora", {"lora_r": 8}, LORA_R8),
    ("pfeiffer", {"reduction_factor": 4}, bottleneck(4)),
    ("pfeiffer", {"reduction_factor": 8}, bottleneck(8)),
    ("houlsby", {"reduction_factor": 8}, 2 * bottleneck(8)),  # two adapters per layer
])
def test_peft_counts_match_closed_form(method, kw, added):
    r = report(method=method, **kw)
    assert r["method_params"] == added
    assert r["head"] == head(3) and r["backbone"] == BACKBONE
    assert r["trainable"] == added + head(3)
    assert r["total"] == BACKBONE + head(3) + added  # peft's frozen head copy is not counted


def test_paper_ratio_to_fft():
    fft = report(method="fft")["trainable"]
    ratios = {name: fft / report(**kw)["trainable"] for name, kw in {
        "lora_r8": dict(method="lora"),
        "pfeiffer_rf4": dict(method="pfeiffer", reduction_factor=4),
        "pfeiffer_rf8": dict(method="pfeiffer", reduction_factor=8)}.items()}
    # Head included: LoRA 133x, Pfeiffer rf 8 76x, rf 4 41x (the paper: 140-280x).
    assert round(ratios["lora_r8"]) == 133
    assert round(ratios["pfeiffer_rf8"]) == 76
    assert round(ratios["pfeiffer_rf4"]) == 41


def test_multilabel_head_size():
    assert report(method="lora")["head"] == head(3)
    r = build_model(RunConfig(dataset="semeval2023", subtask=3, model="xlm-roberta-large",
                              method="lora"), meta=True).report
    assert r["head"] == head(23)


def test_params_cli_prints_json():
    out = subprocess.run([sys.executable, "-m", "peft_utils", "params", "--config",
                          str(ROOT / "configs/semeval/st1.yaml"), "--set", "method=pfeiffer",
                          "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
    data = json.loads(out.stdout)
    for key in ("trainable", "total", "backbone", "head", "method_params"):
        assert isinstance(data[key], int)
    assert isinstance(data["percent_trainable"], float)
    # The st1 preset's method_overrides give Pfeiffer reduction factor 4.
    assert data["method_params"] == bottleneck(4)
