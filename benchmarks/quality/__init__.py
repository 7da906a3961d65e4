"""The quality benchmark: DeepRecall against one-shot RAG over a generated fictional world (README.md)."""
