"""Linux namespace isolation for the local sandbox: bubblewrap, else ``unshare``.

Both routes give the worker the same world:

- its own network namespace (only a down ``lo``: no host, no internet),
  PID, IPC and UTS namespaces, and a mount namespace whose root is an empty
  tmpfs holding read-only binds of only what Python needs (``/usr``, the
  interpreter's prefix, the ``/lib*`` links, ``ld.so.cache``);
- a private, size-limited, empty ``/tmp`` that is also its working directory;
  no host home, no host ``/tmp``, no ``/etc``, no ``/sys``;
- an unprivileged user with no capabilities and ``no_new_privs``. As root,
  the worker drops to a *unique* uid of its own (so ``RLIMIT_NPROC`` counts
  its processes only: a uid-0 process is exempt from that limit, even inside a
  user namespace). As an ordinary user, a user namespace maps it to 65534;
- death with the host: the sandbox's PID 1 gets SIGKILL when the process the
  host started dies, and the kernel then kills everything left in the PID
  namespace, double-forked daemons included.

Which route works is found by running a tiny probe once per interpreter
(``detect``), so ``deeprecall doctor`` and the sandbox agree on the answer.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deeprecall.sandboxes.protocol import launch_command

# MALLOC_ARENA_MAX: glibc reserves 64 MB of address space per thread arena, so
# under RLIMIT_AS a worker could start only ~13 threads; with 2 arenas, ~100.
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "HOME": "/tmp", "TMPDIR": "/tmp", "MALLOC_ARENA_MAX": "2"}
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROBE_CODE = "import os;print('deeprecall-probe', os.getuid())"

# Runs first inside the sandbox, as root with only CAP_SETUID/CAP_SETGID left:
# drop to the worker's own uid, which clears every remaining capability.
DROP_PRIVILEGES = (
    "import os\n"
    "os.setgroups([]);os.setresgid({gid},{gid},{gid});os.setresuid({uid},{uid},{uid})\n"
    "if os.getuid()!={uid} or os.geteuid()!={uid}:raise SystemExit('deeprecall: privilege drop failed')\n"
)

# The ``unshare`` route and the zygote have no bubblewrap to build the new
# root, so the worker does it itself (stdlib + ctypes), then chroots and drops
# privileges before the worker's code runs in the same process. SETUP_BODY is
# three parts: helpers, the read-only base root (which the zygote, as root,
# builds once for all its workers) and the worker's own /proc, /tmp and uid.
# ``_P`` holds the parameters (``setup_params``). Changing uid clears the
# parent-death signal, so it is set again last (prctl 1 = PR_SET_PDEATHSIG).
SETUP_COMMON = r"""
import ctypes,os
_c=ctypes.CDLL(None,use_errno=True)
def _m(src,dst,fs,fl,data=None):
    if _c.mount(src.encode() if src else None,dst.encode(),fs.encode() if fs else None,fl,data.encode() if data else None)!=0:
        e=ctypes.get_errno();raise OSError(e,'mount %s: %s'%(dst,os.strerror(e)))
_N='/tmp'
"""
# The read-only root every worker shares the contents of (the zygote builds it once, in its own mount namespace).
SETUP_BASE = r"""
_m(None,'/',None,(1<<14)|(1<<18))
_m('tmpfs',_N,'tmpfs',6,'mode=0755,size=1m')
for _d in _P['dirs']:
    os.makedirs(_N+_d,mode=0o755,exist_ok=True);os.chmod(_N+_d,0o755)
for _l,_t in _P['links']:
    os.symlink(_t,_N+_l)
for _s in _P['binds']:
    if os.path.isdir(_s):os.makedirs(_N+_s,exist_ok=True)
    else:
        os.makedirs(os.path.dirname(_N+_s),exist_ok=True);open(_N+_s,'a').close()
    _m(_s,_N+_s,None,4096|16384)
    _m(None,_N+_s,None,4096|32|1|2|4)
for _d in ('null','zero','random','urandom'):
    open(_N+'/dev/'+_d,'a').close();_m('/dev/'+_d,_N+'/dev/'+_d,None,4096)
