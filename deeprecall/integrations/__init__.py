"""Bridges from DeepRecall's query events to other frameworks' tools (each module imports its SDK lazily)."""
