"""Turn the results of one run into the markdown report (docs/benchmarks.md).

Cells are "median (min–max)" over repetitions. Ratios pair fiber_jupyter's
repetition r with the peer's repetition r: with repetition-major order those
ran minutes apart at most, so they saw similar machine load.
"""

import statistics
from dataclasses import dataclass, field

from bench.frameworks import BY_NAME, FRAMEWORKS, SUBJECT
from bench.workloads import ES_POPULATION, W4_PERIODS_S, W6_ELEMENTS, WORKERS, w4_task_count


@dataclass
class Result:
    """Outcome of one child: a measurement, a failure, a timeout or a skip."""

    framework: str
    workload: str
    rep: int
    status: str
    load1: float | None = None
    wall_s: float | None = None
    import_s: float | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Column:
    """One reported metric: where it comes from and how to print it."""

    workload: str
    metric: str
    header: str
    short: str
    fmt: str


IMPORT = Column("W1", "import_s", "import s", "import", ".2f")
STARTUP = Column("W1", "startup_s", "W1 start-up s", "W1 start-up", ".3g")
W2_MEDIAN = Column("W2", "median_ms", "W2 median ms", "W2 median", ".3g")
W2_P99 = Column("W2", "p99_ms", "W2 p99 ms", "W2 p99", ".3g")
W3_RATE = Column("W3", "tasks_per_s", "W3 tasks/s", "W3 tasks/s ↑", ".3g")
W4_1MS = Column("W4", "ratio_1ms", "W4 T=1ms measured/ideal", "W4 1ms", ".4f")
W4_10MS = Column("W4", "ratio_10ms", "W4 T=10ms measured/ideal", "W4 10ms", ".4f")
W4_100MS = Column("W4", "ratio_100ms", "W4 T=100ms measured/ideal", "W4 100ms", ".4f")
W5_ITER = Column("W5", "s_per_iter", "W5 s/iter", "W5 s/iter", ".3f")
W5_IDEAL = Column("W5", "vs_ideal", "W5 measured/ideal", "W5 vs ideal", ".2f")
W6_SECONDS = Column("W6", "seconds", "W6 s", "W6 s", ".3f")

STARTUP_TABLE = (IMPORT, STARTUP, W2_MEDIAN, W2_P99, W3_RATE)
HEAVY_TABLE = (W4_1MS, W4_10MS, W4_100MS, W5_ITER, W5_IDEAL, W6_SECONDS)
RATIO_COLUMNS = (STARTUP, W2_MEDIAN, W2_P99, W3_RATE, W4_1MS, W4_10MS, W4_100MS, W5_ITER,
                 W6_SECONDS)


@dataclass(frozen=True)
class Target:
    """A goal for fiber_jupyter: its own metric, or its ratio to a peer's."""

    goal: str
    column: Column
    peer: str | None
    bound: float
    at_least: bool = False


TARGETS = (
    Target("W2 apply round trip ≤ 1.1× multiprocessing", W2_MEDIAN, "mp", 1.1),
    Target("W3 throughput ≥ 0.5× multiprocessing (default chunking)", W3_RATE, "mp", 0.5,
           at_least=True),
    Target("W3 throughput ≥ 5× Ray Pool", W3_RATE, "ray-pool", 5.0, at_least=True),
    Target("W4 T=1ms measured/ideal ≤ 1.10", W4_1MS, None, 1.10),
    Target("W4 T=10ms measured/ideal ≤ 1.02", W4_10MS, None, 1.02),
    Target("W4 T=100ms measured/ideal ≤ 1.005", W4_100MS, None, 1.005),
    Target("W5 s/iter ≤ 1.0× multiprocessing", W5_ITER, "mp", 1.0),
    Target("W6 s ≤ Ray Pool", W6_SECONDS, "ray-pool", 1.0),
)


class ResultIndex:
    """Lookup of measured values by framework, column and repetition."""

    def __init__(self, results):
        self.results = results

    def values(self, framework, column):
        """Values of one metric over repetitions, keyed by repetition."""
        return {r.rep: self._value(r, column) for r in self.results
                if r.framework == framework and r.workload == column.workload
                and r.status == "ok"}

    def ran(self, framework, workload):
        """Whether the run included this pair at all (even if it failed)."""
        return any(r.framework == framework and r.workload == workload for r in self.results)

    @staticmethod
    def _value(result, column):
        """Import time sits beside the metrics because every child measures it."""
        return result.import_s if column is IMPORT else result.metrics[column.metric]

    def ratios(self, column, peer):
        """fiber_jupyter / peer, paired by repetition."""
        mine = self.values(SUBJECT, column)
        theirs = self.values(peer, column)
        return [mine[rep] / theirs[rep] for rep in sorted(mine.keys() & theirs.keys())
                if theirs[rep]]

    def frameworks(self):
        """Frameworks of this run, in registry order."""
        names = {r.framework for r in self.results}
        return [f for f in FRAMEWORKS if f.name in names]


def _spread(values, fmt):
    """'median (min–max)', or the single value when there is one."""
    if not values:
        return ""
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _table(headers, rows):
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(results, framework, column):
    """Blank where the pair was not part of the run, '—' where it produced nothing."""
    if not results.ran(framework.name, column.workload):
        return ""
    return _spread(list(results.values(framework.name, column).values()), column.fmt) or "—"


def _results_table(results, columns):
    """One row per framework of the run, one cell per column."""
    rows = [[f.label] + [_cell(results, f, c) for c in columns] for f in results.frameworks()]
    return _table(["framework"] + [c.header for c in columns], rows)


