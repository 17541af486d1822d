"""The old name of ``bench.dialogue_vs_echo``; ``--dialogues`` still works there.

    python -m bench.dialogue_latency [--dialogues 1,10,50] ...

runs ``python -m bench.dialogue_vs_echo`` with the same arguments.
"""

from __future__ import annotations

import sys

from bench.dialogue_vs_echo import main

if __name__ == "__main__":
    sys.exit(main())
