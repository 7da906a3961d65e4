"""DeepRecall: answer questions over the vector store you already have.

    from deeprecall import DeepRecall, DeepRecallConfig
    from deeprecall.vectorstores import ChromaStore

    with DeepRecall(vectorstore=ChromaStore("docs"), config=DeepRecallConfig(...)) as engine:
        result = engine.query("question", filters={"tenant": "acme"})
"""

from deeprecall._version import __version__ as __version__
from deeprecall.config import DeepRecallConfig
from deeprecall.engine import DeepRecall
from deeprecall.errors import (
    ConfigError,
    DeepRecallError,
    FilterError,
    MissingAPIKeyError,
    MissingDependencyError,
    ProviderError,
    SandboxError,
    VectorStoreError,
)
from deeprecall.results import ModelUsage, QueryResult, Source, Step, Usage

__all__ = [
    "ConfigError",
    "DeepRecall",
    "DeepRecallConfig",
    "DeepRecallError",
    "FilterError",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelUsage",
    "ProviderError",
    "QueryResult",
    "SandboxError",
    "Source",
    "Step",
    "Usage",
    "VectorStoreError",
]
