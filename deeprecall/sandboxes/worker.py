"""DeepRecall's sandbox worker: the REPL the model's code runs in.

This file is the same in every sandbox (local, docker, modal, e2b, daytona,
prime). It needs only the standard library, so any image with python3 can host
it. The host does not copy it as a file: it starts ``python3 -c BOOTSTRAP N``
(see ``protocol.py``) and streams these N bytes of source over stdin.

Wire format: one JSON object per line, ASCII only (so text-only streams such
as Daytona's session input carry it unchanged). The worker keeps private
duplicates of fds 0 and 1 for the protocol and points fd 0 at /dev/null and
fd 1 at fd 2, so nothing the model's code (or its children) prints can
corrupt the stream.

Host -> worker:  init, exec, var, reply, shutdown
Worker -> host:  hello, ready, result, var, call
"""

import builtins
import io
import os
import queue
import sys
import threading

# The C halves of ``signal`` and ``json``: the Python wrappers import enum and re,
# ~10 ms of every worker's start-up (a fifth of it) for nothing the worker uses.
# Interpreters without them (not CPython) get the full modules.
try:
    import _signal as signal
except ImportError:
    import signal

PROTOCOL_VERSION = 1


def wire_codec():
    """(dumps, loads) for the wire: ASCII JSON, ``repr`` for values JSON has no form for."""
    try:
        import _json

        class Settings:  # what the C scanner reads from json.JSONDecoder
            strict, object_hook, object_pairs_hook = True, None, None
            parse_float, parse_int, parse_constant = float, int, float

        scan = _json.make_scanner(Settings)

        def dumps(obj):
            encode = _json.make_encoder({}, repr, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
            return "".join(encode(obj, 0))

        def loads(text):
            text = text.strip()
            try:
                obj, end = scan(text, 0)
            except StopIteration:
                raise ValueError("not JSON") from None
            if end != len(text):
                raise ValueError("extra data after the JSON value")
            return obj

        if loads(dumps({"a": [1, 2.5, None, True, "\u00e9"]})) == {"a": [1, 2.5, None, True, "\u00e9"]}:
            return dumps, loads
    except Exception:  # noqa: BLE001 -- any surprise in the C half: the full module is always right
        pass
    import json

    return (lambda obj: json.dumps(obj, ensure_ascii=True, default=repr)), json.loads


dumps, loads = wire_codec()
WORKER_FILENAME = "<deeprecall-worker>"
WORKER_DIR_ENV = "DEEPRECALL_WORKER_DIR"  # a host directory this worker owns and removes when the host goes
RESERVED = ("search_db", "llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched",
            "SHOW_VARS", "FINAL", "FINAL_VAR", "context", "ToolError")


class CellTimeout(BaseException):
    """Raised in the cell's thread when it runs past its time. A BaseException so
    that a bare ``except Exception`` in the model's code does not swallow it."""


class ToolError(Exception):
    """A host tool (search_db, llm_query) refused or failed. The message says why."""


# Tracebacks name these as the model knows them ("ToolError: ..."), not by the module the worker's code was
# loaded as (which differs between an exec'd worker and one forked from the template).
ToolError.__module__ = CellTimeout.__module__ = "builtins"


class CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps at most ``cap`` characters."""

    def __init__(self, cap):
        self.cap = cap
        self.parts = []
        self.size = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        with self.lock:
            room = self.cap - self.size
            if room > 0:
                self.parts.append(s[:room])
                self.size += min(len(s), room)
            self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def getvalue(self):
        text = "".join(self.parts)
        if self.dropped:
            text += "\n... [output truncated: %d more characters]" % self.dropped
        return text


def apply_limits(limits):
    """Apply resource limits to this process (and its children) where the OS allows."""
    try:
        import resource
    except ImportError:
        return []
    applied = []
    table = {
        "memory_mb": ("RLIMIT_AS", 1024 * 1024),
        "cpu_seconds": ("RLIMIT_CPU", 1),
        "max_processes": ("RLIMIT_NPROC", 1),
        "max_file_mb": ("RLIMIT_FSIZE", 1024 * 1024),
    }
    for key, (name, scale) in table.items():
        value = limits.get(key)
        if value is None or not hasattr(resource, name):
            continue
        try:
            n = int(value * scale)
            resource.setrlimit(getattr(resource, name), (n, n))
            applied.append(key)
        except (ValueError, OSError):
            pass
    return applied


class Worker:
    def __init__(self, rin, wout):
        self.rin = rin
        self.wout = wout
        self.wlock = threading.Lock()
        self.pending = {}
        self.plock = threading.Lock()
        self.next_id = 0
        self.tasks = queue.Queue()
        self.ns = {}
        self.reserved = {}
        self.output_cap = 20000
        self.own_dir = os.environ.pop(WORKER_DIR_ENV, None)

    # -- wire -------------------------------------------------------------
    def send(self, msg):
        data = (dumps(msg) + "\n").encode("ascii")
        with self.wlock:
            self.wout.write(data)
            self.wout.flush()

    def read_loop(self):
        for line in self.rin:
            if not line.strip():
                continue
            msg = loads(line.decode("utf-8") if isinstance(line, bytes) else line)
            if msg.get("type") == "reply":
                with self.plock:
                    slot = self.pending.pop(msg.get("id"), None)
                if slot is not None:
                    slot[1] = msg
                    slot[0].set()
            else:
                self.tasks.put(msg)
        self.leave()

    def leave(self):
        """The host closed the stream: the query is over, or the host died (even by SIGKILL, mid-cell or
        mid-call, its end of the pipe closes). Nothing of this worker may outlive it: its own directory goes
        (process isolation; namespaces and containers have no host directory), and so do the processes its cells
        started, when it leads their group (process isolation; a namespace or container dies with its first
        process)."""
        if self.own_dir:
            import shutil  # lazily: only the last thing a worker does

            shutil.rmtree(self.own_dir, ignore_errors=True)
        if os.getpgid(0) == os.getpid() != 1:  # a namespace's or container's first process takes the rest along
            os.killpg(os.getpid(), signal.SIGKILL)  # the group, this worker included
        os._exit(0)

    # -- tools ------------------------------------------------------------
    def call(self, fn, **args):
        event = threading.Event()
        slot = [event, None]
        with self.plock:
            self.next_id += 1
            call_id = self.next_id
            self.pending[call_id] = slot
        paused = self._pause_timer()
        try:
            self.send({"type": "call", "id": call_id, "fn": fn, "args": args})
            event.wait()
        finally:
            self._resume_timer(paused)
        reply = slot[1]
        if not reply.get("ok"):
            raise ToolError(reply.get("error") or "the host refused the call")
        return reply.get("value")

    @staticmethod
    def _pause_timer():
        """Waiting for the host (an LLM, the store) does not count as cell time."""
        if threading.current_thread() is not threading.main_thread():
            return 0.0
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return remaining

    @staticmethod
    def _resume_timer(remaining):
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, remaining)

    def build_namespace(self, context):
        call = self.call
        ns = self.ns

        def search_db(query, top_k=5, filters=None):
            """Search the vector store. Returns a list of {id, content, metadata, score}."""
            return call("search_db", query=query, top_k=top_k, filters=filters)

        def llm_query(prompt, model=None):
            """One sub-LLM completion."""
            return call("llm_query", prompt=prompt, model=model)

        def llm_query_batched(prompts, model=None):
            """Several sub-LLM completions, run concurrently by the host."""
            return call("llm_query_batched", prompts=list(prompts), model=model)

        def rlm_query(prompt, model=None):
            return call("rlm_query", prompt=prompt, model=model)

        def rlm_query_batched(prompts, model=None):
            return call("rlm_query_batched", prompts=list(prompts), model=model)

        def SHOW_VARS():
            names = [k for k in ns if not k.startswith("_") and k not in self.reserved and k != "answer"]
            return "Variables: " + ", ".join(sorted(names))

        def FINAL(text):
            ns["answer"] = {"content": str(text), "ready": True}

        def FINAL_VAR(name):
            value = ns.get(name, name) if isinstance(name, str) else name
            ns["answer"] = {"content": str(value), "ready": True}

        self.reserved = {
            "search_db": search_db, "llm_query": llm_query, "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query, "rlm_query_batched": rlm_query_batched, "SHOW_VARS": SHOW_VARS,
            "FINAL": FINAL, "FINAL_VAR": FINAL_VAR, "context": context, "ToolError": ToolError,
        }
        ns.clear()
        ns.update({"__name__": "__main__", "__builtins__": builtins, "answer": {"content": "", "ready": False}})
        ns.update(self.reserved)

    # -- requests ---------------------------------------------------------
    def handle_init(self, msg):
        self.output_cap = int(msg.get("output_cap") or self.output_cap)
        workdir = msg.get("workdir")
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        applied = apply_limits(msg.get("limits") or {})
        self.build_namespace(msg.get("context"))
        return {"type": "ready", "id": msg.get("id"), "limits": applied}

    def handle_exec(self, msg):
        out, err = CappedText(self.output_cap), CappedText(self.output_cap)
        timeout = float(msg.get("timeout") or 0)
        timed_out = False
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            try:
                if timeout > 0:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                exec(compile(msg["code"], "<cell>", "exec"), self.ns)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except CellTimeout:
            timed_out = True
            err.write("TimeoutError: this cell ran past its %gs limit and was interrupted. "
                      "Variables set before that point are kept.\n" % timeout)
        except SystemExit as e:
            err.write("SystemExit(%r) ignored: the REPL keeps running.\n" % (e.code,))
        except BaseException as e:  # the model's own error: report it, keep serving
            err.write(format_error(e))
        finally:
            sys.stdout, sys.stderr = saved
        self.restore_reserved()
        return {"type": "result", "id": msg.get("id"), "stdout": out.getvalue(), "stderr": err.getvalue(),
                "answer": self.answer_state(), "vars": self.var_names(), "timed_out": timed_out}

    def handle_var(self, msg):
        name = msg.get("name")
        if name not in self.ns:
            return {"type": "var", "id": msg.get("id"), "found": False, "value": None}
        return {"type": "var", "id": msg.get("id"), "found": True, "value": str(self.ns[name])[: self.output_cap * 5]}

    def restore_reserved(self):
        self.ns.update(self.reserved)
        if "answer" not in self.ns:
            self.ns["answer"] = {"content": "", "ready": False}

    def answer_state(self):
        answer = self.ns.get("answer")
        if not isinstance(answer, dict):
            return {"content": "" if answer is None else str(answer), "ready": False, "sources": None}
        sources = answer.get("sources")
        if sources is not None:
            sources = [str(s) for s in sources] if isinstance(sources, (list, tuple)) else None
        content = answer.get("content", "")
        return {"content": "" if content is None else str(content), "ready": bool(answer.get("ready")), "sources": sources}

    def var_names(self):
        return sorted(k for k in self.ns if not k.startswith("_") and k not in self.reserved and k != "answer")[:200]

    def serve(self):
        handlers = {"init": self.handle_init, "exec": self.handle_exec, "var": self.handle_var}
        self.send({"type": "hello", "protocol": PROTOCOL_VERSION, "python": sys.version.split()[0], "pid": os.getpid()})
        while True:
            msg = self.tasks.get()
            kind = msg.get("type")
            if kind == "shutdown":
                break
            handler = handlers.get(kind)
            if handler is None:
                self.send({"type": "error", "id": msg.get("id"), "error": "unknown message type %r" % kind})
                continue
            self.send(handler(msg))


def format_error(exc):
    """The model's traceback without the worker's own frames."""
    import traceback  # lazily: it costs ~6 ms of every worker's start-up

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != WORKER_FILENAME]
    lines = traceback.format_list(frames) if frames else []
    return "Traceback (most recent call last):\n" + "".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))


def _on_alarm(signum, frame):
    raise CellTimeout()


def main():
    rin = os.fdopen(os.dup(0), "rb")
    wout = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 -- lives as long as the worker
    signal.signal(signal.SIGALRM, _on_alarm)
    worker = Worker(rin, wout)
    threading.Thread(target=worker.read_loop, name="deeprecall-reader", daemon=True).start()
    worker.serve()
    os._exit(0)


if __name__ in ("__main__", "__deeprecall_worker__"):
    main()
