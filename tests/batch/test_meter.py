"""The batch's progress: tqdm's bar on a terminal, plain lines in a pipe, nothing when off."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import termios

from deeprecall.batch.meter import BatchMeter


def test_on_a_terminal_it_draws_a_tqdm_bar() -> None:
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    with os.fdopen(secondary, "w") as terminal:
        meter = BatchMeter(3, stream=terminal)
        for error in (None, "llm_error", None):
            meter.update(error)
        meter.close()
        terminal.flush()
        shown = read_all(main)
    os.close(main)
    assert "3/3" in shown and "100%" in shown and "errors=1" in shown


def test_in_a_pipe_it_writes_plain_lines_and_the_last_one_always() -> None:
    stream = io.StringIO()
    meter = BatchMeter(3, stream=stream)
    for error in (None, "llm_error", None):
        meter.update(error)
    assert stream.getvalue().splitlines()[-1].startswith("batch: 3/3 answered, 1 errors, ")
    quiet = io.StringIO()
    off = BatchMeter(3, enabled=False, stream=quiet)
    off.update(None)
    assert quiet.getvalue() == ""


def read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode()
