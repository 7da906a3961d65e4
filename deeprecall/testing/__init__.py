"""Test helpers shipped with DeepRecall: a scripted LLM server for your own tests."""
