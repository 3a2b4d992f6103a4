"""Errors explained to the user without a traceback, each with its exit code.

Exit codes: 0 ok, 1 failed while running, 2 bad input, 3 weights or network (a cluster included),
4 nothing fits, 75 another measurement holds the machine (wait False: --no-wait), 130 interrupted.

A message names the options it is about by their field (opt("labels") writes `labels`): an exception's str() reads
labels, the CLI shows --labels (report.flags maps each field to its flag), so the library never speaks of flags.
Texts kept in values (a candidate's reasons, notes) keep the backquoted field, readable as it is.
"""

from __future__ import annotations

import re
from typing import Callable

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WEIGHTS = 3
EXIT_NO_FIT = 4
EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: a temporary failure, try again later
EXIT_INTERRUPTED = 130


_FIELD = "`"  # brackets a field name inside a text until it is rendered: readable as it is (`labels`)
_FIELD_PATTERN = _FIELD + r"(\w+)" + _FIELD  # compiled (and cached by re) on first use, not at every start-up


def opt(name: str) -> str:
    """A request field named in an error message: rendered as `name` for Python callers, as its flag by the CLI."""
    return f"{_FIELD}{name}{_FIELD}"


def named(text: str, name_of: Callable[[str], str] = str) -> str:
    """`text` with each opt() in it written by name_of (the field's own name by default)."""
    return re.sub(_FIELD_PATTERN, lambda m: name_of(m.group(1)), text)


class VischooseError(Exception):
    """Explained to the user without a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field  # the request field it is about, where there is one

    def __str__(self) -> str:
        return named(self.message)

    def render(self, name_of: Callable[[str], str] = str) -> tuple[str, str | None]:
        """(message, hint) with their field names written by name_of: the CLI passes the flag of each field."""
        return named(self.message, name_of), None if self.hint is None else named(self.hint, name_of)


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
    """A runtime (or another option's value, e.g. the server scenario's load generator) that is not installed or
    cannot run on this machine: the pip command that adds it."""

    def __init__(self, runtime: str, why: str, extra: str | None, field: str = "runtime") -> None:
        self.runtime, self.why, self.extra = runtime, why, extra
        hint = f"pip install 'vischoose[{extra}]'" if extra else "Reinstall vischoose: pip install vischoose"
        super().__init__(f"{opt(field)} {runtime} is not available here: {why}.", hint=hint, field=field)


class WeightsUnavailableError(VischooseError):
    """Weights that cannot be had: offline and not cached, hub unreachable, repo or file missing."""

    exit_code = EXIT_WEIGHTS


class CorruptWeightsError(WeightsUnavailableError):
    """A cached or local weights file that is truncated, corrupt or unsafe to load."""


class ClusterError(VischooseError):
    """A Ray cluster that cannot be reached, or that answered something other than Ray (network: exit 3)."""

    exit_code = EXIT_WEIGHTS


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
    """wait is False (--no-wait), and another vischoose process is timing on this machine (measure.lock holds it)."""

    exit_code = EXIT_BUSY

    def __init__(self, holder: str | None, path: str) -> None:
        self.holder, self.path = holder, path
        who = f" ({holder})" if holder else ""
        super().__init__(f"Another vischoose measurement is running on this machine{who}, and {opt('wait')} said not "
                         "to wait for it: nothing was timed.",
                         hint=f"Wait for it (leave {opt('wait')} at its default), or run again later (the lock is "
                         f"{path}).", field="wait")
