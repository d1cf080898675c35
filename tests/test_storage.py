"""Shared tuning storage (tune.storage): two runners of one tuned grid started at once, as two
machines sharing a results folder would, against a real PostgreSQL server and against an
Optuna journal file, finish with exactly `trials` trials per group, each final cell run once,
and the same choices as one runner with the default SQLite file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from peft_utils.core.config import ConfigError
from conftest import unavailable
from peft_utils.grid import load_grid
from test_tuning import records, tuned_grid  # noqa: F401  (tuned_grid: a fixture)

PG_BINARIES = ("initdb", "pg_ctl", "postgres")


def pg_binary(name: str) -> str | None:
    """On PATH, else where Debian's and Ubuntu's `postgresql` package puts it (not on PATH)."""
    import glob

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


# ---- a PostgreSQL server for the session ---------------------------------------------------
def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there, run it as `nobody`."""
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A PostgreSQL server in a temporary folder, on a Unix socket (no port to clash);
    yields a function that creates a new database and returns its URL. Stopped at teardown,
    whatever the tests did."""
    binaries = {b: pg_binary(b) for b in PG_BINARIES}
    if missing := [b for b, path in binaries.items() if path is None]:
        unavailable(f"PostgreSQL binaries not found ({', '.join(missing)}): install "
                    "PostgreSQL (apt-get install postgresql) to test tune.storage: postgresql://")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("pip install 'peft-utils[cluster]' (psycopg2)")
    # Outside tmp_path_factory's folder (mode 700 to root), so that `nobody` may enter it.
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    data, socket = base / "data", base / "sock"
    socket.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        shutil.chown(socket, "nobody")
    subprocess.run(_as_server_user([binaries["initdb"], "-D", str(data), "-U", "postgres",
                                    "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    options = f"-k {socket} -c listen_addresses='' -c fsync=off"
    subprocess.run(_as_server_user([binaries["pg_ctl"], "-D", str(data), "-o", options, "-l",
                                    str(base / "server.log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield lambda name: _create_database(socket, name)
    finally:
        subprocess.run(_as_server_user([binaries["pg_ctl"], "-D", str(data), "-m", "immediate",
                                        "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _create_database(socket: Path, name: str) -> str:
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", user="postgres", host=str(socket))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return f"postgresql+psycopg2://postgres@/{name}?host={socket}"


# ---- the tune.storage value ------------------------------------------------------------------
def test_storage_values_are_checked_and_a_journal_path_is_the_results_folders(tuned_grid,
                                                                              tmp_path):
    from peft_utils.grid.tuning import storage_url

    for bad in ("redis://localhost", "tuning.db", "journal://", "oracle://x", 3):
        with pytest.raises(ConfigError, match="tune.storage must be journal://PATH or a "
                                              "database URL"):
            load_grid(tuned_grid(storage=bad), base_dir=tmp_path)
    grid = load_grid(tuned_grid(storage="journal://tuning.log"), base_dir=tmp_path)
    assert storage_url(grid) == f"journal://{(tmp_path / 'results' / 'tuning.log').resolve()}"
    grid = load_grid(tuned_grid(storage="journal:///shared/t.log"), base_dir=tmp_path)
    assert storage_url(grid) == "journal:///shared/t.log"
    grid = load_grid(tuned_grid(storage="postgresql+psycopg2://u@h/db"), base_dir=tmp_path)
    assert storage_url(grid) == "postgresql+psycopg2://u@h/db"


# ---- two runners at once ---------------------------------------------------------------------
ASK = ("import sys; from peft_utils.grid import load_grid; from peft_utils.grid.tuning import "
       "Tuner; print(len(Tuner(load_grid(sys.argv[1], base_dir=sys.argv[2])).trials()))")


def study_trials(storage: str) -> dict[str, list[tuple]]:
    """Per study: (index, state) of each of its trials."""
    import optuna

    from peft_utils.grid.tuning import open_storage

    store = open_storage(storage)
    return {s.study_name: sorted((t.user_attrs["index"], t.state.name) for t in
                                 optuna.load_study(study_name=s.study_name, storage=store).trials)
            for s in optuna.get_all_study_summaries(store)}


# The journal case stays in the fast tier; the PostgreSQL one (a server start) is slow.
@pytest.mark.parametrize("kind", [pytest.param("postgresql", marks=pytest.mark.slow), "journal"])
def test_runners_asking_at_once_ask_each_trial_once(kind, request, tuned_grid, tmp_path):
    """Four processes create the studies and ask the trials at the same moment (no training):
    each study gets its 2 trials once, and every process sees the same 4."""
    storage = (request.getfixturevalue("postgres")(f"ask_{int(time.time() * 1000)}")
               if kind == "postgresql" else "journal://tuning.log")
    grid_file = tuned_grid(storage=storage)
    procs = [subprocess.Popen([sys.executable, "-c", ASK, str(grid_file), str(tmp_path)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [out.strip() for out, _ in outs] == ["4"] * 4, [err for _, err in outs]
    from peft_utils.grid.tuning import storage_url

    assert study_trials(storage_url(load_grid(grid_file, base_dir=tmp_path))) == {
        f"g/tiny method={m}": [(0, "RUNNING"), (1, "RUNNING")] for m in ("fft", "lora")}


def start_runner(grid_file: Path, cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen([sys.executable, "-m", "peft_utils", "grid", "run",
                                 str(grid_file)], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def run_together(grid_file: Path, cwd: Path, runners: int = 2) -> list[str]:
    """`grid run` started `runners` times at once on one results folder; their outputs."""
    logs = [cwd / f"runner-{i}.log" for i in range(runners)]
    procs = [start_runner(grid_file, cwd, log) for log in logs]
    try:
        for proc in procs:
            proc.wait(timeout=900)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    outputs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0] * runners, "\n\n".join(outputs)
    return outputs


def choices(results: Path) -> dict[str, tuple]:
    """Per run: its stage, method, trial and learning rate (finals: at their group's best)."""
    recs = records(results)
    assert all(r["status"] == "complete" for r in recs)
    return {r["run_info"]["run_id"]: (r["run_info"]["tuning"]["stage"], r["run_info"]["method"],
                                      r["run_info"]["tuning"]["trial"],
                                      r["run_info"]["learning_rate"]) for r in recs}


@pytest.fixture(scope="module")
def single_runner(tmp_path_factory, sib_root, tiny_model):
    """What one runner with the default SQLite storage chooses on the tiny tuned grid."""
    cwd = tmp_path_factory.mktemp("single")
    grid_file = _tiny_grid(cwd, sib_root, tiny_model, {})
    run_together(grid_file, cwd, runners=1)
    return choices(cwd / "results")


def _tiny_grid(cwd: Path, sib_root: Path, tiny_model: Path, tune: dict) -> Path:
    from test_tuning import TINY, write_yaml

    write_yaml(cwd / "configs" / "tiny.yaml",
               {**TINY, "data_root": str(sib_root), "model": str(tiny_model)})
    return write_yaml(cwd / "configs" / "g.yaml", {
        "presets": ["tiny.yaml"],
        "grid": {"method": ["fft", "lora"], "scenario": ["multilingual", "en"], "seed": [1]},
        "tune": {"trials": 2, "seeds": [1], "share": ["scenario"],
                 "space": {"learning_rate": {"range": "registry", "scale": 30}}, **tune}})


def check_shared(cwd: Path, storage: str, reference: dict[str, tuple],
                 outputs: list[str]) -> None:
    """Exactly 2 trials per group in the storage, each told once; every run (trials, finals)
    with the single runner's run ids and choices; each final trained by one runner only (the
    other found it complete: `(0:00:00)`)."""
    assert choices(cwd / "results") == reference
    assert study_trials(storage) == {f"g/tiny method={m}": [(0, "COMPLETE"), (1, "COMPLETE")]
                                     for m in ("fft", "lora")}
    for run_id in (r for r, c in reference.items() if c[0] == "final"):
        ran = [line for out in outputs for line in out.splitlines()
               if f" {run_id} (" in line and "(0:00:00)" not in line]
        assert len(ran) == 1, "\n".join(ran)


@pytest.mark.slow
def test_two_runners_share_a_postgresql_storage(postgres, single_runner, tmp_path, sib_root,
                                                tiny_model):
    url = postgres(f"tuning_{int(time.time() * 1000)}")
    grid_file = _tiny_grid(tmp_path, sib_root, tiny_model, {"storage": url})
    outputs = run_together(grid_file, tmp_path)
    check_shared(tmp_path, url, single_runner, outputs)
    assert all("trials in postgresql" in out for out in outputs)


@pytest.mark.slow
def test_two_runners_share_a_journal_file(single_runner, tmp_path, sib_root, tiny_model):
    grid_file = _tiny_grid(tmp_path, sib_root, tiny_model, {"storage": "journal://tuning.log"})
    outputs = run_together(grid_file, tmp_path)
    check_shared(tmp_path, f"journal://{tmp_path / 'results' / 'tuning.log'}", single_runner,
                 outputs)
