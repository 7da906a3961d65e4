"""The rlms adapter: what DeepRecall adds to rlms's loop, checked without mocks."""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_rlms_through_deeprecall_does_not_load_a_dotenv_file(tmp_path):
    """rlms calls load_dotenv() on import; DeepRecall must not let it change the host's environment."""
    (tmp_path / ".env").write_text("DEEPRECALL_DOTENV_PROBE=leaked\n")
    code = ("import os, dotenv, deeprecall.engine.rlm_adapter\n"
            "assert dotenv.load_dotenv is not None\n"
            "print(os.environ.get('DEEPRECALL_DOTENV_PROBE', 'absent'))")
    env = {k: v for k, v in os.environ.items() if k != "DEEPRECALL_DOTENV_PROBE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "absent"


def test_system_prompt_keeps_rlms_prompt_and_teaches_search_db():
    from rlm.utils.prompts import RLM_SYSTEM_PROMPT

    from deeprecall.engine.rlm_adapter import SYSTEM_PROMPT

    assert SYSTEM_PROMPT.startswith(RLM_SYSTEM_PROMPT)
    rendered = SYSTEM_PROMPT.format(custom_tools_section="")
    assert "search_db(query: str, top_k: int = 5, filters: dict | None = None)" in rendered
    assert 'answer["ready"] = True' in rendered and "FINAL(" not in rendered


def test_code_blocks_runs_bare_fences_only_when_they_are_python_that_does_something():
    from deeprecall.engine.rlm_adapter import code_blocks

    bare = 'Searching.\n```\nhits = search_db("Fobilt founder")\nprint(hits)\n```'
    assert code_blocks(bare) == ['hits = search_db("Fobilt founder")\nprint(hits)']
    assert code_blocks("The answer:\n```\nVecer\n```") == []  # a quoted name, not code
    assert code_blocks("```\nThe river Vecer (founded 1667).\n```") == []  # prose does not compile
    both = '```repl\nx = 1\n```\n```\ny = 2\n```'
    assert code_blocks(both) == ["x = 1"]  # an explicit repl block wins
