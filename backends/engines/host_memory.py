"""Training on a CPU: glibc's malloc keeps freed memory for the next step.

By default glibc gives every large block (above a threshold that grows with use, to at
most 32 MiB) its own ``mmap`` and unmaps it when it is freed, and returns the top of its
heap to the kernel once more than twice that is free. A training step frees its
activations and allocates the same sizes again in the next step (the attention scores of
MiniLM at batch 16 and 256 tokens are 50 MiB each, above any threshold), so every step
the kernel maps them again and zeroes every page on first touch: 40 to 75 thousand page
faults a step here, a few percent of the step in the kernel and more in the cache misses
after it. ``reuse_freed_memory()`` turns both off while a CPU training loop runs
(``M_MMAP_MAX`` 0: large blocks come from the heap; ``M_TRIM_THRESHOLD`` 1 GiB: the heap
keeps what is freed), then restores glibc's defaults and gives the free memory back
(``malloc_trim``). The process's peak memory is its largest step's, as before, plus what
fragmentation holds.

Only the allocator's policy changes, never a value computed: stage keys do not include it.
Elsewhere than glibc (musl, macOS) it does nothing; ``XSTILTS_REUSE_FREED_MEMORY=0`` turns
it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

# mallopt parameters (malloc.h) and glibc's defaults for them
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_UP_TO = 1 << 30  # bytes of free heap kept before any is returned


@functools.cache
def _glibc():
    """glibc's ``mallopt`` and ``malloc_trim`` (the process's own C library, looked up once),
    or None where that is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


def enabled() -> bool:
    return os.environ.get("XSTILTS_REUSE_FREED_MEMORY", "1").strip().lower() not in ("0", "false", "no")


@contextlib.contextmanager
def reuse_freed_memory():
    """While the block runs, freed memory stays with the process for reuse (see the module's
    text). Yields True when the policy was changed."""
    libc = _glibc() if enabled() else None
    changed = libc is not None and bool(libc.mallopt(M_MMAP_MAX, 0)) \
        and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
    try:
        yield changed
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
