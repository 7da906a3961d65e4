"""``python -m benchmarks.quality``: see run.py."""

from benchmarks.quality.run import main

raise SystemExit(main())
