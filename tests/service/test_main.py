"""The process entry point's own tuning (in a child process: it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

FREEZE_CHECK = """
import gc, weakref
from service.__main__ import freeze_startup_objects

class Node:
    pass

freeze_startup_objects()
frozen = gc.get_freeze_count()
assert frozen > 1000, frozen  # the imported modules' objects at least
cycle = Node()
cycle.self = cycle
alive = weakref.ref(cycle)
del cycle
gc.collect()
assert alive() is None, "garbage made after the freeze must still be collected"
assert gc.get_freeze_count() == frozen
print("ok")
"""


def test_start_up_objects_are_frozen_and_later_garbage_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", FREEZE_CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
