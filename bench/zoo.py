"""recommend over timm's zoo: `recommend --budget-mb 150 --target mobile --zoo` (every zoo architecture of the preset's
families) and the same with `--families all`: how many candidates, how many ruled out without timing, how many runs
`--measure` made and its cold wall time (an empty VISCHOOSE_HOME: no stored figures, no built graphs; target under 10
minutes on 2 cores), the choice and its runner-up; then start-up without measuring, the default command, --zoo and
--families all (an empty home: no results store to read), and --zoo with a results store, against `python -c "import
typer"` (fresh processes, alternated). Prints figures; no pass/fail.

    python bench/zoo.py [--time-budget 20] [--runs 15]
    python bench/zoo.py --smoke          # no measuring: the plans and the start-up, 3 runs each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VISCHOOSE = str(Path(sys.executable).with_name("vischoose"))
TARGET = ["recommend", "--budget-mb", "150", "--target", "mobile"]
WIDTHS = {"--zoo": ["--zoo"], "--families all": ["--families", "all"]}
TYPER = [sys.executable, "-c", "import typer"]


def env_for(home: Path) -> dict[str, str]:
    """An empty home and hub cache: nothing measured, nothing built, nothing downloaded (random init of the same
    architecture where weights are not cached: speed does not depend on the weight values)."""
    return {**os.environ, "VISCHOOSE_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(home / "hub")}


def recommend(args: list[str], home: Path) -> tuple[float, dict]:
    """Wall seconds and the JSON answer of one recommend."""
    start = time.perf_counter()
    out = subprocess.run([VISCHOOSE, *TARGET, *args, "--json"], env=env_for(home), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"recommend {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return wall, json.loads(out.stdout)["data"]


def plan(width: list[str]) -> dict[str, object]:
    """Without measuring: candidates, those ruled out by size, parameters or top-1, and the runs --measure would
    start first (the guide's choice at each variant it is timed at), from the library."""
    from vischoose import presets
    from vischoose.recommendation import measuring, selection
    from vischoose.recommendation.pipeline import known
    from vischoose.requests.recommend import RecommendRequest

    request = RecommendRequest(target="mobile", max_memory_mb=150, zoo="--zoo" in width,
                               families=("all",) if "all" in width else ())
    preset, world = presets.load_preset("mobile").with_overrides(**request.constraints), known()
    chosen = selection.select(request, preset, world)
    runs: list[str] = []

    def record(todo, variant):  # plans only: nothing is measured, so the first model is never settled
        runs.extend(f"{m} at {variant.label}" for m, _ in todo)
        raise StopIteration

    try:
        measuring.measure_for_decision(preset, chosen.entries, chosen.extra, [], [], record, world)
    except StopIteration:
        pass
    _, log = measuring.prune(preset, chosen.entries, chosen.extra, [], [], world)
    return {"candidates": log.candidates, "pruned": sum(len(m) for m in log.pruned.values()),
            "pruned_by": {k: len(v) for k, v in log.pruned.items()}, "first_run": runs[:1]}


def measured(args: list[str], budget: float) -> None:
    """One cold `recommend --measure` and what it did."""
    with tempfile.TemporaryDirectory(prefix="vischoose-zoo-") as home:
        wall, data = recommend([*args, "--measure", "--time-budget", str(budget)], Path(home))
    log = data["measure_log"]
    runs = next((line for line in log if line.startswith("measured: ")), "measured: nothing")
    count = 0 if runs == "measured: nothing" else len(runs.removeprefix("measured: ").split(", "))
    runner_up = data["runners_up"][0]["model"] if data["runners_up"] else "-"
    print(f"  --measure (cold, --time-budget {budget:g}): {wall:.0f} s wall, {count} runs "
          f"({runs.removeprefix('measured: ')})")
    for line in log:
        if not line.startswith("measured: "):
            print(f"    {line[:300]}")
    chosen = data["chosen"]
    latency = chosen["figures"].get("latency_ms") or {"value": float("nan"), "source": "-", "note": ""}
    print(f"  chosen: {chosen['model']} at {chosen['variant']['runtime']} {chosen['variant']['precision']} "
          f"(batch-1 p90 {latency['value']:.1f} ms {latency['source']}: {latency['note']}; "
          f"{chosen['variant']['note']}); runner-up: {runner_up}")


def startup(runs: int) -> dict[str, float]:
    """Median wall seconds per command, alternated `runs` times after one warm-up round (file cache, bytecode): in an
    empty home (no results store: nothing to read), and --zoo again in a home with a results store to read."""
    cmds = {"default": [VISCHOOSE, *TARGET], **{k: [VISCHOOSE, *TARGET, *v] for k, v in WIDTHS.items()},
            "--zoo, a store": [VISCHOOSE, *TARGET, "--zoo"], "import typer": TYPER}
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as stored:
        from vischoose.results.store import open_store

        open_store(Path(stored) / "results.db").close()  # a store (empty here: its reading, not its rows, costs)
        # bytecode as an installed package has it (pip compiles on install): written by the warm-up round, kept
        # apart from the tree; with PYTHONDONTWRITEBYTECODE every run would compile vischoose's sources again
        envs = {}
        for name in cmds:
            where = Path(stored if name == "--zoo, a store" else home)
            env = {k: v for k, v in env_for(where).items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(Path(home) / "pycache")
            envs[name] = env
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for rnd in range(runs + 1):
            for name, cmd in cmds.items():
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=envs[name])
                if rnd:  # the first round warms the file cache
                    times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget", type=float, default=20.0, help="seconds of timed runs per model")
    parser.add_argument("--runs", type=int, default=15, help="start-up runs per command")
    parser.add_argument("--smoke", action="store_true", help="no measuring; 3 start-up runs")
    args = parser.parse_args()
    from vischoose import machine

    about = machine.describe()
    print(f"{about['cpu']}, {about['cores']} cores, {about['memory_gib']} GiB, {about['os']}, "
          f"python {about['python']}")
    for name, width in WIDTHS.items():
        p = plan(width)
        print(f"\nrecommend --budget-mb 150 --target mobile {name}: {p['candidates']} candidates, {p['pruned']} "
              f"ruled out without timing ({', '.join(f'{n} {k}' for k, n in p['pruned_by'].items())}); "
              f"--measure starts with {', '.join(p['first_run']) or 'nothing'}")
        if not args.smoke:
            measured(width, args.time_budget)
    times = startup(3 if args.smoke else args.runs)
    typer_s = times.pop("import typer")
    print(f"\nstart-up without measuring (median of {3 if args.smoke else args.runs}, alternated, fresh processes):")
    for name, wall in times.items():
        print(f"  recommend {name:15}: {1e3 * wall:6.0f} ms = {wall / typer_s:.2f}x import typer "
              f"({1e3 * typer_s:.0f} ms)")


if __name__ == "__main__":
    main()
