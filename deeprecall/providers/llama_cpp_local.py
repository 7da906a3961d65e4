"""``backend="llama-cpp"`` without a base URL: a GGUF model run in this process by llama-cpp-python.

The one file that imports ``llama_cpp`` (lazily: extra ``local-llm``). With a
``base_url`` (or ``LLAMACPP_BASE_URL``) the same backend is a llama.cpp *server*
reached over HTTP instead (``openai_compat``); ``factory`` decides.

Why these choices:
- A llama.cpp context is not thread-safe, and every instance runs on all cores
  (``n_threads`` = cpu count), so calls take turns on one process-wide lock: decoding
  is bound by memory bandwidth, and two generations on the same cores would only make
  ggml's spinning worker threads wait for each other. Root and sub-models are separate
  instances: each has its own context, hence its own KV cache, and llama.cpp reuses a
  cached prompt prefix only while consecutive prompts share it, so alternating the
  ~3k-token root prompt with short sub-call prompts on one context would re-read the
  root prompt every turn. The file is mmap'd once per process and shared; each
  instance adds its KV cache (28 KB/token for the 1.5B model: 450 MB at n_ctx 16384)
  and the copy of the weights llama.cpp repacks for AVX2 (~600 MB): measured 1.1 GB
  of private memory per instance, 2.2 GB RSS for the first.
- The prompt is rendered with the model's own chat template and tokenized here,
  before generating, so a prompt that does not fit raises ``ContextWindowExceeded``
  with exact counts instead of llama-cpp-python's bare ``ValueError``.
- Greedy decoding (temperature 0) with a fixed seed by default: a small model
  writing code does best without sampling noise, and runs are reproducible.
- ``timeout``: generation is checked against the deadline after every token and
  stops there (``ProviderError``, retryable).
- Streaming (``on_delta``): llama-cpp-python's ``stream=True``, each piece handed on
  as it is decoded (it holds back text that might begin a stop sequence). Its
  stream carries no usage: input tokens are the prompt's, output tokens the
  reply re-tokenised (for greedy output, what was generated). Reading the prompt cannot be
  interrupted; a call can overrun its timeout by that much (~80 prompt tokens/s on
  2 cores), which is why ``prompt_seconds`` is estimated and refused up front.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError, ContextWindowExceeded, MissingDependencyError, ProviderError
from deeprecall.providers.adapter import Deltas
from deeprecall.providers.base import Completion, Message, OnDelta
from deeprecall.providers.local_models import (
    KNOWN_MODELS,
    LocalModel,
    check_memory,
    ensure_verified,
    get_model,
    model_path,
)

DEFAULT_N_CTX = 16384
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_SEED = 0
UNKNOWN_KV_BYTES_PER_TOKEN = 128 << 10  # a 7-8B GQA model in f16; generous for smaller ones
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "frequency_penalty",
                           "presence_penalty", "seed", "stop"})
OPTIONS = frozenset({"model_name", "model", "model_path", "n_ctx", "n_threads", "n_batch", "max_output_tokens",
                     "seed", "sampling_args", "timeout", "verbose"})

_mapped: dict[str, int] = {}  # model file -> open instances in this process: a further one shares its pages
_mapped_lock = threading.Lock()
_compute_lock = threading.Lock()  # one generation at a time in this process: instances share the cores


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise MissingDependencyError("llama-cpp-python", "local-llm",
                                     "backend 'llama-cpp' without a base_url (the model run in-process)") from e
    return llama_cpp


def resolve_model_file(model_name: str, model_file: str | os.PathLike[str] | None) -> tuple[Path, LocalModel | None]:
    """``model_path`` if given (the user's own file, not hash-checked), else the known model ``model_name``
    from the cache, verified once. ``ConfigError`` naming `deeprecall models fetch` when it is absent."""
    if model_file is not None:
        path = Path(model_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"model_path {str(path)!r} is not a file; give the path of a .gguf model")
        return path, KNOWN_MODELS.get(model_name.strip().lower())
    if model_name.strip().lower() not in KNOWN_MODELS:
        raise ConfigError(f"backend 'llama-cpp' runs a GGUF file in-process: model_name {model_name!r} is not a "
                          f"known local model ({', '.join(sorted(KNOWN_MODELS))}); pass model_path=... , or "
                          "base_url=... (or LLAMACPP_BASE_URL) to use a llama.cpp server")
    spec = get_model(model_name)
    path = model_path(spec)
    if not path.is_file():
        raise ConfigError(f"the local model {spec.name} is not installed; run `deeprecall models fetch {spec.name}` "
                          "(or scripts/local_llm.sh, which also installs llama-cpp-python)")
    ensure_verified(path, spec)
    return path, spec


class LlamaCppChatModel:
    """One llama.cpp context over one GGUF file. Thread-safe: calls take turns on a process-wide lock.

    ``small_model`` tells the engine to use its compact prompt. ``cost_usd`` is 0.0
    (it runs on your machine), so ``has_price`` is True and ``max_cost_usd`` works.
    """

    small_model: bool = True
    has_price: bool = True

    def __init__(self, model_name: str, *, model_path: str | os.PathLike[str] | None = None,
                 n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None, n_batch: int = 512,
                 max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS, seed: int = DEFAULT_SEED,
                 sampling_args: dict[str, Any] | None = None, timeout: float = 120.0, verbose: bool = False) -> None:
        _check_settings(n_ctx, max_output_tokens, sampling_args)
        self.model_name = model_name
        self.path, spec = resolve_model_file(model_name, model_path)
        llama_cpp = _import_llama_cpp()
        self.n_ctx = int(n_ctx)
        self.max_output_tokens = int(max_output_tokens)
        self.timeout = float(timeout)
        self._sampling: dict[str, Any] = {"temperature": 0.0, "seed": seed, **(sampling_args or {})}
        self._lock = _compute_lock
        self.prompt_tokens_per_second: float | None = None  # measured; refines the up-front time check
        self.output_tokens_per_second: float | None = None
        self._llama = self._load(llama_cpp, spec, n_threads or os.cpu_count() or 1, n_batch, seed, verbose)
        self._formatter = _chat_formatter(self._llama)

    def _load(self, llama_cpp: Any, spec: LocalModel | None, n_threads: int, n_batch: int, seed: int,
              verbose: bool) -> Any:
        key = str(self.path.resolve())
        with _mapped_lock:
            check_memory(self.path, self.n_ctx, weights_loaded=_mapped.get(key, 0) > 0,
                         kv_bytes_per_token=spec.kv_bytes_per_token if spec else UNKNOWN_KV_BYTES_PER_TOKEN)
            try:
                llama = llama_cpp.Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=n_threads,
                                        n_threads_batch=n_threads, n_batch=n_batch, seed=seed, verbose=verbose)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"llama.cpp could not load {self.path} ({e}); is it a GGUF model file? "
                                  "A fetched model can be checked with `deeprecall models fetch` again") from e
            _mapped[key] = _mapped.get(key, 0) + 1
        return llama

    def __repr__(self) -> str:
        return f"LlamaCppChatModel(model_name={self.model_name!r}, path={str(self.path)!r}, n_ctx={self.n_ctx})"

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens the rendered chat prompt takes (what ``complete`` checks against ``n_ctx``)."""
        return len(self._prompt_tokens(messages))

    def _prompt_tokens(self, messages: list[Message]) -> list[int]:
        rendered = self._formatter(messages=messages)
        tokens: list[int] = self._llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special,
                                                 special=True)
        return tokens

    def complete(self, messages: list[Message], *, timeout: float | None = None,
                 on_delta: OnDelta | None = None) -> Completion:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        tokens = self._prompt_tokens(messages)
        self._check_window(len(tokens))
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ProviderError(f"llama-cpp:{self.model_name}: timed out waiting for the model (other calls "
                                "hold it; the in-process models run one call at a time)", retryable=True)
        try:
            self._check_prompt_time(len(tokens), deadline)
            return self._generate(tokens, deadline, Deltas(on_delta) if on_delta is not None else None)
        finally:
            self._lock.release()

    def _check_window(self, prompt_tokens: int) -> None:
        reserved = min(self.max_output_tokens, self.n_ctx // 4)
        if prompt_tokens + reserved > self.n_ctx:
            raise ContextWindowExceeded(
                f"llama-cpp:{self.model_name}: the prompt has {prompt_tokens} tokens and {reserved} are reserved "
                f"for the reply, over the context window of {self.n_ctx}; shorten the history or raise "
                "backend_kwargs['n_ctx']", prompt_tokens=prompt_tokens, window=self.n_ctx)

    def _check_prompt_time(self, prompt_tokens: int, deadline: float) -> None:
        """Refuse a prompt that, at the measured speed, cannot even be read before the deadline."""
        speed = self.prompt_tokens_per_second
        left = deadline - time.monotonic()
        if left <= 0 or (speed and prompt_tokens / speed > 2 * left):
            raise ProviderError(f"llama-cpp:{self.model_name}: timed out: {prompt_tokens} prompt tokens need about "
                                f"{prompt_tokens / speed if speed else 0:.0f}s and {max(left, 0):.0f}s are left",
                                retryable=True)

    def _generate(self, tokens: list[int], deadline: float, deltas: Deltas | None = None) -> Completion:
        from llama_cpp import StoppingCriteriaList

        timed_out = threading.Event()

        def past_deadline(_ids: Any, _logits: Any) -> bool:
            if time.monotonic() > deadline:
                timed_out.set()
            return timed_out.is_set()

        start, before = time.monotonic(), self._perf()
        settings = {k: v for k, v in self._sampling.items() if k != "stop"}
        try:
            out = self._llama.create_completion(tokens, max_tokens=self._max_tokens(len(tokens)),
                                                stream=deltas is not None, stop=self._stops(),
                                                stopping_criteria=StoppingCriteriaList([past_deadline]), **settings)
            if deltas is not None:
                out = self._read_stream(out, deltas)
        except (ValueError, RuntimeError) as e:
            error = ProviderError(f"llama-cpp:{self.model_name}: generation failed: {e}", retryable=False)
            raise error from e
        usage = out.get("usage") or {}
        self._measure(before)
        if timed_out.is_set():
            error = ProviderError(f"llama-cpp:{self.model_name}: timed out after {time.monotonic() - start:.0f}s "
                                  f"({usage.get('completion_tokens', 0)} tokens written)", retryable=True)
            raise deltas.fail(error) if deltas is not None else error
        choice = out["choices"][0]
        return Completion(text=choice.get("text") or "", model=self.model_name,
                          input_tokens=int(usage.get("prompt_tokens") or len(tokens)),
                          output_tokens=int(usage.get("completion_tokens") or 0), cost_usd=0.0,
                          finish_reason=choice.get("finish_reason"))

    def _read_stream(self, chunks: Any, deltas: Deltas) -> dict[str, Any]:
        """llama-cpp-python's stream into ``deltas``, returned in the shape of its non-streamed result."""
        finish = None
        for chunk in chunks:
            choice = chunk["choices"][0]
            deltas(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
        text = deltas.text
        written = len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        return {"choices": [{"text": text, "finish_reason": finish}], "usage": {"completion_tokens": written}}

    def _max_tokens(self, prompt_tokens: int) -> int:
        return max(1, min(self.max_output_tokens, self.n_ctx - prompt_tokens))

    def _stops(self) -> list[str]:
        extra = self._sampling.get("stop") or []
        return [*self._formatter_stop, *([extra] if isinstance(extra, str) else extra)]

    @property
    def _formatter_stop(self) -> list[str]:
        return [self._formatter.eos_token] if self._formatter.eos_token else []

    def _perf(self) -> tuple[float, int, float, int] | None:
        """llama.cpp's own counters (prompt ms, prompt tokens, decode ms, decode tokens), cumulative; None if unreadable."""
        try:
            import llama_cpp

            data = llama_cpp.llama_perf_context(self._llama._ctx.ctx)
            return float(data.t_p_eval_ms), int(data.n_p_eval), float(data.t_eval_ms), int(data.n_eval)
        except Exception:  # private attributes of llama-cpp-python: measuring is a nicety, never a failure
            return None

    def _measure(self, before: tuple[float, int, float, int] | None) -> None:
        """Prompt and decode speed, from llama.cpp's counters (cached prefix tokens excluded)."""
        after = self._perf()
        if before is None or after is None:
            return
        p_ms, p_n, e_ms, e_n = (a - b for a, b in zip(after, before, strict=True))
        # The fastest speed seen, not the last: one call slowed by a busy machine (or a stopped
        # process) must not make every later prompt look unreadable and be refused up front.
        if p_n >= 64 and p_ms > 0:
            self.prompt_tokens_per_second = max(self.prompt_tokens_per_second or 0.0, 1000 * p_n / p_ms)
        if e_n >= 8 and e_ms > 0:
            self.output_tokens_per_second = max(self.output_tokens_per_second or 0.0, 1000 * e_n / e_ms)

    def close(self) -> None:
        with self._lock:
            llama, self._llama = self._llama, None
            if llama is not None:
                llama.close()
        if llama is not None:
            with _mapped_lock:
                key = str(self.path.resolve())
                _mapped[key] = _mapped.get(key, 1) - 1


def _chat_formatter(llama: Any) -> Any:
    """The model's own chat template (GGUF ``tokenizer.chat_template``), rendered as llama-cpp-python does."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ConfigError("this GGUF file has no chat template (tokenizer.chat_template); use an instruct/chat model")
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "ignore")
    bos_id = llama.token_bos()
    bos = llama.detokenize([bos_id], special=True).decode("utf-8", "ignore") if bos_id >= 0 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, stop_token_ids=[llama.token_eos()])


def _check_settings(n_ctx: int, max_output_tokens: int, sampling_args: dict[str, Any] | None) -> None:
    if int(n_ctx) < 256:
        raise ConfigError(f"n_ctx must be at least 256 tokens; got {n_ctx}")
    if not 1 <= int(max_output_tokens) < int(n_ctx):
        raise ConfigError(f"max_output_tokens must be between 1 and n_ctx - 1; got {max_output_tokens}")
    unknown = sorted(set(sampling_args or {}) - SAMPLING_KEYS)
    if unknown:
        raise ConfigError(f"llama-cpp sampling_args does not take {unknown}; allowed: {sorted(SAMPLING_KEYS)} "
                          "(the reply length is backend_kwargs['max_output_tokens'])")


def build_local(kwargs: dict[str, Any]) -> LlamaCppChatModel:
    """``build_chat_model("llama-cpp", kwargs)`` when no server URL is given; unknown kwargs are a ``ConfigError``."""
    unknown = sorted(set(kwargs) - OPTIONS)
    if unknown:
        raise ConfigError(f"backend 'llama-cpp' (in-process) does not take {unknown}; allowed: {sorted(OPTIONS)}. "
                          "For a llama.cpp server give base_url (or LLAMACPP_BASE_URL)")
    options = dict(kwargs)
    name = options.pop("model_name", None) or options.pop("model", None)
    options.pop("model", None)
    if not name or not isinstance(name, str):
        raise ConfigError(f"backend 'llama-cpp' needs model_name, e.g. {{'model_name': '{next(iter(KNOWN_MODELS))}'}}")
    return LlamaCppChatModel(name, **options)
