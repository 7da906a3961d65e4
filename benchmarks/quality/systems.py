"""The systems compared, all on the same store and the same model configuration.

- ``rag``: one-shot retrieval: the question's top-k hits in one prompt, one call to a ChatModel built by
  ``deeprecall.providers.build_chat_model`` from the same backend settings as DeepRecall's root. It is asked to
  cite the ids it used; if it cites none of the hits it was given, all of them count as its sources (as
  DeepRecall's do when the model cites nothing).
- ``deeprecall``: the engine with the same model as root and as ``llm_query``'s sub-model.
- ``deeprecall-strong``: a stronger root (``--strong-*``) with the base model as its sub-model.

A system spec on the command line is ``NAME[:KEY=VALUE,KEY=VALUE...]``; for DeepRecall systems the pairs are
DeepRecallConfig fields (dotted keys reach into dict fields: ``environment_kwargs.cell_timeout=60``), for
``rag`` only ``top_k``. Values are read as JSON when they parse (6, true, null, [..]), else as strings.
Every spec is checked when it is built, before any question runs: an unknown key is an error.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from deeprecall import ConfigError, DeepRecall, DeepRecallConfig, ProviderError
from deeprecall.providers import ChatModel, build_chat_model
from deeprecall.vectorstores import VectorStore

RAG_KEYS = {"top_k"}
DEEPRECALL_SYSTEMS = ("deeprecall", "deeprecall-strong")
RAG_SYSTEM = """Answer the question using only the documents below.
If the documents do not contain the answer, the answer is: not in the documents.
Reply in exactly this form:
Answer: <the short answer only: a name, a number, or a comma-separated list>
Sources: <the ids of the documents you used, comma-separated>"""
_PAIR_START = re.compile(r",(?=[A-Za-z_][\w.]*=)")


@dataclass
class Outcome:
    """What one system did for one question, in the shape every system shares."""

    answer: str = ""
    sources: list[str] = field(default_factory=list)
    cited: bool | None = None  # rag: did the model cite ids (else all hits count); deeprecall: not visible
    llm_calls: int = 0
    tokens: int = 0
    error: str | None = None
    error_message: str | None = None
    steps: int = 0
    grounded: bool | None = None  # deeprecall: result.grounded
    transcript: list[dict[str, Any]] = field(default_factory=list)  # deeprecall: each root turn, to read failure modes


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(text: str) -> dict[str, Any]:
    """``a=1,b.c=x`` -> {"a": 1, "b.c": "x"}; a comma only splits where a new ``key=`` starts."""
    pairs: dict[str, Any] = {}
    for part in _PAIR_START.split(text) if text else []:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {part!r}")
        pairs[key.strip()] = parse_value(value.strip())
    return pairs


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Config values with ``overrides`` set; dotted keys set one entry inside a dict field."""
    out = json.loads(json.dumps(values, default=str))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if not rest:
            out[head] = value
            continue
        if not isinstance(out.get(head), dict):
            raise ConfigError(f"{key!r}: {head!r} is not a dict setting of DeepRecallConfig")
        out[head][rest] = value
    return out


@dataclass
class SystemSpec:
    """One named system to run: ``label`` is what the table shows (the spec as typed)."""

    label: str
    kind: str
    config: DeepRecallConfig
    top_k: int = 5


def build_spec(text: str, base: DeepRecallConfig, engine: dict[str, Any], strong: DeepRecallConfig | None) -> SystemSpec:
    """Check one ``--system`` spec now, so a typo fails before an hour of questions, not after."""
    name, _, rest = text.partition(":")
    overrides = parse_pairs(rest)
    if name == "rag":
        unknown = sorted(set(overrides) - RAG_KEYS)
        if unknown:
            raise ConfigError(f"system {text!r}: rag takes only {sorted(RAG_KEYS)}; unknown {unknown}")
        return SystemSpec(text, "rag", base, int(overrides.get("top_k", base.top_k)))
    if name not in DEEPRECALL_SYSTEMS:
        raise ConfigError(f"unknown system {name!r}; choose rag, deeprecall, or deeprecall-strong (with --strong-*)")
    if name == "deeprecall-strong" and strong is None:
        raise ConfigError("system 'deeprecall-strong' needs a second model: --strong-config or --strong-backend/--strong-model")
    values = base.model_dump()
    # llm_query runs on the same model as the root, as its own instance: the embedded llama-cpp backend keeps
    # a KV cache per instance, so sharing the root's would re-read the root prompt after every sub-call.
    # hybrid already names its own executor.
    same = [] if base.backend == "hybrid" else [base.backend]
    values.update(other_backends=same, other_backend_kwargs=[base.backend_kwargs] if same else [])
    if name == "deeprecall-strong" and strong is not None:
        values.update(backend=strong.backend, backend_kwargs=strong.backend_kwargs,
                      other_backends=[base.backend], other_backend_kwargs=[base.backend_kwargs])
    try:
        config = DeepRecallConfig.build(**apply_overrides(values, {**engine, **overrides}))
    except ConfigError as e:
        raise ConfigError(f"system {text!r}: {e}") from None
    return SystemSpec(text, "deeprecall", config, config.top_k)


