"""Exit paths under real signals, through the real CLI: SIGTERM (systemd,
``timeout``, Kubernetes) and Ctrl-C leave no plaintext spool, no partial
output, no worker and no hidden cursor behind; SIGKILL leftovers are swept
by the next command.  And the library changes nothing process-wide (a portal
calls it from many threads)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import dicompack
from tests.support import synthetic
from tests.support.run import HOSTILE_RSS_LIMIT_MB
from tests.support.tools import run_cli

TMP_MARK = ".dicompack-tmp-"
SHOW_CURSOR, HIDE_CURSOR = b"\x1b[?25h", b"\x1b[?25l"


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def big_src(tmp_path_factory) -> Path:
    """8 instances of 4 MB random pixels: incompressible (the package is as
    large), slow to encode in JPEG 2000 (workers stay busy), quick to make."""
    root = tmp_path_factory.mktemp("big") / "src"
    root.mkdir()
    for i in range(8):
        ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid=f"1.2.3.1.{i + 1}",
                                     rows=16, columns=16, bits_allocated=8, bits_stored=8,
                                     instance_number=i + 1)
        ds.Rows = ds.Columns = 2048
        ds.PixelData = os.urandom(2048 * 2048)
        synthetic.write_file(ds, root / f"im{i}.dcm")
    return root


@pytest.fixture(scope="module")
def big_package(pki, big_src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "big.p7m"
    run_cli("pack", big_src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
            "--sign-cert", pki / "signer.pem", "-q", check=True)
    return out


def _receive_args(pki: Path) -> list:
    return ["--key", pki / "recip.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


# ------------------------------------------------------------------ helpers

class Cli:
    """``python -m dicompack.cli ARGS`` running in the background; with
    ``tty`` its stdin/stdout/stderr are a pseudo-terminal (progress bar on)."""

    def __init__(self, *args, tmpdir: Path | None = None, tty: bool = False, new_session: bool = False):
        env = dict(os.environ, TERM="xterm", COLUMNS="100")
        if tmpdir is not None:
            env["TMPDIR"] = str(tmpdir)
        self.output = bytearray()
        self._reader = None
        cmd = [sys.executable, "-m", "dicompack.cli", *map(str, args)]
        if tty:
            master, slave = os.openpty()
            self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                         start_new_session=new_session)
            os.close(slave)
            self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
            self._reader.start()
        else:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                         start_new_session=new_session)

    def _read(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:      # EIO: every writer closed the terminal
                break
            if not data:
                break
            self.output.extend(data)
        os.close(fd)

    def wait_until(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended ({self.proc.returncode}) before {what}: {self.finish()[1]!r}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.01)

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def finish(self, timeout: float = 60) -> tuple[int, bytes]:
        """Exit code and what it wrote on stderr (the terminal, with ``tty``)."""
        if self._reader is None:
            _, err = self.proc.communicate(timeout=timeout)
            return self.proc.returncode, err
        code = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return code, bytes(self.output)


def _marked(folder: Path, kind: str = "") -> list[Path]:
    """Our private temporaries in ``folder`` (PID-marked names)."""
    return [p for p in Path(folder).iterdir() if TMP_MARK in p.name and kind in p.name]


def _spool_filling(tmpdir: Path):
    def started() -> bool:
        return any((p / "package.zip").exists() and (p / "package.zip").stat().st_size > (1 << 20)
                   for p in _marked(tmpdir, "spool"))
    return started


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (workers, forkserver), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped: it can write nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tree(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1)
                  for p in folder.rglob("*"))


# ------------------------------------------------------------------ SIGTERM, SIGINT

@pytest.mark.parametrize("command, signum", [("unpack", signal.SIGTERM), ("verify", signal.SIGTERM),
                                             ("unpack", signal.SIGINT)])
def test_signal_during_secure_receive_removes_the_plaintext_spool(pki, big_package, tmp_path, command, signum):
    """The reviewer's case: SIGTERM while the package is being decrypted
    into the spool used to leave the plaintext in the temp folder forever."""
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    args = [command, big_package, *_receive_args(pki)] + (["-o", out] if command == "unpack" else [])
    cli = Cli(*args, tmpdir=tmpdir)
    cli.wait_until(_spool_filling(tmpdir), "the spool fills")
    rss = cli.peak_rss_mb()
    cli.proc.send_signal(signum)
    code, err = cli.finish()
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert (code, err.decode()) == (128 + signum, f"dicompack: {word}; nothing was written\n")
    assert list(tmpdir.iterdir()) == [] and not out.exists()
    assert _marked(tmp_path) == []
    assert rss < HOSTILE_RSS_LIMIT_MB


def test_sigterm_during_pack_removes_the_partial_output_and_shows_the_cursor(pki, big_src, tmp_path):
    """On a terminal (progress bar, cursor hidden) while the hidden partial
    package grows: it goes, and the cursor comes back."""
    out = tmp_path / "study.p7m"
    cli = Cli("pack", big_src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
              "--sign-cert", pki / "signer.pem", tty=True)

    def writing() -> bool:
        return any(p.stat().st_size > (1 << 20) for p in _marked(tmp_path, out.name))
    cli.wait_until(writing, "the partial package grows")
    cli.proc.send_signal(signal.SIGTERM)
    code, screen = cli.finish()
    assert code == 143, screen
    assert HIDE_CURSOR in screen and screen.rfind(SHOW_CURSOR) > screen.rfind(HIDE_CURSOR)
    assert screen.endswith(b"dicompack: terminated; nothing was written\r\n")
    assert not out.exists() and _marked(tmp_path) == []


@pytest.mark.parametrize("target", ["parent", "group"])
def test_sigterm_stops_the_workers(big_src, tmp_path, target):
    """JPEG 2000 in two worker processes.  ``parent``: only the CLI gets
    SIGTERM (``kill PID``, Kubernetes); ``group``: every process does
    (``timeout``, systemd).  No worker may outlive the CLI or go on writing
    into the staging folder beside the destination."""
    out = tmp_path / "out" / "fileset"
    out.parent.mkdir()
    cli = Cli("pack", big_src, "-o", out, "--j2k", "lossless", "--jobs", "2", "-q", new_session=True)

    def encoding() -> bool:
        return len([p for p in _descendants(cli.proc.pid) if _running(p)]) >= 2 and bool(_marked(out.parent))
    cli.wait_until(encoding, "the workers encode")
    workers = _descendants(cli.proc.pid)
    if target == "parent":
        cli.proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(cli.proc.pid, signal.SIGTERM)
    code, err = cli.finish()
    assert (code, err.decode()) == (143, "dicompack: terminated; nothing was written\n")
    assert [p for p in workers if _running(p)] == []
    before = _tree(out.parent)
    time.sleep(0.5)
    assert _tree(out.parent) == before == []


# ------------------------------------------------------------------ SIGKILL

def test_sigkill_leftovers_are_swept_by_the_next_command(pki, big_package, packed_example, tmp_path):
    """Nothing runs on SIGKILL: the spool stays, but its name carries the
    dead PID, and any later command (here ``ls``) removes it."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cli = Cli("unpack", big_package, "-o", tmp_path / "out", *_receive_args(pki), tmpdir=tmpdir)
    cli.wait_until(_spool_filling(tmpdir), "the spool fills")
    cli.proc.kill()
    cli.finish()
    assert _marked(tmpdir, "spool")          # plaintext left behind by the killed run
    env = dict(os.environ, TMPDIR=str(tmpdir))
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "ls", packed_example],
                          capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(tmpdir.iterdir()) == []


