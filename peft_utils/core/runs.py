"""Run folders (`<results>/<run_id>/`) for every study: ids that cannot escape the results
folder, atomic writes, a lock per folder, the record (`record.json`, validated against the
study's schema in `peft_utils/schemas/`) and one reader, and `execute_run`, which gives any
study's run its guarantees (checked before work starts, one writer at a time, a failure
record whatever happens).

A record (schema version 1) has run_info (the full config + run_id), metrics, costs (parameters,
time, throughput, memory, checkpoint size), meta (package versions, git commit, device, seed),
status ("complete" or "failed") and error; each study's schema says the rest.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SCHEMA_VERSION = 1
RECORD = "record.json"
TMP_SUFFIX = ".tmp"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")

# Set in grid cells (and inherited by their kernels): training progress as one log line per
# evaluation, never a progress bar (peft_utils.core.trainer.shows_progress_bar).
HEADLESS = "PEFT_UTILS_HEADLESS"


@dataclass
class RunResult:
    """What `train_and_evaluate` of any study returns."""
    run_id: str
    run_dir: Path
    record: dict[str, Any]   # empty on a non-zero rank under `accelerate launch`
    model: Any = None        # the trained model in memory (the kept state), for notebooks/tests
    tokenizer: Any = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record["metrics"]


def run_dir(results_root: str | Path, run_id: str) -> Path:
    """The folder of a run; ids that could escape `results_root` are refused."""
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id!r}: letters, digits and _ . + - only")
    root = Path(results_root).resolve()
    path = (root / run_id).resolve()
    if path.parent != root:
        raise ValueError(f"run id {run_id!r} escapes the results folder {root}")
    return path


class WriteError(OSError):
    """A results file that could not be written (disk full, folder not writable). The message
    names the file and the fix; what was there before is left as it was."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_FIXES = {errno.ENOSPC: "the disk is full: free space or set results_dir to another disk",
          errno.EDQUOT: "the disk quota is exhausted: free space or set results_dir elsewhere",
          errno.EACCES: "the folder is not writable: fix its permissions or set results_dir",
          errno.EPERM: "the folder is not writable: fix its permissions or set results_dir",
          errno.EROFS: "the file system is read-only: set results_dir to a writable folder"}


