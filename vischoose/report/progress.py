"""Progress on stderr: a measurement's phases and an evaluation's bar. A module of its own, so a command that only
might show progress (recommend, which measures only when asked) does not import the profile tables to get it."""

from __future__ import annotations


class ProfileProgress:
    """Progress on stderr (model, phase, elapsed): one updating line on a terminal, a line per phase otherwise."""

    def __init__(self) -> None:
        import sys

        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""

    def __call__(self, model: str, what: str, elapsed_s: float) -> None:
        """Show what the profiler is doing."""
        text = f"{model}: {what} ({elapsed_s:.0f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif f"{model}: {what.split(':')[0]}" != self.last:
            self.stream.write(text + "\n")
        self.last = f"{model}: {what.split(':')[0]}"
        self.stream.flush()

    def close(self) -> None:
        """Clear the progress line."""
        if self.tty and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.last = ""

    def __enter__(self) -> "ProfileProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressBar:
    """A one-line progress bar with a rate on stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, width: int = 30) -> None:
        import sys
        import time

        self.label, self.width, self.stream = label, width, sys.stderr
        self.enabled = self.stream.isatty()
        self.start, self.drawn = time.perf_counter(), False

    def __call__(self, done: int, total: int) -> None:
        """Redraw for `done` of `total` items."""
        import time

        if not self.enabled or total <= 0:
            return
        if done == 0:  # the work starts now (model loading is over): time the rate from here
            self.start = time.perf_counter()
        filled = int(self.width * done / total)
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                          f"{rate:,.1f} img/s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