def test_workers_die_with_a_sigkilled_parent(big_src, tmp_path):
    """A worker's task queue never reports end of file (the worker holds its
    write end too), so without a parent-death signal it would wait forever."""
    cli = Cli("pack", big_src, "-o", tmp_path / "out", "--j2k", "lossless", "--jobs", "2", "-q")
    cli.wait_until(lambda: len([p for p in _descendants(cli.proc.pid) if _running(p)]) >= 2,
                   "the workers start")
    workers = _descendants(cli.proc.pid)
    cli.proc.kill()
    cli.finish()
    deadline = time.monotonic() + 10
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in workers if _running(p)] == []


def test_sweep_leaves_other_users_and_live_runs_alone(tmp_path):
    """Names in a shared temp folder are anyone's to choose."""
    from dicompack.output import sweep_stale, temp_prefix
    live = tmp_path / (temp_prefix("live") + "x")           # our own PID: alive
    huge = tmp_path / f".x{TMP_MARK}{10 ** 30}-y"          # not a PID: must not crash the sweep
    dead = tmp_path / f".x{TMP_MARK}{2 ** 22 + 1}-z"       # above Linux's pid_max: never alive
    theirs = tmp_path / f".x{TMP_MARK}{2 ** 22 + 2}-w"     # dead, but another user's
    for p in (live, huge, dead, theirs):
        p.mkdir()
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
    else:
        theirs.rmdir()
    assert sweep_stale(tmp_path) == [dead.name]
    assert live.exists() and huge.exists() and not dead.exists()


# ------------------------------------------------------------------ no global side effects

def _global_state() -> dict:
    import logging
    import multiprocessing
    import warnings
    with open("/proc/self/status") as f:
        umask = next(line for line in f if line.startswith("Umask:"))
    return {"umask": umask, "cwd": os.getcwd(), "environ": dict(os.environ),
            "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)},
            "warnings": list(warnings.filters), "recursion": sys.getrecursionlimit(),
            "start_method": multiprocessing.get_start_method(allow_none=True),
            "logging": (logging.root.level, list(logging.root.handlers))}


# Functions that change process-wide state; a library call must call none.
_MUTATORS = {"umask", "chdir", "fchdir", "putenv", "unsetenv", "signal", "setrecursionlimit",
             "set_start_method", "basicConfig", "simplefilter", "filterwarnings", "resetwarnings",
             "setlocale", "setdefaulttimeout", "setswitchinterval"}


