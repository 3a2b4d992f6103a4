"""Accuracy against speed: a scatter with the Pareto front (matplotlib, Agg, imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vischoose.errors import UsageError
from vischoose.records import Profile

FORMATS = (".png", ".svg")
AXES = ("throughput", "latency")
# conditions that, when they differ between points, are written into the labels instead of the subtitle
_CONDITIONS = ("machine", "device", "runtime", "dtype", "threads", "layout", "compiled", "batch_size", "input_size",
               "torch_version", "timm_version")


@dataclass(frozen=True)
class Point:
    """One plotted profile."""

    profile: Profile
    x: float
    y: float
    memory_mb: float | None
    measured_top1: bool


def pareto_front(xy: Sequence[tuple[float, float]], higher_x_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (higher y is always better)."""
    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ax, bx = (a[0], b[0]) if higher_x_is_better else (-a[0], -b[0])
        return ax >= bx and a[1] >= b[1] and (ax > bx or a[1] > b[1])

    return [i for i, p in enumerate(xy) if not any(beats(q, p) for j, q in enumerate(xy) if j != i)]


TopKey = tuple[str, str, str]  # (model, runtime, dtype): a measured top-1 belongs to the file or model it measured


def plot_points(profiles: Sequence[Profile], x: str = "throughput",
                top1: Mapping[TopKey, float] | None = None) -> list[Point]:
    """The profiles that can be plotted: successful, with a speed figure and a top-1 that is this row's (measured
    wins; the published one only where the row computes what it was published for)."""
    if x not in AXES:
        raise UsageError(f"Unknown plot axis '{x}' (expected one of: {', '.join(AXES)}).")
    points = []
    for p in profiles:
        xv = p.throughput_img_s if x == "throughput" else p.latency_ms_p50
        measured = (top1 or {}).get((p.model, p.runtime, p.dtype))
        yv = measured if measured is not None else p.top1 if p.published_top1_applies else None
        if p.ok and xv and yv is not None:
            memory = p.peak_memory_mb if p.peak_memory_mb is not None else p.weights_mb
            points.append(Point(p, float(xv), float(yv), memory, measured is not None))
    if x == "latency":  # latency is at batch 1: one point per model and conditions, whatever the batch
        points = list({_latency_key(pt.profile): pt for pt in points}.values())
    return points


def unplotted_int8(profiles: Sequence[Profile], top1: Mapping[TopKey, float] | None = None) -> int:
    """Rows left out because their accuracy is unknown (no measured top-1, and the published one is not theirs)."""
    return sum(1 for p in profiles if p.ok and p.top1 is not None and not p.published_top1_applies
               and (p.model, p.runtime, p.dtype) not in (top1 or {}))


def _latency_key(p: Profile) -> tuple[Any, ...]:
    return (p.model, p.tag, p.weights, *(getattr(p, k) for k in _CONDITIONS if k != "batch_size"))


def conditions_text(profiles: Sequence[Profile], keys: Sequence[str] = _CONDITIONS) -> tuple[str, list[str]]:
    """The conditions shared by all profiles as one line, and the keys that differ between them."""
    shared, varying = [], []
    for key in keys:
        values = {getattr(p, key) for p in profiles}
        if len(values) > 1:
            varying.append(key)
        elif values:
            shared.append(_condition(key, next(iter(values)), profiles[0]))
    return ", ".join(s for s in shared if s), varying


def _condition(key: str, value: Any, p: Profile) -> str:
    if key == "device":
        return f"{value} ({p.device_name})" if p.device_name else str(value)
    if key == "threads":
        return f"{value} threads" if value else ""
    if key == "batch_size":
        return f"throughput at batch {value}"
    if key == "input_size":
        return f"{value} px"
    if key == "compiled":
        return "torch.compile" if value else ""
    if key == "layout":
        return "channels_last" if value == "channels_last" else ""
    if key in ("torch_version", "timm_version"):
        return f"{key.split('_')[0]} {value}" if value else ""
    if key == "machine":
        return f"machine {value}" if value else ""
    return str(value)


