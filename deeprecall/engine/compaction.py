"""Fitting a root history into a model's context window.

rlms appends every turn (reply plus up to 20,000 characters of REPL output per
block) to the root history, so a small model's window (16k tokens) fills in a
few turns, and the provider then rejects every further call. When a backend
raises ``ContextWindowExceeded`` the engine sends a compacted copy instead:
the system prompt and the opening messages (the question and its first hits)
stay, the latest turns stay, long REPL outputs are cut, and what falls in
between is replaced by one note. The model's REPL variables are untouched, so
nothing it computed is lost, only old transcript.
"""

from __future__ import annotations

from deeprecall.providers.base import Message

HEAD = 3  # system, the question, the first turn (with the question's hits)
OUTPUT_CHARS = 1_500
DROPPED = ("[{n} earlier messages were dropped to fit the model's context window. Your REPL variables "
           "still hold everything computed so far; print what you need again.]")


def compact(messages: list[Message], target_chars: int) -> list[Message]:
    """A copy of ``messages`` of at most about ``target_chars`` characters of content.

    Keeps the head and as many of the latest messages as fit (the last one always),
    with long tool outputs cut to their start and end. Roles still alternate:
    the note sits where the dropped messages were, as a user message.
    """
    head = [dict(m) for m in messages[:HEAD]]
    tail_source = messages[HEAD:]
    budget = target_chars - sum(len(m.get("content", "")) for m in head)
    tail: list[Message] = []
    for message in reversed(tail_source):
        cut = _cut(message)
        if tail and budget - len(cut["content"]) < 0:
            break
        tail.insert(0, cut)
        budget -= len(cut["content"])
    dropped = len(tail_source) - len(tail)
    if dropped:
        if tail and tail[0].get("role") == "user":
            tail[0] = {**tail[0], "content": DROPPED.format(n=dropped) + "\n\n" + tail[0]["content"]}
        else:
            tail.insert(0, {"role": "user", "content": DROPPED.format(n=dropped)})
    return head + tail


def _cut(message: Message) -> Message:
    content = message.get("content", "")
    if message.get("role") != "user" or len(content) <= OUTPUT_CHARS:
        return dict(message)
    half = OUTPUT_CHARS // 2
    return {**message, "content": f"{content[:half]}\n... [{len(content) - OUTPUT_CHARS} characters cut] ...\n"
                                  f"{content[-half:]}"}


def target_for(messages: list[Message], prompt_tokens: int | None, window: int | None) -> int:
    """How many characters to aim for, from the rejected prompt's size in tokens and the
    window, when the backend said them; else half the current size."""
    chars = sum(len(m.get("content", "")) for m in messages)
    if prompt_tokens and window and prompt_tokens > 0:
        return int(chars * (window / prompt_tokens) * 0.75)
    return chars // 2
