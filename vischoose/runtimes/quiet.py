"""Keep what the runtime libraries print to themselves off the CLI's stderr, which holds only vischoose's progress
and its one-line errors: ExecuTorch's native log (`[cpuinfo_utils.cpp:71] Reading file ...`, written straight to
file descriptor 2 when its thread pool starts) and torch's `_pytree` deprecation warning logged when executorch
registers its enums. VISCHOOSE_DEBUG=1 lets everything through."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

DEBUG_ENV = "VISCHOOSE_DEBUG"
LIBRARY_LOGGERS = ("torch.utils._pytree",)  # Python loggers whose warnings concern the library's authors, not users


def debugging() -> bool:
    """Whether VISCHOOSE_DEBUG=1 asks for everything the libraries say."""
    return os.environ.get(DEBUG_ENV) == "1"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop what native code writes to file descriptor 2 inside the block, Python warnings raised in it, and the
    library loggers' warnings.

    Only what runs in the block is dropped: call the runtime's own loading and start-up in it, never vischoose's
    progress. Python's sys.stderr is flushed on both sides, so nothing of ours written before is lost.
    """
    import logging
    import tempfile
    import warnings

    if debugging():
        yield
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library warnings (torch.export's, torchao's) are not the user's to act on
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
