"""Shared fixtures: small data trees in the official layouts and a tiny XLM-R built here."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests keep their token cache to themselves (a fresh folder per session).
os.environ.setdefault("PEFT_UTILS_CACHE", tempfile.mkdtemp(prefix="peft-utils-cache-"))
# Under pytest-xdist (`make test`: one process per core) each process computes on one thread:
# two processes of two threads each on two cores only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from fault_helpers import interrupt_after  # noqa: E402,F401  (a fixture of the fault tests)
from fixtures_data import (  # noqa: E402
    EMOTION_CUES,
    FILLER,
    FRAME_CUES,
    GENRE_CUES,
    SIB200_CUES,
    TECHNIQUE_CUES,
    make_brighter_tree,
    make_semeval_tree,
    make_sib200_tree,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sib_root(tmp_path_factory) -> Path:
    return make_sib200_tree(tmp_path_factory.mktemp("data"),
                            langs=("eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn"),
                            sizes={"train": 70, "dev": 21, "test": 21})


@pytest.fixture(scope="session")
def brighter_root(tmp_path_factory) -> Path:
    return make_brighter_tree(tmp_path_factory.mktemp("data"), langs=("eng", "deu", "rus"),
                              sizes={"train": 60, "dev": 20, "test": 20})


@pytest.fixture(scope="session")
def semeval_root(tmp_path_factory) -> Path:
    return make_semeval_tree(tmp_path_factory.mktemp("data"), langs=("en", "ge", "es"),
                             n_articles=12, n_paragraphs=6)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide XLM-R whose vocabulary covers every fixture word."""
    from peft_utils.classification.testing import make_tiny_model

    texts = [t for v in FILLER.values() for t in v]
    texts += [*GENRE_CUES.values(), *FRAME_CUES.values(), *TECHNIQUE_CUES.values(),
              *SIB200_CUES.values(), *EMOTION_CUES.values()]
    texts += ["and she said no way twice second line after a newline"] + \
             [str(i) for i in range(100)]
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-xlmr", texts, max_length=256)


def unavailable(reason: str) -> None:
    """Skip a test whose service (a database server, a Slurm cluster) cannot run here, or fail
    it where CI demands the services (PEFT_UTILS_REQUIRE_SERVICES=1, set by .ci/run)."""
    if os.environ.get("PEFT_UTILS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (PEFT_UTILS_REQUIRE_SERVICES=1: services are required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node Slurm cluster for the session (tests/slurm_cluster.py), its packages
    installed with apt when missing; clients find it through SLURM_CONF, set here for this
    process and the runners it starts. Stopped at teardown."""
    import slurm_cluster as cluster_module

    if cluster_module.missing_binaries() and (why := cluster_module.install()):
        unavailable(why)
    cluster = cluster_module.SlurmCluster()
    cluster.start()
    before = {k: os.environ.get(k) for k in ("SLURM_CONF", "PEFT_UTILS_SLURM_POLL_S")}
    os.environ.update(cluster.env, PEFT_UTILS_SLURM_POLL_S="1")
    print(f"\nslurm cluster up in {cluster.startup_s:.1f} s ({cluster.base})")
    try:
        yield cluster
    finally:
        cluster.stop()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread (train_and_evaluate follows OMP_NUM_THREADS): tiny matrices gain
    nothing from more, and on a shared machine extra threads only spin; the subprocesses
    get the same, so their numbers compare exactly."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)
