"""Errors explained to the user without a traceback, each with its exit code.

Exit codes: 0 ok, 1 failed while running, 2 bad input, 3 weights or network,
4 nothing fits, 75 another measurement holds the machine (--no-wait), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WEIGHTS = 3
EXIT_NO_FIT = 4
EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: a temporary failure, try again later
EXIT_INTERRUPTED = 130


class VischooseError(Exception):
    """Explained to the user without a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(VischooseError):
    """Bad input: a model name, preset, image, option value or file the user gave."""

    exit_code = EXIT_USAGE


class UnknownModelError(UsageError):
    """A model reference that is neither a catalog alias, a timm name, a hub id nor a model folder."""

    def __init__(self, model: str, suggestions: list[str] | None = None) -> None:
        self.model = model
        self.suggestions = list(suggestions or [])
        message = f"Unknown model '{model}'."
        if self.suggestions:
            quoted = ", ".join(f"'{s}'" for s in self.suggestions)
            message += f" Did you mean {quoted}?"
        super().__init__(message, hint="vischoose models lists the catalog; any timm name (arch.tag), "
                         "hf-hub:org/name or a folder with config.json + model.safetensors also works.")


class PresetError(UsageError):
    """A preset that cannot be found or does not validate."""


class ImageError(UsageError):
    """An image that cannot be read or decoded."""

    def __init__(self, path: str, reason: str, hint: str | None = None) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}", hint=hint)


class DatasetError(UsageError):
    """A labelled data set that cannot be used for evaluation."""


class MissingExtraError(UsageError):
    """A runtime that is not installed (or cannot run on this machine): the pip command that adds it."""

    def __init__(self, runtime: str, why: str, extra: str | None) -> None:
        self.runtime, self.why, self.extra = runtime, why, extra
        hint = f"pip install 'vischoose[{extra}]'" if extra else "Reinstall vischoose: pip install vischoose"
        super().__init__(f"--runtime {runtime} is not available here: {why}.", hint=hint)


class WeightsUnavailableError(VischooseError):
    """Weights that cannot be had: offline and not cached, hub unreachable, repo or file missing."""

    exit_code = EXIT_WEIGHTS


class CorruptWeightsError(WeightsUnavailableError):
    """A cached or local weights file that is truncated, corrupt or unsafe to load."""


class ProfilingError(VischooseError):
    """A measurement that failed while running (out of memory, crash, device missing)."""

    exit_code = EXIT_FAILED


class DeployError(VischooseError):
    """An export or int8 quantization that failed, or produced a graph that disagrees with the model."""

    exit_code = EXIT_FAILED


class StoreError(VischooseError):
    """The results database cannot be opened, read or written."""

    exit_code = EXIT_FAILED


class NoModelFitsError(VischooseError):
    """The constraints rule out every candidate."""

    exit_code = EXIT_NO_FIT


class MeasurementBusyError(VischooseError):
    """--no-wait, and another vischoose process is timing on this machine (measure.lock holds it)."""

    exit_code = EXIT_BUSY

    def __init__(self, holder: str | None, path: str) -> None:
        self.holder, self.path = holder, path
        who = f" ({holder})" if holder else ""
        super().__init__(f"Another vischoose measurement is running on this machine{who}; --no-wait was given, so "
                         "nothing was timed.", hint=f"Run again without --no-wait to wait for it (the lock is {path}).")


class Interrupted(VischooseError):
    """The user pressed Ctrl-C; finished results are kept."""

    exit_code = EXIT_INTERRUPTED