def test_library_changes_nothing_process_wide(pki, example_corpus, tmp_path):
    """A portal's view: threads create files while pack, verify and unpack
    run.  ``output._umask`` used to set the umask to 0 and back: for that
    instant whatever another thread created was world-writable.  The window
    is two system calls wide, too narrow to hit reliably, so the audit is
    by profiling: no call made while they run (in this thread and the ZIP
    producer thread) may change process-wide state."""
    from dicompack.container.cms import CertRecipient, Signer
    from dicompack.keys import load_certificate, load_private_key
    src, _ = example_corpus
    called: list[str] = []

    def profile(frame, event, arg):
        name = getattr(arg, "__name__", "") if event == "c_call" else frame.f_code.co_name
        if event in ("call", "c_call") and name in _MUTATORS:
            called.append(f"{name} ({frame.f_code.co_filename}:{frame.f_lineno})")
    stop, loose = threading.Event(), []

    def create(folder: Path) -> None:
        folder.mkdir()
        while not stop.is_set():
            fd = os.open(folder / "f", os.O_CREAT | os.O_WRONLY, 0o666)
            if os.fstat(fd).st_mode & 0o022:
                loose.append(oct(os.fstat(fd).st_mode))
            os.close(fd)
            os.unlink(folder / "f")
    signer = Signer(load_private_key(pki / "signer.key"), load_certificate(pki / "signer.pem"), (),
                    "sha256", "pkcs1v15")
    options = dicompack.PackOptions(recipients=(CertRecipient(load_certificate(pki / "recip.pem")),),
                                    signer=signer)
    receive = dicompack.ReceiveOptions(key=load_private_key(pki / "recip.key"),
                                       cert=load_certificate(pki / "recip.pem"),
                                       trust=(load_certificate(pki / "ca.pem"),))
    before = _global_state()
    threads = [threading.Thread(target=create, args=(tmp_path / f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        dicompack.pack([src], tmp_path / "fileset", dicompack.PackOptions(jobs=2))
        dicompack.pack([src], tmp_path / "study.zip")
        dicompack.pack([src], tmp_path / "study.p7m", options)
        assert dicompack.verify(tmp_path / "study.p7m", receive).ok
        dicompack.unpack(tmp_path / "study.p7m", tmp_path / "restored", receive)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        stop.set()
        for t in threads:
            t.join()
    assert called == [] and loose == []
    assert _global_state() == before


def test_outputs_follow_the_callers_umask(example_corpus, tmp_path):
    """Read without being changed, the umask still decides the outputs' modes."""
    src, _ = example_corpus
    for dest, mode in (("fileset", 0o750), ("study.zip", 0o640)):
        proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "pack", src, "-o", tmp_path / dest, "-q"],
                              capture_output=True, preexec_fn=lambda: os.umask(0o027))
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / dest).stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ warnings

@pytest.fixture(scope="module")
def odd_values(tmp_path_factory) -> Path:
    """Values pydicom warns about when de-identification reads them."""
    import warnings
    root = tmp_path_factory.mktemp("odd") / "src"
    root.mkdir()
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1", rows=8, columns=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # pydicom warns here too
        ds.PatientAge = "45 years"                  # AS is nnnY
        ds.add_new(0x00080090, "PN", "A" * 70)      # a PN component is at most 64 characters
        synthetic.write_file(ds, root / "a.dcm")
    return root


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_library_warnings_never_reach_the_user(odd_values, pki, tmp_path, tty):
    """``terminal``: the progress bar's thread makes the workers forkserver
    children, which do not inherit the CLI's warning filters."""
    args = ["pack", odd_values, "-o", tmp_path / "out", "--deidentify", "--deid-key-file", pki / "pw.txt",
            "--jobs", "2"] + ([] if tty else ["-q"])
    code, err = Cli(*args, tty=tty).finish()
    assert code == 0, err
    assert b"Warning" not in err and b".py:" not in err, err     # "file.py:440: UserWarning: ..."


def test_getpass_warning_never_reaches_the_user(example_corpus, tmp_path):
    """No terminal to hide the password on: getpass warns (the echo notice
    is getpass's own line, kept: it is true)."""
    src, _ = example_corpus
    password = b"correct horse battery staple\n"
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "pack", src, "-o", tmp_path / "s.p7m",
                           "--password-prompt", "--pbkdf2-iterations", "20000", "-q"],
                          input=password * 2, capture_output=True, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    assert b"GetPassWarning" not in proc.stderr and b"getpass.py" not in proc.stderr


def test_stop_during_pool_start_up_does_not_mask_the_signal():
    """A signal can land inside ProcessPoolExecutor's start-up, after its
    manager thread was created and before it was started (seen once as a
    traceback instead of exit 143 under load).  Stopping such a pool must
    not raise, or the cleanup error would replace the cancellation."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from dicompack import parallel
    pool = ProcessPoolExecutor(1)
    pool._executor_manager_thread = threading.Thread(target=lambda: None)   # created, never started
    parallel.stop(pool)
