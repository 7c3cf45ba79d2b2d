"""The study's report picture: the dev score against each tuned setting (one panel
each, log scale where the distribution is), and the best score so far against the
trial number. matplotlib is optional (the [report] extra), drawn with the Agg canvas."""

import math
from pathlib import Path
from typing import Any, List

from .table import FAILED, STOPPED_BUDGET, STOPPED_EARLY, TrialRecord

_COLOURS = {STOPPED_EARLY: "tab:orange", STOPPED_BUDGET: "tab:grey"}


def draw_report(path: Path, records: List[TrialRecord]) -> bool:
    """Draw the picture into `path`. RETURNS (bool): False where matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    rows = sorted(records, key=lambda r: r.number)
    settings = sorted({s for r in rows for s in r.settings})
    panels = len(settings) + 1
    cols = min(3, panels)
    lines = math.ceil(panels / cols)
    figure = Figure(figsize=(4.2 * cols, 3.3 * lines), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    scored = [r for r in rows if r.status != FAILED and r.score is not None]
    for i, setting in enumerate(settings):
        ax: Any = figure.add_subplot(lines, cols, i + 1)
        points = [(r.settings[setting], _score(r)) for r in scored if setting in r.settings]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points)
        xs = [x if numeric else str(x) for x, _ in points]
        colours = [_COLOURS.get(r.status, "tab:blue") for r in scored if setting in r.settings]
        ax.scatter(xs, [100 * y for _, y in points], c=colours, s=24)
        if (
            numeric
            and points
            and min(x for x, _ in points) > 0
            and max(x for x, _ in points) >= 10 * min(x for x, _ in points)
        ):
            ax.set_xscale("log")
        for r in scored:
            if r.defaults and setting in r.settings:
                ax.scatter(
                    [r.settings[setting] if numeric else str(r.settings[setting])],
                    [100 * _score(r)],
                    marker="x",
                    c="black",
                    s=48,
                )
        ax.set_title(
            setting.rsplit(".", 2)[-2] + "." + setting.rsplit(".", 1)[-1] if setting.count(".") > 1 else setting,
            fontsize=9,
        )
        ax.set_ylabel("dev score")
    ax = figure.add_subplot(lines, cols, panels)
    best, xs, ys = -math.inf, [], []
    for r in rows:
        if r.status != FAILED and r.score is not None:
            best = max(best, _score(r))
        if best > -math.inf:
            xs.append(r.number)
            ys.append(100 * best)
    ax.step(xs, ys, where="post", color="tab:green")
    ax.scatter(
        [r.number for r in scored],
        [100 * _score(r) for r in scored],
        c=[_COLOURS.get(r.status, "tab:blue") for r in scored],
        s=16,
    )
    failed = [r.number for r in rows if r.status == FAILED]
    if failed and ys:
        ax.scatter(failed, [min(ys)] * len(failed), marker="v", c="tab:red", s=24)
    ax.set_title("best dev score so far\n(x: defaults; orange: stopped early; red: failed)", fontsize=8)
    ax.set_xlabel("trial")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    tmp.replace(path)
    return True


def _score(record: TrialRecord) -> float:
    return record.score if record.score is not None else math.nan