def _ratio_table(results):
    """One row per peer: fiber_jupyter's metrics divided by the peer's."""
    peers = [f for f in results.frameworks() if f.name != SUBJECT]
    rows = [[f.label] + [_spread(results.ratios(c, f.name), ".3g") or "n/a" for c in RATIO_COLUMNS]
            for f in peers]
    return _table(["fiber_jupyter / peer"] + [c.short for c in RATIO_COLUMNS], rows)


def _target_row(results, target):
    """Judge a target on the median; say 'no data' rather than guess."""
    if target.peer:
        values = results.ratios(target.column, target.peer)
        measured = f"fiber/{target.peer} = {_spread(values, '.3g')}"
    else:
        values = list(results.values(SUBJECT, target.column).values())
        measured = _spread(values, target.column.fmt)
    if not values:
        return [target.goal, "n/a", "no data"]
    median = statistics.median(values)
    met = median >= target.bound if target.at_least else median <= target.bound
    return [target.goal, measured, "met" if met else "**not met**"]


def _targets_table(results):
    """The project's performance goals, each met or not met in this run."""
    return _table(["target (fiber_jupyter)", "measured, median (min–max)", "result"],
                  [_target_row(results, t) for t in TARGETS])


def _failure_lines(results):
    """One line per (framework, problem), listing the runs it affected."""
    groups = {}
    for r in results:
        if r.status != "ok":
            groups.setdefault((r.framework, f"{r.status}: {r.error}"), []).append(r)
        if r.note:
            groups.setdefault((r.framework, r.note), []).append(r)
    if not groups:
        return ["- none"]
    return [f"- {BY_NAME[name].label} — {', '.join(f'{r.workload} rep {r.rep}' for r in runs)}: "
            f"{problem}" for (name, problem), runs in groups.items()]


def _load_summary(results):
    """Overall and per-repetition load, to judge how noisy each repetition was."""
    by_rep = {}
    for r in results:
        if r.load1 is not None:
            by_rep.setdefault(r.rep, []).append(r.load1)
    loads = [load for values in by_rep.values() for load in values]
    if not loads:
        return "n/a"
    per_rep = "; ".join(f"rep {rep}: {statistics.median(values):.2f}"
                        for rep, values in sorted(by_rep.items()))
    return (f"median {statistics.median(loads):.2f}, min {min(loads):.2f}, "
            f"max {max(loads):.2f} (per-repetition medians — {per_rep})")


def _workload_lines(sizes):
    """Workload definitions with the sizes this run actually used."""
    periods = "/".join(f"{round(p * 1e3)} ms" for p in W4_PERIODS_S)
    counts = "/".join(str(w4_task_count(p, sizes)) for p in W4_PERIODS_S)
    return [
        f"- **W1** start({WORKERS}) until a first apply(noop) returns; import time excluded "
        "(reported separately).",
        f"- **W2** {sizes.w2_calls} synchronous apply(noop) after warm-up; median and p99 latency.",
        f"- **W3** map(noop, range({sizes.w3_tasks})) with each framework's default chunking; "
        "tasks/s.",
        f"- **W4** map(time.sleep, [T]*N), T = {periods}, N = {counts} "
        f"(ideal {sizes.w4_ideal_s:g} s each); measured/ideal.",
        f"- **W5** evolution strategies: {ES_POPULATION} es_eval tasks per iteration, each "
        f"carrying its own copy of an 80 KB parameter vector, {sizes.w5_iterations} iterations; "
        f"s/iter. Ideal = one es_eval timed on the driver × {ES_POPULATION} / {WORKERS}.",
        f"- **W6** map(array_sum) over {sizes.w6_arrays} arrays of {W6_ELEMENTS} float64 (8 MB); "
        "seconds.",
    ]


def render(results, run):
    """The whole report; ``run`` carries the run's metadata (see run.py)."""
    view = ResultIndex(results)
    reps = f"{run['reps']} repetition{'' if run['reps'] == 1 else 's'}"
    mode = (f"**quick mode** ({reps}, smaller sizes: a smoke test, not a measurement; targets "
            "are only indicative)" if run["quick"] else reps)
    sections = [
        "# Benchmarks: fiber_jupyter versus peer process pools",
        f"Generated by `{run['command']}` on {run['start']} (finished {run['end']}); {mode}.",
        "> Numbers are only comparable within one run: this is a shared, noisy 2-core machine "
        "(see the load averages). Compare ratios measured in the same run, never absolute "
        "numbers across runs.",
        "## Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in run["machine"].items())
        + f"\n- 1-min load average when each child started: {_load_summary(results)}",
        "## Versions\n\n" + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "## Targets\n\n" + _targets_table(view),
        "## Ratios: fiber_jupyter / peer\n\nPaired by repetition. Below 1 means fiber_jupyter "
        "is faster, except columns marked ↑ (throughput), where above 1 means faster. W4 "
        "columns divide the two measured/ideal ratios.\n\n" + _ratio_table(view),
        "## Start-up, latency, tiny-task throughput\n\n" + _results_table(view, STARTUP_TABLE),
        "## Sleep overhead, evolution strategies, large arguments\n\n"
        + _results_table(view, HEAVY_TABLE),
        f"## Workloads ({WORKERS} workers everywhere)\n\n"
        + "\n".join(_workload_lines(run["sizes"])),
        "## Failures\n\n" + "\n".join(_failure_lines(results)),
    ]
    return "\n\n".join(sections) + "\n"