class RagSystem:
    """One-shot RAG: retrieve the question's top-k, one prompt, one call."""

    def __init__(self, spec: SystemSpec, store: VectorStore, max_seconds: float | None) -> None:
        self.store, self.top_k, self.max_seconds = store, spec.top_k, max_seconds
        self.model: ChatModel = build_chat_model(spec.config.backend, dict(spec.config.backend_kwargs))

    def ask(self, question: str) -> Outcome:
        hits = self.store.search(question, top_k=self.top_k)
        documents = "\n".join(f"[{h.id}] {h.content}" for h in hits)
        messages = [{"role": "system", "content": RAG_SYSTEM},
                    {"role": "user", "content": f"Documents:\n{documents}\n\nQuestion: {question}"}]
        completion = self.model.complete(messages, timeout=self.max_seconds)
        answer, cited = parse_rag_reply(completion.text, [h.id for h in hits])
        return Outcome(answer=answer, sources=cited or [h.id for h in hits], cited=bool(cited), llm_calls=1,
                       tokens=completion.input_tokens + completion.output_tokens, steps=1)

    def close(self) -> None:
        self.model.close()


def parse_rag_reply(text: str, hit_ids: list[str]) -> tuple[str, list[str]]:
    """(answer, cited ids among the hits). The answer is the text after ``Answer:`` (else the whole reply)
    up to ``Sources:``; ids the model was not given are ignored."""
    body, _, sources = _split_sources(text)
    match = re.search(r"(?is)\banswer\s*:\s*(.*)", body)
    answer = (match.group(1) if match else body).strip()
    cited = [i for i in hit_ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", sources)]
    return answer, cited


def _split_sources(text: str) -> tuple[str, str, str]:
    parts = re.split(r"(?i)\b(sources?\s*:)", text, maxsplit=1)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (text, "", "")


class DeepRecallSystem:
    """The engine as a user runs it; ``hint`` is appended to every question when set."""

    def __init__(self, spec: SystemSpec, store: VectorStore, hint: str | None = None) -> None:
        self.engine = DeepRecall(vectorstore=store, config=spec.config)
        self.engine.warm()  # worker start-up is not the first question's time
        self.hint = hint

    def ask(self, question: str) -> Outcome:
        result = self.engine.query(f"{question}\n{self.hint}" if self.hint else question)
        return Outcome(answer=result.answer, sources=[s.id for s in result.sources],
                       llm_calls=result.usage.root_calls + result.usage.sub_calls, tokens=result.usage.total_tokens,
                       error=result.error, error_message=result.error_message, steps=len(result.steps),
                       grounded=result.grounded, transcript=[
                           {"response": s.response, "output": s.output[:3000], "searches": [c.query for c in s.searches]}
                           for s in result.steps])

    def close(self) -> None:
        self.engine.close()


def open_system(spec: SystemSpec, store: VectorStore, max_seconds: float | None,
                hint: str | None) -> RagSystem | DeepRecallSystem:
    if spec.kind == "rag":
        return RagSystem(spec, store, max_seconds)
    return DeepRecallSystem(spec, store, hint)


def timed(system: RagSystem | DeepRecallSystem, question: str) -> tuple[Outcome, float]:
    """Ask, never raise: an exception is a failure cause (``exception:Type``) like any ``result.error``;
    a provider error in rag is ``llm_error``, the name DeepRecall gives it."""
    started = time.monotonic()
    try:
        outcome = system.ask(question)
    except ProviderError as e:  # what DeepRecall reports as llm_error, so the failure columns compare
        outcome = Outcome(error="llm_error", error_message=str(e)[:500])
    except Exception as e:
        outcome = Outcome(error=f"exception:{type(e).__name__}", error_message=str(e)[:500])
    return outcome, time.monotonic() - started