_m(None,_N,None,32|1|2|4)
_m(None,_N,None,4096|32|1|2|4)
"""
# Each worker's own part: its /proc, its /tmp, the chroot and its uid.
SETUP_WORKER = r"""
_m('proc',_N+'/proc','proc',2|4|8)
_m('tmpfs',_N+'/tmp','tmpfs',6,'mode=1777,size=%dk'%_P['tmp_kb'])
os.chroot(_N);os.chdir('/tmp')
if _P['uid'] is not None:
    os.setgroups([]);os.setresgid(_P['gid'],_P['gid'],_P['gid']);os.setresuid(_P['uid'],_P['uid'],_P['uid'])
else:
    for _i in range(64):_c.prctl(24,_i,0,0,0)
    class _H(ctypes.Structure):_fields_=[('v',ctypes.c_uint32),('p',ctypes.c_int)]
    _z=(ctypes.c_uint32*6)()
    if _c.capset(ctypes.byref(_H(0x20080522,0)),_z)!=0:raise SystemExit('deeprecall: capset failed')
if _c.prctl(38,1,0,0,0)!=0:raise SystemExit('deeprecall: no_new_privs failed')
_c.prctl(1,9,0,0,0)
del _c,_m,_P,_N
"""
SETUP_BODY = SETUP_COMMON + SETUP_BASE + SETUP_WORKER


@dataclass(frozen=True)
class Isolation:
    """What ``detect`` found: ``tool`` is "bwrap", "unshare" or None, ``reason`` says why."""

    tool: str | None
    reason: str
    python: str

    @property
    def available(self) -> bool:
        return self.tool is not None


def real_python(python: str) -> str:
    """A venv's python is a symlink into its base prefix; the sandbox runs the real binary."""
    found = shutil.which(python) or python
    return os.path.realpath(found)


def _python_prefix(python: str) -> str:
    """The interpreter's install prefix (``<prefix>/bin/python3.x``)."""
    return str(Path(python).parent.parent)


@functools.lru_cache(maxsize=1)
def _account_uids() -> frozenset[int]:
    """The uids of this machine's accounts, read once: a lookup per worker reread /etc/passwd every time."""
    import pwd

    return frozenset(entry.pw_uid for entry in pwd.getpwall())


def _unique_ids() -> tuple[int, int]:
    """A uid no account uses (drawn from 2**20..2**31), so RLIMIT_NPROC counts this worker's processes only."""
    taken = _account_uids()
    for _ in range(64):
        uid = random.randrange(1 << 20, (1 << 31) - 2)
        if uid not in taken:
            return uid, uid
    return 65534, 65534


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _read_only_paths(python: str) -> list[str]:
    paths = ["/usr"]
    prefix = _python_prefix(python)
    if not prefix.startswith("/usr/") and prefix != "/usr":
        paths.append(prefix)
    if os.path.exists("/etc/ld.so.cache"):
        paths.append("/etc/ld.so.cache")
    for link in ROOT_LINKS:
        if os.path.isdir(link) and not os.path.islink(link):
            paths.append(link)
    return paths


def _root_links() -> list[tuple[str, str]]:
    return [(link, os.readlink(link)) for link in ROOT_LINKS if os.path.islink(link)]


def bwrap_command(python: str, worker_argv: list[str], *, tmp_mb: int, as_root: bool) -> list[str]:
    """The bubblewrap argv that runs ``worker_argv`` (whose argv[0] is ``python``)."""
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid", "--unshare-net",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "deeprecall-sandbox", "--cap-drop", "ALL"]
    if as_root:
        # No user namespace: the worker drops to its own uid (DROP_PRIVILEGES),
        # which needs exactly these two capabilities until it does.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534"]
    made: set[str] = set()
    for path in _read_only_paths(python):
        for parent in _ancestors(path):
            if parent not in made and not parent.startswith("/usr"):
                argv += ["--perms", "0755", "--dir", parent]  # bwrap copies 0700 from /root otherwise
                made.add(parent)
        argv += ["--ro-bind", path, path]
    for link, target in _root_links():
        argv += ["--symlink", target, link]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
             "--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *worker_argv]


