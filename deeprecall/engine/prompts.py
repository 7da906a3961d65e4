"""DeepRecall's addition to rlms's system prompt: the store, search_db, sources.

rlms's own prompt (``RLM_SYSTEM_PROMPT``) already teaches the REPL, llm_query
and the ``answer`` dict; this text only adds what is specific to retrieval.
It goes through ``str.format`` in rlms, hence the doubled braces.
"""

SEARCH_GUIDE = """

You answer a question from a document store that you can reach only from the REPL:
- `search_db(query: str, top_k: int = 5, filters: dict | None = None) -> list[dict]`: semantic search. Each hit is a dict with "id", "content", "metadata" and "score" (higher is closer).
  `filters` narrows by metadata: {{"field": value}}, {{"field": {{"$in": [...]}}}}, "$ne", "$gt", "$gte", "$lt", "$lte", and {{"$and": [...]}} / {{"$or": [...]}}. The host may already scope every search; your filters can only narrow that scope.
- `context` is a dict with the question, a description of the store (kind, size, metadata keys) and the default top_k.
- A failing tool raises `ToolError` with the reason.

How to work: search with a few phrasings, print short previews of the hits, use `llm_query` / `llm_query_batched` to read or check long hits, and search again for what is still missing. Answer only from what the documents say; if they do not contain the answer, say so.
Submit from a ```repl``` block: set answer["content"] to the answer, optionally answer["sources"] to the list of hit ids you relied on, then answer["ready"] = True.
"""