def _label(point: Point, varying: Sequence[str]) -> str:
    p = point.profile
    short = {"batch_size": "b{}", "input_size": "{}px", "threads": "{}thr", "machine": "@{}"}
    extra = [short.get(k, "{}").format(getattr(p, k)) for k in varying if k not in ("torch_version", "timm_version")]
    return p.model + ("*" if point.measured_top1 else "") + (f" ({', '.join(extra)})" if extra else "")


def plot_pareto(profiles: Sequence[Profile], out: Path | str, x: str = "throughput",
                top1: Mapping[TopKey, float] | None = None) -> Path:
    """Plot top-1 against throughput or latency (log x), marker area = memory, Pareto front drawn.

    The format follows the extension: .png or .svg. ``top1`` maps (model, runtime, dtype) to its measured top-1 %,
    used instead of the published figure; a row whose accuracy is unknown (int8 not verified) is left out, and
    the subtitle says how many.

    Raises:
        UsageError: unknown axis or format, nothing to plot, or the file cannot be written.
    """
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"Cannot write a plot as '{out.suffix or out.name}': use a .png or .svg file name.")
    points = plot_points(profiles, x, top1)
    if not points:
        raise UsageError(f"Nothing to plot: none of the {len(profiles)} results has both a top-1 and a "
                         f"{x} figure.", hint="Measure some models first, e.g. vischoose profile resnet50 vit_b16.")
    unknown = unplotted_int8(profiles, top1)
    incomplete = sum(1 for p in profiles if not plot_points([p], x, top1)) - unknown
    fig = _figure(points, x, incomplete, unknown)
    try:
        fig.savefig(out, dpi=150, bbox_inches="tight")
    except OSError as err:
        raise UsageError(f"Cannot write the plot {out}: {err.strerror or err}.") from err
    return out


def _figure(points: list[Point], x: str, skipped: int, unknown: int = 0) -> Any:
    """The matplotlib Figure (no pyplot: no global state, Agg canvas)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(9, 6))
    ax = fig.add_subplot()
    keys = [k for k in _CONDITIONS if not (x == "latency" and k == "batch_size")]
    shared, varying = conditions_text([p.profile for p in points], keys)
    mems = [p.memory_mb for p in points if p.memory_mb]
    scale = 700 / max(mems) if mems else 0.0
    sizes = [40 + (p.memory_mb or 0) * scale for p in points]
    ax.scatter([p.x for p in points], [p.y for p in points], s=sizes, alpha=0.55, color="tab:blue",
               edgecolors="navy", linewidths=0.8, zorder=3)
    front = sorted(pareto_front([(p.x, p.y) for p in points], x == "throughput"), key=lambda i: points[i].x)
    ax.plot([points[i].x for i in front], [points[i].y for i in front], "--o", color="tab:red", lw=1.2, ms=3,
            zorder=4, label="Pareto front\n(better: " + ("up, right)" if x == "throughput" else "up, left)"))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    _pad_limits(ax, points)
    _place_labels(ax, points, [_label(p, varying) for p in points], [s**0.5 / 2 for s in sizes])
    for mb in _legend_sizes(mems):
        ax.scatter([], [], s=40 + mb * scale, color="tab:blue", alpha=0.55, edgecolors="navy", label=f"{mb:g} MiB")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, labelspacing=1.6, borderpad=1.0,
              title="marker area:\n" + _memory_title(points), title_fontsize=8, frameon=False,
              handletextpad=1.5)
    batch = {p.profile.batch_size for p in points}
    ax.set_xlabel("Throughput, img/s" + (f" at batch {batch.pop()}" if len(batch) == 1 else "") + " (log scale)"
                  if x == "throughput" else "Latency p50, ms per image at batch 1 (log scale)")
    kind = "measured*, or published for pretrained fp32" if any(p.measured_top1 for p in points) else \
        "published, pretrained fp32"
    ax.set_ylabel(f"ImageNet-1k top-1, % ({kind})")
    ax.grid(True, which="both", alpha=0.25)
    fig.suptitle("Accuracy against " + ("throughput" if x == "throughput" else "latency"), fontsize=13)
    ax.set_title(_wrap(shared + _left_out(points, skipped, unknown)), fontsize=8.5, color="dimgray")
    return fig


def _left_out(points: list[Point], skipped: int, unknown: int) -> str:
    """The subtitle's account of rows not shown, and of where random-weight rows are placed."""
    note = f"; {skipped} failed or incomplete run{'s' if skipped > 1 else ''} not shown" if skipped else ""
    if unknown:
        note += (f"; {unknown} int8 row{'s' if unknown > 1 else ''} not shown: accuracy not verified (no measured "
                 "top-1; the published figure is fp32's)")
    if any(p.profile.weights == "random" and not p.measured_top1 for p in points):
        note += "; rows measured with random weights are placed at the pretrained model's published top-1"
    return note