def unshare_command(python: str, worker_argv: list[str], *, tmp_mb: int, as_root: bool) -> list[str]:
    """The ``unshare`` argv; the prelude inside ``worker_argv`` builds the root itself."""
    unshare = shutil.which("unshare") or "unshare"
    argv = [unshare, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private"]
    setpriv = shutil.which("setpriv")
    if setpriv:  # --kill-child ties the worker to unshare; this ties unshare to the host (else a busy worker outlives it)
        argv = [setpriv, "--pdeathsig", "KILL", *argv]
    if not as_root:
        argv += ["--user", "--map-root-user"]
    return [*argv, "--", *worker_argv]


def setup_params(python: str, *, tmp_mb: int, as_root: bool) -> dict[str, object]:
    """What ``SETUP_BODY`` builds for one worker: its root's contents and, as root, its own uid."""
    ro = _read_only_paths(python)
    dirs = sorted({p for path in ro for p in _ancestors(path)} | {"/dev", "/proc", "/tmp"})
    uid, gid = _unique_ids() if as_root else (None, None)
    return {"dirs": dirs, "links": _root_links(), "binds": ro, "tmp_kb": tmp_mb << 10, "uid": uid, "gid": gid}


def unshare_prelude(python: str, *, tmp_mb: int, as_root: bool) -> str:
    return f"_P={setup_params(python, tmp_mb=tmp_mb, as_root=as_root)!r}\n{SETUP_BODY}"


def sandboxed_argv(tool: str, python: str, *, code: str | None = None, tmp_mb: int = 64,
                   flags: tuple[str, ...] = ("-u", "-I", "-S"), nice: int = 0) -> list[str]:
    """The full argv that starts the worker (or ``code``, for probes) inside ``tool``'s sandbox."""
    as_root = os.geteuid() == 0
    worker_argv = launch_command(python, flags, nice) if code is None else [python, *flags, "-c", code]
    at = worker_argv.index("-c") + 1
    if tool == "bwrap":
        uid, gid = _unique_ids()
        prefix = DROP_PRIVILEGES.format(uid=uid, gid=gid) if as_root else ""
        worker_argv[at] = prefix + worker_argv[at]
        return bwrap_command(python, worker_argv, tmp_mb=tmp_mb, as_root=as_root)
    if tool == "unshare":
        worker_argv[at] = unshare_prelude(python, tmp_mb=tmp_mb, as_root=as_root) + worker_argv[at]
        return unshare_command(python, worker_argv, tmp_mb=tmp_mb, as_root=as_root)
    raise ValueError(f"unknown namespace tool {tool!r}")


def _probe(tool: str, python: str) -> str | None:
    """Run a one-line script inside ``tool``'s sandbox; None if it works, else why not."""
    if shutil.which(tool) is None:
        return f"{tool} is not installed"
    try:
        done = subprocess.run(sandboxed_argv(tool, python, code=PROBE_CODE), capture_output=True, text=True,
                              timeout=20, env=dict(SANDBOX_ENV), stdin=subprocess.DEVNULL, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{tool} could not run: {e}"
    if done.returncode == 0 and done.stdout.startswith("deeprecall-probe"):
        uid = done.stdout.split()[-1]
        if uid == "0" and os.geteuid() == 0:
            return f"{tool} ran the probe as root inside the sandbox"
        return None
    detail = (done.stderr or done.stdout).strip().splitlines()
    return f"{tool} failed (exit {done.returncode}): {detail[-1] if detail else 'no output'}"


@functools.lru_cache(maxsize=8)
def detect(python: str, tool: str = "auto") -> Isolation:
    """Which namespace tool works here for ``python``; probed once and cached."""
    python = real_python(python)
    if not sys.platform.startswith("linux"):
        return Isolation(None, f"namespaces need Linux; this is {sys.platform}", python)
    tools = ("bwrap", "unshare") if tool == "auto" else (tool,)
    reasons = []
    for candidate in tools:
        failure = _probe(candidate, python)
        if failure is None:
            who = "as root: the worker drops to a unique unprivileged uid" if os.geteuid() == 0 else \
                "as an ordinary user: a user namespace maps the worker to uid 65534"
            return Isolation(candidate, f"{candidate} works ({who})", python)
        reasons.append(failure)
    return Isolation(None, "; ".join(reasons), python)
