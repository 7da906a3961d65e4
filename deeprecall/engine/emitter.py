"""The one place a query's events are made and handed to its subscribers.

Why a class of its own: ``QueryRun`` and the rlms adapter say *what* happened;
this stamps each event with the query's id, its time and its step, and
delivers it. With no subscriber, ``emit`` returns before building anything, so
a plain ``query()`` pays one attribute test per event site and nothing else.

Delivery is serialised under a lock: the model's code calls tools from several
threads and batches run in parallel, but a subscriber sees one query's events
one at a time, in the order of their ``t``. A subscriber that raises is logged
(its exception type only: messages may quote prompts) and dropped for the rest
of the query; the query goes on.

A child query (``rlm_query`` under ``max_depth > 1``) gets ``parent.child()``: its own id and clock, the
parent's subscribers and lock (a tree's events reach a subscriber one at a time, never two at once), and
``parent_query_id``/``depth`` stamped on every event. Children never stream: their replies are not the answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from deeprecall.events import EventSink

log = logging.getLogger("deeprecall")


class Emitter:
    """One query's event source. ``step`` is read at each event (the run's current turn)."""

    def __init__(self, sinks: Iterable[EventSink], *, step: Callable[[], int], started: float | None = None) -> None:
        self.query_id = uuid.uuid4().hex
        self.started = time.monotonic() if started is None else started
        self._sinks = list(sinks)
        self._step = step
        self._lock = threading.Lock()
        self.depth = 1
        self._tree: dict[str, Any] = {}  # parent_query_id and depth, on a child's events

    def child(self, *, step: Callable[[], int], started: float) -> Emitter:
        """The emitter of a child query: the same subscribers (a sink dropped in one query of the tree is
        dropped in all) and the same delivery lock, its own ``query_id``."""
        emitter = Emitter((), step=step, started=started)
        emitter._sinks, emitter._lock = self._sinks, self._lock
        emitter.depth = self.depth + 1
        emitter._tree = {"parent_query_id": self.query_id, "depth": emitter.depth}
        return emitter

    @property
    def active(self) -> bool:
        """True while someone listens: callers skip work that only events need (deltas, previews)."""
        return bool(self._sinks)

    @property
    def wants_deltas(self) -> bool:
        """True while a subscriber wants ``ModelDelta`` events: only then is the root model asked to
        stream. A subscriber says it needs none with ``wants_deltas = False`` (trace files, spans and
        line-per-step logs record whole turns, and a streamed call costs more than a plain one); it
        still sees the deltas when another subscriber of the query makes the model stream."""
        return not self._tree and any(getattr(sink, "wants_deltas", True) for sink in self._sinks)

    def emit(self, cls: type[Any], **fields: Any) -> None:
        if not self._sinks:
            return
        with self._lock:
            fields.setdefault("step", self._step())
            fields.update(self._tree)
            # Built without validation: every field comes from the engine's own typed values, and validating
            # (a turn's whole prompt, say) cost more than the rest of an event's delivery.
            event = cls.model_construct(query_id=self.query_id, t=time.monotonic() - self.started, **fields)
            for sink in list(self._sinks):
                try:
                    sink(event)
                except Exception as e:  # a broken subscriber must not break the query
                    self._sinks.remove(sink)
                    log.warning("event subscriber %s raised %s on a %s event; it gets no more events of query %s",
                                _name(sink), type(e).__name__, event.type, self.query_id)


def _name(sink: EventSink) -> str:
    return str(getattr(sink, "__qualname__", None) or type(sink).__qualname__)
