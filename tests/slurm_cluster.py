"""A single-node Slurm cluster in a temporary folder, for the tests that submit real jobs
(tests/test_slurm.py): munged, MariaDB, slurmdbd (accounting: submitit follows its jobs with
`sacct`, as on every real cluster), slurmctld and slurmd, all as root on this machine, on
ports nobody else uses. `python tests/slurm_cluster.py` starts one, prints how long that took
and the `export SLURM_CONF=...` to use it from a shell, and stops it at Ctrl-C or `kill`.

Debian's packages: `apt-get install -y slurm-wlm slurmdbd munge mariadb-server`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLUSTER = "peftci"
PARTITIONS = ("debug", "long")   # the default partition, and one a grid file can choose
ACCOUNT = "peft"                 # an account of root's besides the default one
GRES = "scratch"                 # a count-only generic resource (no GPU here): `gres: scratch:1`
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd",
           "sbatch", "sacct", "sacctmgr")
PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if _which(name) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def install() -> str | None:
    """Install the packages with apt (as root); why not, if it cannot."""
    if os.geteuid() != 0:
        return f"not root: install {' '.join(PACKAGES)} to run the Slurm tests"
    if shutil.which("apt-get") is None:
        return f"no apt-get: install {' '.join(PACKAGES)} to run the Slurm tests"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}"
    missing = missing_binaries()
    return f"still missing after apt-get: {', '.join(missing)}" if missing else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """Start with `start()`, stop with `stop()`; `env` is what a client (sbatch, sacct,
    submitit) needs: SLURM_CONF."""

    def __init__(self, base: Path | None = None):
        # Outside pytest's folders: its files must outlive nothing, but need short paths
        # (a Unix socket path has a limit of 107 bytes).
        self.base = Path(base or tempfile.mkdtemp(prefix="slurm-"))
        self.base.chmod(0o755)   # munged wants its socket reachable by every user
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.base / "etc" / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {name: free_port() for name in ("ctld", "slurmd", "dbd", "mysql")}
        self.startup_s: float | None = None

    # ---- configuration --------------------------------------------------------------
    def _node_line(self) -> str:
        """This machine as `slurmd -C` sees it, with memory to spare for the rest."""
        line = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
        fields = dict(f.split("=", 1) for f in line.split())
        fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.8))
        # At least 4 CPUs (SlurmdParameters=config_overrides lets slurmd believe it): the
        # `--detach` coordinator job takes one beside the 2 workers' jobs on a 2-core machine.
        cpus = max(4, int(fields["CPUs"]))
        return (f"NodeName={self.host} CPUs={cpus} RealMemory={fields['RealMemory']} "
                f"Gres={GRES}:4 State=UNKNOWN")

    def _write_config(self) -> None:
        b = self.base
        for sub in ("etc", "state", "spool", "log", "munge", "mysql"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        auth = f"AuthType=auth/munge\nAuthInfo=socket={b / 'munge' / 'sock'}\n"
        self.conf.write_text(
            f"ClusterName={CLUSTER}\nSlurmctldHost={self.host}\nSlurmUser=root\n"
            f"SlurmdUser=root\nSlurmctldPort={self.ports['ctld']}\n"
            f"SlurmdPort={self.ports['slurmd']}\n{auth}"
            f"StateSaveLocation={b / 'state'}\nSlurmdSpoolDir={b / 'spool'}\n"
            f"SlurmctldPidFile={b / 'slurmctld.pid'}\nSlurmdPidFile={b / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={b / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={b / 'log' / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "SlurmdParameters=config_overrides\nMpiDefault=none\nReturnToService=2\n"
            "JobCompType=jobcomp/none\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            # Jobs scheduled as soon as they are submitted, and reported promptly after.
            "SchedulerType=sched/builtin\nSchedulerParameters=defer_batch=0,sched_interval=1\n"
            "MinJobAge=300\nKillWait=10\nMessageTimeout=20\nSlurmdTimeout=300\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost={self.host}\nAccountingStoragePort={self.ports['dbd']}\n"
            # Connections to slurmdbd take their MUNGE socket from here, not from AuthInfo.
            f"AccountingStoragePass={b / 'munge' / 'sock'}\n"
            "AccountingStorageEnforce=associations,limits,qos\n"
            f"GresTypes={GRES}\n"
            f"{self._node_line()}\n"
            f"PartitionName={PARTITIONS[0]} Nodes={self.host} Default=YES MaxTime=INFINITE "
            "State=UP\n"
            f"PartitionName={PARTITIONS[1]} Nodes={self.host} MaxTime=INFINITE State=UP\n")
        (b / "etc" / "gres.conf").write_text(f"NodeName={self.host} Name={GRES} Count=4\n")
        dbd = b / "etc" / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost={self.host}\nDbdPort={self.ports['dbd']}\nSlurmUser=root\n"
            f"PidFile={b / 'slurmdbd.pid'}\nLogFile={b / 'log' / 'slurmdbd.log'}\n"
            "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={self.ports['mysql']}\nStorageUser=slurm\nStoragePass=slurm\n"
            "StorageLoc=slurm_acct_db\n")
        dbd.chmod(0o600)   # slurmdbd refuses a readable one: it holds the database password

    # ---- start and stop ---------------------------------------------------------------
    def start(self, timeout: float = 180) -> None:
        """Every daemon, then wait for the node; on failure, stop what started."""
        started = time.monotonic()
        try:
            self._start(started + timeout)
        except BaseException:
            self.stop(remove=False)   # its logs, named in the error
            raise
        self.startup_s = time.monotonic() - started

    def _start(self, deadline: float) -> None:
        self._write_config()
        self._start_munge()
        self._start_mariadb(deadline)
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait(lambda: self._run("sacctmgr", "-n", "list", "cluster").returncode == 0,
                   deadline, "slurmdbd")
        self._sacctmgr("add", "cluster", CLUSTER)
        self._sacctmgr("add", "account", ACCOUNT, f"cluster={CLUSTER}")
        self._sacctmgr("add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._spawn("slurmd", [_which("slurmd"), "-D"])
        self._wait(self._node_idle, deadline, "the node to be idle in sinfo")

    def _start_munge(self) -> None:
        key = self.base / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.base / "munge"
        self._spawn("munged", [_which("munged"), "-F", "-f", f"--socket={munge / 'sock'}",
                               f"--key-file={key}", f"--pid-file={munge / 'pid'}",
                               f"--seed-file={munge / 'seed'}",
                               f"--log-file={self.base / 'log' / 'munged.log'}"])
        self._wait(lambda: (self.base / "munge" / "sock").exists(), time.monotonic() + 30,
                   "munged")

    def _start_mariadb(self, deadline: float) -> None:
        data, sock = self.base / "mysql" / "data", self.base / "mysql" / "sock"
        subprocess.run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={data}",
                        "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True)
        self._spawn("mariadbd", [_which("mariadbd"), "--no-defaults", f"--datadir={data}",
                                 f"--socket={sock}", f"--port={self.ports['mysql']}",
                                 "--bind-address=127.0.0.1", "--user=root",
                                 f"--pid-file={self.base / 'mysql' / 'pid'}",
                                 "--innodb-buffer-pool-size=64M",
                                 "--innodb-flush-log-at-trx-commit=0",
                                 # slurmdbd's own recommendation (it warns otherwise)
                                 "--innodb-lock-wait-timeout=900",
                                 f"--log-error={self.base / 'log' / 'mariadb.log'}"])
        self._wait(lambda: self.sql("SELECT 1").returncode == 0, deadline, "MariaDB")
        for host in ("localhost", "127.0.0.1", "%"):
            self.sql(f"CREATE USER 'slurm'@'{host}' IDENTIFIED BY 'slurm'; "
                     f"GRANT ALL ON *.* TO 'slurm'@'{host}';", check=True)

    def sql(self, statement: str, check: bool = False) -> subprocess.CompletedProcess:
        """A statement as MariaDB's root, over its Unix socket."""
        sock = self.base / "mysql" / "sock"
        return subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root",
                               "-e", statement], capture_output=True, text=True, check=check)

    def mysql_url(self, database: str) -> str:
        """A new MariaDB database, as an SQLAlchemy URL (pymysql)."""
        self.sql(f"CREATE DATABASE `{database}`", check=True)
        return f"mysql+pymysql://slurm:slurm@127.0.0.1:{self.ports['mysql']}/{database}"

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.base / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(command, env={**os.environ, **self.env},
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([_which(command[0]), *command[1:]], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=60)

    def _sacctmgr(self, *args: str) -> None:
        done = self._run("sacctmgr", "-i", *args)
        if done.returncode != 0 and "Nothing new added" not in done.stdout + done.stderr:
            raise RuntimeError(f"sacctmgr {' '.join(args)}: {done.stdout}{done.stderr}")

    def _node_idle(self) -> bool:
        done = self._run("sinfo", "-h", "-N", "-o", "%T")
        return done.returncode == 0 and done.stdout.split()[:1] == ["idle"]

    def _wait(self, ready, deadline: float, what: str) -> None:
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"waiting for {what}: "
                                   + (f"{', '.join(dead)} exited; " if dead else "timed out; ")
                                   + f"logs in {self.base / 'log'}:\n" + self.logs())
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted((self.base / "log").glob("*")))

    def stop(self, remove: bool = True) -> None:
        """Every daemon, newest first (jobs still running end with slurmd); then the folder."""
        with contextlib.suppress(Exception):
            self._run("scancel", "--full", "-u", "root")
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()
        self.procs.clear()
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    # `kill` stops it as Ctrl-C does: the daemons with it (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with SlurmCluster() as cluster:
        print(f"cluster up in {cluster.startup_s:.1f} s; in a shell: "
              f"export SLURM_CONF={cluster.conf}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