def _memory_title(points: list[Point]) -> str:
    peaks = sum(p.profile.peak_memory_mb is not None for p in points)
    return "peak memory" if peaks == len(points) else "weights size" if not peaks else "peak memory\n(else weights)"


def _wrap(text: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or " "


def _legend_sizes(mems: list[float]) -> list[float]:
    """Two or three round memory sizes spanning the data."""
    if not mems:
        return []
    top = max(mems)
    picks = [v for v in (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000) if v <= top]
    return picks if len(picks) <= 3 else [picks[0], picks[len(picks) // 2], picks[-1]]


def _pad_limits(ax: Any, points: list[Point]) -> None:
    """Room around the points for markers and labels (log x: pad by factors)."""
    xs, ys = [p.x for p in points], [p.y for p in points]
    lo, hi = min(xs), max(xs)
    ax.set_xlim(lo / 1.6, hi * 1.6)
    span = max(max(ys) - min(ys), 2.0)
    ax.set_ylim(min(ys) - 0.35 * span, max(ys) + 0.25 * span)


def _place_labels(ax: Any, points: list[Point], labels: list[str], radii_pt: list[float]) -> None:
    """Label each point beside its marker where the text covers no other label or marker and stays inside
    the axes; labels pushed further out get a thin leader line."""
    px_per_pt = ax.figure.dpi / 72
    centres = [ax.transData.transform((p.x, p.y)) for p in points]
    markers = [(cx - r * px_per_pt, cy - r * px_per_pt, cx + r * px_per_pt, cy + r * px_per_pt)
               for (cx, cy), r in zip(centres, radii_pt)]
    frame = ax.get_window_extent()
    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(points)), key=lambda i: (-points[i].y, points[i].x)):
        width, height = 5.6 * len(labels[i]) * px_per_pt, 11 * px_per_pt  # about 9 pt text
        others = placed + [m for j, m in enumerate(markers) if j != i]

        def cost(offset: tuple[float, float]) -> float:
            box = _box(centres[i], offset, width, height, px_per_pt)
            outside = not (frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1)
            return 1e9 * outside + sum(_overlap_area(box, b) for b in others)

        candidates = _offsets(0.75 * radii_pt[i] + 2)
        best = min(candidates, key=lambda o: (cost(o) > 0, cost(o), candidates.index(o)))
        placed.append(_box(centres[i], best, width, height, px_per_pt))
        far = candidates.index(best) >= 4
        ax.annotate(labels[i], (points[i].x, points[i].y), xytext=best, textcoords="offset points", fontsize=9,
                    ha="right" if best[0] < 0 else "left", zorder=4,
                    arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.6, "shrinkA": 1} if far else None)


def _offsets(r: float) -> list[tuple[float, float]]:
    """Text offsets in points around a marker of radius r: beside it first, then further out."""
    near = [(r, r * 0.6), (r, -r * 0.6 - 9), (-r, r * 0.6), (-r, -r * 0.6 - 9)]
    far = [(sx * (r + dx), sy * (r + dy) - (9 if sy < 0 else 0))
           for dx, dy in ((6, 14), (20, 24), (6, 34), (30, 46)) for sy in (1, -1) for sx in (1, -1)]
    return near + far


