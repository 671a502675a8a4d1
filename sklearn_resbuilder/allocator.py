"""glibc's malloc, tuned for training on the CPU while ``fit`` runs.

Every training step allocates and frees the same activations (6 MB each for a
16-wide block on 128 MNIST images). glibc returns freed memory at the top of
its heap to the kernel once more than ``M_TRIM_THRESHOLD`` is free (at most
64 MB with its dynamic default), so the next step takes it back page by page:
measured on the demo's network, 4,400-6,300 page faults and 15-21 ms of kernel
time per step, and a step 1.21x (1 thread) to 1.23x (2 threads) slower than
with the memory kept (docs/benchmarks.md, "Throughput"). PyTorch's CPU tuning
guide recommends jemalloc or tcmalloc for the same reason; they need
``LD_PRELOAD``, which a library cannot set, but glibc's own thresholds can be
raised from inside the process.

:func:`training_malloc` keeps freed memory in the heap during ``fit``; on the
way out it returns what is free to the kernel (``malloc_trim``) and leaves
thresholds of 32 MB (mmap) and 128 MB (trim) in place: glibc cannot switch its
dynamic thresholds back on, and these are about where they settle in a
process that handles large arrays. Nothing happens where the C library is not
glibc, when you set any ``MALLOC_*`` environment variable yourself, or with
jemalloc or tcmalloc preloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: While a fit runs: requests below this come from the heap, and this much may
#: stay free in it before glibc gives memory back.
TRAINING_THRESHOLD = 1 << 30
#: What is left after the fit (see the module docstring).
AFTER_MMAP_THRESHOLD = 32 << 20
AFTER_TRIM_THRESHOLD = 128 << 20

_lock = threading.Lock()
_active = 0


def _glibc():
    """The process's glibc as a ctypes library, or None (other C library, user's tuning)."""
    if any(k.startswith("MALLOC_") for k in os.environ):
        return None  # the user tuned malloc: theirs to keep
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload or "tcmalloc" in preload or "mimalloc" in preload:
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def training_malloc():
    """Keep freed memory in glibc's heap while the body runs (nested and
    concurrent fits in threads share one setting; the last one out trims)."""
    global _active
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        if _active == 0:
            libc.mallopt(M_MMAP_THRESHOLD, TRAINING_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, TRAINING_THRESHOLD)
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(M_MMAP_THRESHOLD, AFTER_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, AFTER_TRIM_THRESHOLD)
                libc.malloc_trim(0)