def write_error(path: str | Path, err: BaseException) -> WriteError:
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None) or str(err)
    fix = _FIXES.get(code, "check the results folder")
    return WriteError(code, f"cannot write {path}: {reason} ({fix}); earlier results are "
                      "left as they were", str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a hidden temporary file in the same folder, fsync, rename over `path`: readers
    see the old file or the new one, never a part. OSErrors become a WriteError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise write_error(path, err) from err
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files that a killed writer left under `folder` (a writer that is still
    running holds the run's lock, so callers hold it too)."""
    count = 0
    for path in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            count += 1
    return count


def ensure_writable(folder: str | Path) -> Path:
    """Create `folder` and prove a file can be written there, before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(folder, err) from err
    atomic_write_bytes(folder / ".write-test", b"ok")
    (folder / ".write-test").unlink(missing_ok=True)
    return folder


class RunBusyError(RuntimeError):
    """The run folder is locked by another live process."""


# How long to wait for a run folder's previous writer; a killed grid's workers take a
# second or two to notice and exit.
LOCK_TIMEOUT_S = 120.0


@contextlib.contextmanager
def run_lock(folder: str | Path, name: str = ".lock", timeout: float | None = None):
    """Hold an exclusive lock on `folder/name` (released by the OS when the holder dies, even
    by SIGKILL), so two processes never write one run folder at once. Waits up to `timeout`
    seconds for a previous holder, then raises RunBusyError."""
    import fcntl

    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / name, "a+", encoding="utf-8")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunBusyError(
                        f"{folder}: another process is writing this run (lock {folder / name} "
                        f"held for {timeout:.0f} s); wait for it to finish or stop it") from None
                time.sleep(0.2)
        yield
    finally:
        handle.close()


def is_locked(folder: str | Path, name: str = ".lock") -> bool:
    """Whether a live process holds the lock of `folder` now."""
    import fcntl

    path = Path(folder) / name
    if not path.is_file():
        return False
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def schema(name: str | Path = "record") -> dict[str, Any]:
    """A record schema: `peft_utils/schemas/<name>.json`, or the JSON file `name` names when it
    ends in .json (a study in another package ships its own schema)."""
    if str(name).endswith(".json"):
        return json.loads(Path(name).read_text(encoding="utf-8"))
    return json.loads(resources.files("peft_utils").joinpath(f"schemas/{name}.json").read_text())


def validate_record(record: dict[str, Any], schema_name: str | Path = "record") -> None:
    import jsonschema

    jsonschema.validate(record, schema(schema_name))


def write_record(directory: str | Path, record: dict[str, Any],
                 schema_name: str | Path = "record", kind: str | None = None) -> Path:
    """Validate `record` against its schema (`schema(schema_name)`) and write it atomically; `kind`
    (e.g. "mt") tells a study's records apart from classification's."""
    record = {"schema_version": SCHEMA_VERSION, **({"kind": kind} if kind else {}), **record}
    validate_record(record, schema_name)
    path = Path(directory) / RECORD
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False, default=json_default))
    return path


def write_run_record(directory: str | Path, config, record: dict[str, Any]) -> Path:
    """`record` of a run of `config`, with its study's schema and kind."""
    return write_record(directory, record, config.record_schema, config.record_kind)


def write_failure(config, error: str, directory: str | Path | None = None) -> Path:
    """A failed record for `config` (in its run folder unless `directory` is given)."""
    try:
        info = config.run_info()
    except Exception:   # a config too broken for its derived fields: its values still count
        info = {**config.to_dict(), "run_id": config.run_id}
    record = {"status": "failed", "error": error[-8000:], "run_info": info,
              "meta": {**environment(config.device), "seed": config.seed}}
    return write_run_record(directory or run_dir(config.results_dir, config.run_id), config,
                            record)


def execute_run(config, results_root: str | Path | None, run: Callable[[Path], T]) -> T:
    """`run(folder)` for `config` with the guarantees of every run: nothing starts before the
    config and the paths it needs are checked and the folder has proved writable; one process
    at a time writes the folder (a lock; temporary files a killed writer left are removed);
    `config.json` is written first; any failure still leaves a record with status "failed"
    and the traceback, then re-raises. Under `accelerate launch` only rank 0 writes."""
    from peft_utils.core.config import ConfigError
    from peft_utils.core.devices import is_main_process

    invalid = None
    try:
        config.validate()   # first: it normalises values (language codes) the run id covers
    except ConfigError as err:
        invalid = err
    try:
        run_id = config.run_id
    except Exception:   # a config too broken to name its folder: no record
        raise invalid or ConfigError("config: cannot compute the run id") from None
    out = ensure_writable(run_dir(results_root or config.results_dir, run_id))
    main = is_main_process()
    with run_lock(out) if main else contextlib.nullcontext():
        if main:
            remove_stale_temp_files(out)
        try:
            if main:
                atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
            if invalid is not None:
                raise invalid
            problems = config.path_problems()
            if problems:
                raise ConfigError(f"config: {'; '.join(problems)}")
            return run(out)
        except BaseException as err:
            if main:
                try:
                    write_failure(config, "".join(traceback.format_exception(err)), out)
                except Exception:
                    pass  # a full disk or a broken config: the original error matters more
            raise


def json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / RECORD
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@dataclass
class FoundRun:
    """A run folder as a results scan finds it."""
    folder: Path
    record: dict[str, Any] | None   # None: no readable record
    status: str                     # the record's status, or "no record" / "unreadable"
    reason: str | None              # why it is not complete (None when it is)

    @property
    def run_id(self) -> str:
        return (self.record or {}).get("run_info", {}).get("run_id", self.folder.name)


def scan_runs(root: str | Path) -> list[FoundRun]:
    """Every run folder under `root`, in name order: its record, or why there is none (a
    folder with config.json but no record is running or was killed). The one reader of a
    results folder: the analyses of both studies build on it, so a broken folder is listed,
    never a reason to stop."""
    found = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name[0] not in "._"):
        path = folder / RECORD
        if not path.is_file():
            if (folder / "config.json").is_file():
                found.append(FoundRun(folder, None, "no record", "config.json without "
                                      "record.json: still running or killed"))
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            found.append(FoundRun(folder, None, "unreadable", f"{path}: {err}"))
            continue
        status = str(record.get("status"))
        lines = [x.strip() for x in (record.get("error") or "").splitlines() if x.strip()]
        reason = None if status == "complete" else (lines[-1] if lines else "no error recorded")
        found.append(FoundRun(folder, record, status, reason))
    return found


def is_trial(record: dict[str, Any] | None) -> bool:
    """A tuning trial's record (peft_utils.grid.tuning): read for what tuning chose, never
    compared with the final runs."""
    return bool(record) and (record.get("run_info", {}).get("tuning") or {}).get("stage") == "tune"


def record_status(directory: str | Path) -> str | None:
    """"complete" or "failed" from a run folder's record; None without a readable one."""
    try:
        return read_record(directory).get("status")
    except (OSError, ValueError):
        return None


def is_complete(directory: str | Path) -> bool:
    return record_status(directory) == "complete"


def environment(device: str) -> dict[str, Any]:
    packages = {}
    for name in ("torch", "transformers", "peft", "adapters", "accelerate", "numpy",
                 "scikit-learn", "sacrebleu", "peft-utils"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"packages": packages, "python": platform.python_version(),
            "platform": platform.platform(), "git_commit": git_commit(), "device": device,
            "hostname": platform.node()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