def _box(centre: Any, offset: tuple[float, float], width: float, height: float,
         px_per_pt: float) -> tuple[float, float, float, float]:
    x0 = centre[0] + offset[0] * px_per_pt - (width if offset[0] < 0 else 0)
    y0 = centre[1] + offset[1] * px_per_pt
    return (x0, y0, x0 + width, y0 + height)


def _overlap_area(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# ---- the server scenario: latency against offered load ------------------------------------------------------------

def serving_rows(profiles: Sequence[Profile]) -> list[Profile]:
    """Server-scenario rows that have LoadGen runs or a model curve to draw."""
    return [p for p in profiles if p.scenario == "server" and p.ok and p.serve_curve]


def plot_serving(profiles: Sequence[Profile], out: Path | str) -> Path:
    """Latency (p50 and p99, ms, log scale) against offered Poisson load (QPS) per model and variant: each LoadGen run
    (filled: VALID, hollow: INVALID), the queueing model's curve (dashed), the p99 bound and the knee (the highest
    VALID rate).

    Raises:
        UsageError: no server rows, an unknown format, or the file cannot be written.
    """
    import json

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"Cannot write a plot as '{out.suffix or out.name}': use a .png or .svg file name.")
    rows = serving_rows(profiles)
    if not rows:
        raise UsageError("Nothing to plot: no server-scenario results.",
                         hint="Measure some first, e.g. vischoose profile resnet50 --scenario server --slo-ms 100.")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6))
    ax = fig.add_subplot()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    for i, p in enumerate(rows):
        _draw_serving(ax, p, json.loads(p.serve_curve or "{}"), colours[i % len(colours)])
    for slo in sorted({p.slo_ms for p in rows if p.slo_ms}):
        ax.axhline(slo, color="black", lw=1.0, ls="-.", zorder=1)
        ax.annotate(f"p99 bound {slo:g} ms", (0.01, slo), xycoords=("axes fraction", "data"), fontsize=8,
                    va="bottom")
    ax.set_yscale("log")
    ax.set_xlabel("Offered load, queries/s (Poisson arrivals, LoadGen Server)")
    ax.set_ylabel("Latency from scheduled arrival, ms (log scale)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Latency against offered load", fontsize=13)
    ax.set_title(_wrap("markers: LoadGen runs (filled VALID, hollow INVALID; circle p50, square p99); dashed: queueing "
                       "model of the measured service times; dotted: the knee, highest VALID rate"), fontsize=8.5,
                 color="dimgray")
    try:
        fig.savefig(out, dpi=150, bbox_inches="tight")
    except OSError as err:
        raise UsageError(f"Cannot write the plot {out}: {err.strerror or err}.") from err
    return out


def _draw_serving(ax: Any, p: Profile, curve: dict[str, Any], colour: str) -> None:
    """One row's runs, model curve and knee."""
    name = f"{p.model} {p.runtime} {'fp32' if p.dtype == 'float32' else p.dtype}"
    model = curve.get("model") or []
    if model:
        ax.plot([m[0] for m in model], [m[1] for m in model], "--", color=colour, lw=0.9, alpha=0.7)
        ax.plot([m[0] for m in model], [m[2] for m in model], "--", color=colour, lw=1.4, alpha=0.7,
                label=f"{name}: model p50/p99")
    for qps, p50, _p90, p99, valid in curve.get("runs") or []:
        face = colour if valid else "none"
        for value, marker in ((p50, "o"), (p99, "s")):
            if value:
                ax.scatter([qps], [value], marker=marker, facecolors=face, edgecolors=colour, s=36, zorder=3)
    ax.scatter([], [], marker="s", color=colour, label=f"{name}: {curve.get('settings', '')}")
    if p.serve_qps:
        ax.axvline(p.serve_target_qps or p.serve_qps, color=colour, ls=":", lw=1.2)
        ax.annotate(f"knee {p.serve_qps:,.1f} QPS", (p.serve_target_qps or p.serve_qps, 0.02),
                    xycoords=("data", "axes fraction"), rotation=90, fontsize=8, color=colour, ha="right")
