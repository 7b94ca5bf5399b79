"""glibc's allocator keeps freed memory for reuse in ``fewshot`` and the processes it starts,
unless ``FEWSHOT_MALLOC=system``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fewshot_cli import allocator

LINUX_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not LINUX_GLIBC, reason="glibc's mallopt: Linux with glibc only")
def test_settings_take_and_reach_child_processes(monkeypatch):
    for name in [*allocator.SETTINGS.values(), "FEWSHOT_MALLOC"]:
        monkeypatch.delenv(name, raising=False)
    assert allocator.reuse_freed_memory()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_TRIM_THRESHOLD_'), "
         "os.environ.get('MALLOC_MMAP_THRESHOLD_'))"], capture_output=True, text=True, check=True)
    assert child.stdout.split() == [str(allocator.THRESHOLD)] * 2


def test_fewshot_malloc_system_keeps_glibc_defaults(monkeypatch):
    for name in allocator.SETTINGS.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEWSHOT_MALLOC", "system")
    assert not allocator.reuse_freed_memory()
    assert not any(name in os.environ for name in allocator.SETTINGS.values())
