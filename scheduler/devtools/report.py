"""One self-contained HTML page per comparison of replayed runs (pure: strings in, string out).

The page has no external script, style sheet or font: everything is inline SVG and CSS, so it
opens from a file, offline, and can be mailed. Per run (one per scheduler set-up):

- a Gantt chart: a lane per node, a bar per attempt from binding to finish, coloured by step
  (the legend names them); OOM-killed or failed attempts are drawn hatched red with a cross;
- memory over time per node: requested (the pods' memory requests) and used (their peaks,
  as the replay modelled them) as two step lines against the node's capacity;

then one table with every run's makespan, ratio to the first run, memory allocated and wasted,
failed attempts and utilisation. Runs are the JSON rows ``benchmarks.makespan`` produces
(``stats`` from ``runstats``, ``attempts`` from :func:`attempt_json`).
"""

from __future__ import annotations

import colorsys
import html
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.devtools import replay, runstats

_WIDTH = 960
_LANE = 18
_MEM_HEIGHT = 70
_ROW = 7
_LEFT = 110


def attempt_json(attempt: replay.Attempt) -> dict[str, Any]:
    """An attempt as a JSON-ready dict (the page's input)."""
    return {
        "task": attempt.task_id,
        "step": attempt.step,
        "pod": attempt.pod_name,
        "attempt": attempt.attempt,
        "created": attempt.created_s,
        "bound": attempt.bound_s,
        "finished": attempt.finished_s,
        "node": attempt.node,
        "cpu": attempt.cpu_millis,
        "memory": attempt.memory_bytes,
        "limit": attempt.memory_limit_bytes,
        "peak": attempt.peak_bytes,
        "outcome": attempt.outcome,
        "resized": [list(change) for change in attempt.resized],
    }


def _colour(index: int) -> str:
    hue = (index * 0.61803398875) % 1.0
    red, green, blue = colorsys.hls_to_rgb(hue, 0.55, 0.6)
    return f"#{int(red * 255):02x}{int(green * 255):02x}{int(blue * 255):02x}"


def _short_step(step: str) -> str:
    return step.rsplit(":", 1)[-1]


def _bars(attempts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [a for a in attempts if a.get("bound") is not None and a.get("node")]


def _gantt(
    run: Mapping[str, Any], colours: Mapping[str, str], horizon: float, node_memory: int
) -> str:
    bars = _bars(run["attempts"])
    nodes = sorted({str(a["node"]) for a in bars})
    # A node's lane is split into rows so that overlapping attempts do not hide each other.
    rows_of: dict[str, list[list[float]]] = {node: [] for node in nodes}
    placed: list[tuple[Mapping[str, Any], str, int]] = []
    for attempt in sorted(bars, key=lambda a: float(a["bound"])):
        node = str(attempt["node"])
        start = float(attempt["bound"])
        end = float(attempt["finished"] if attempt["finished"] is not None else horizon)
        rows = rows_of[node]
        for index, row_end in enumerate(rows):
            if row_end[0] <= start:
                row_end[0] = end
                placed.append((attempt, node, index))
                break
        else:
            rows.append([end])
            placed.append((attempt, node, len(rows) - 1))
    lane_top: dict[str, float] = {}
    y = 20.0
    for node in nodes:
        lane_top[node] = y
        y += max(1, len(rows_of[node])) * _ROW + 10 + _MEM_HEIGHT + 16
    height = y + 10
    scale = (_WIDTH - _LEFT - 10) / max(horizon, 1e-9)
    parts = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{height:.0f}" viewBox="0 0 {_WIDTH} {height:.0f}">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdd"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c00" stroke-width="3"/></pattern></defs>',
    ]
    for tick in range(0, 11):
        x = _LEFT + tick * (horizon / 10) * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="12" x2="{x:.1f}" y2="{height - 6:.0f}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="10" font-size="9" text-anchor="middle">'
            f"{tick * horizon / 10:.0f}s</text>"
        )
    for node in nodes:
        top = lane_top[node]
        lane_height = max(1, len(rows_of[node])) * _ROW
        parts.append(
            f'<text x="4" y="{top + 8:.0f}" font-size="10">{html.escape(node[-14:])}</text>'
            f'<rect x="{_LEFT}" y="{top:.0f}" width="{_WIDTH - _LEFT - 10}" '
            f'height="{lane_height}" fill="#fafafa" stroke="#ddd"/>'
        )
    for attempt, node, row in placed:
        start = float(attempt["bound"])
        end = float(attempt["finished"] if attempt["finished"] is not None else horizon)
        x = _LEFT + start * scale
        width = max(1.0, (end - start) * scale)
        bar_y = lane_top[node] + row * _ROW
        failed = attempt["outcome"] in ("oom", "failed")
        fill = "url(#hatch)" if failed else colours.get(str(attempt["step"]), "#888")
        title = html.escape(
            f"{attempt['pod']} ({_short_step(str(attempt['step']))}, attempt "
            f"{attempt['attempt']}): {start:.1f}-{end:.1f}s, {attempt['outcome']}, "
            f"request {int(attempt['memory']) / 2**30:.2f} GiB, "
            f"peak {int(attempt['peak'] or 0) / 2**30:.2f} GiB"
        )
        css = "bar failed" if failed else "bar"
        parts.append(
            f'<rect class="{css}" x="{x:.1f}" y="{bar_y:.1f}" width="{width:.1f}" height="6" '
            f'fill="{fill}"><title>{title}</title></rect>'
        )
        if failed:
            parts.append(
                f'<text class="oom" x="{x + width:.1f}" y="{bar_y + 6:.1f}" font-size="8" '
                f'fill="#c00">&#x2716;</text>'
            )
    for node in nodes:
        parts.append(_memory_lines(bars, node, lane_top[node], rows_of, node_memory, scale))
    parts.append("</svg>")
    return "".join(parts)


def _memory_lines(
    bars: Sequence[Mapping[str, Any]],
    node: str,
    lane_top: float,
    rows_of: Mapping[str, list[list[float]]],
    node_memory: int,
    scale: float,
) -> str:
    """Requested and used memory of ``node`` over time, as two step lines."""
    top = lane_top + max(1, len(rows_of[node])) * _ROW + 6
    events: list[tuple[float, int, int]] = []
    for attempt in bars:
        if attempt["node"] != node or attempt["finished"] is None:
            continue
        requested = int(attempt["memory"] or 0)
        resized = [(float(t), int(req)) for t, req, _ in attempt.get("resized") or ()]
        last = resized[-1][1] if resized else requested
        if attempt["outcome"] == "succeeded":
            used = min(int(attempt["peak"] or 0), last or int(attempt["peak"] or 0))
        else:
            used = int((attempt.get("resized") or [[0, 0, attempt["limit"]]])[-1][2] or last)
        events.append((float(attempt["bound"]), requested, used))
        before = requested
        for time_s, request in resized:  # shrunk or grown in place while it ran
            events.append((time_s, request - before, 0))
            before = request
        events.append((float(attempt["finished"]), -last, -used))
    events.sort(key=lambda e: (e[0], e[1]))
    capacity = max(node_memory, 1)

    def y_of(value: float) -> float:
        return top + _MEM_HEIGHT - min(1.0, value / capacity) * _MEM_HEIGHT

    requested_points = [f"{_LEFT},{y_of(0):.1f}"]
    used_points = [f"{_LEFT},{y_of(0):.1f}"]
    requested_total = used_total = 0
    for time_s, requested, used in events:
        x = _LEFT + time_s * scale
        requested_points.append(f"{x:.1f},{y_of(requested_total):.1f}")
        used_points.append(f"{x:.1f},{y_of(used_total):.1f}")
        requested_total += requested
        used_total += used
        requested_points.append(f"{x:.1f},{y_of(requested_total):.1f}")
        used_points.append(f"{x:.1f},{y_of(used_total):.1f}")
    return (
        f'<rect x="{_LEFT}" y="{top:.1f}" width="{_WIDTH - _LEFT - 10}" height="{_MEM_HEIGHT}" '
        f'fill="none" stroke="#ccc"/>'
        f'<text x="4" y="{top + 12:.1f}" font-size="9">memory</text>'
        f'<text x="4" y="{top + 24:.1f}" font-size="9">{node_memory / 2**30:.0f} GiB</text>'
        f'<polyline class="mem-requested" fill="none" stroke="#1f77b4" stroke-width="1.2" '
        f'points="{" ".join(requested_points)}"/>'
        f'<polyline class="mem-used" fill="#2ca02c33" stroke="#2ca02c" stroke-width="1.2" '
        f'points="{" ".join(used_points)}"/>'
    )


def _table(runs: Sequence[Mapping[str, Any]]) -> str:
    base = float(runs[0]["stats"]["makespan_s"]) if runs else 0.0
    head = (
        "<tr><th>scheduler</th><th>makespan (s)</th><th>ratio</th><th>allocated (GiBh)</th>"
        "<th>wasted (GiBh)</th><th>failed attempts</th><th>CPU util</th><th>memory util</th></tr>"
    )
    body = []
    for run in runs:
        stats = run["stats"]
        makespan = float(stats["makespan_s"])
        ratio = makespan / base if base and base == base else float("nan")
        error = f' <span class="error">{html.escape(run["error"])}</span>' if run["error"] else ""
        body.append(
            f"<tr><td>{html.escape(run['config'])}{error}</td><td>{makespan:.1f}</td>"
            f"<td>{ratio:.2f}</td><td>{stats['allocated_gibh']:.2f}</td>"
            f"<td>{stats['wasted_gibh']:.2f}</td><td>{stats['failed_attempts']}</td>"
            f"<td>{stats['cpu_utilisation']:.0%}</td><td>{stats['memory_utilisation']:.0%}</td></tr>"
        )
    return f'<table class="figures">{head}{"".join(body)}</table>'


def comparison_page(
    runs: Sequence[Mapping[str, Any]], *, shape: runstats.ClusterShape, title: str = ""
) -> str:
    """The HTML page comparing ``runs`` (the first is the reference of the ratios)."""
    steps = sorted({str(a["step"]) for run in runs for a in run["attempts"]})
    colours = {step: _colour(index) for index, step in enumerate(steps)}
    horizon = max([float(a["finished"] or 0) for run in runs for a in run["attempts"]] + [1.0])
    workflow = runs[0]["workflow"] if runs else ""
    heading = html.escape(title or f"{workflow}: {len(runs)} runs side by side")
    legend = "".join(
        f'<span class="key"><i style="background:{colour}"></i>{html.escape(_short_step(step))}'
        "</span>"
        for step, colour in colours.items()
    )
    sections = []
    for run in runs:
        makespan = float(run["stats"]["makespan_s"])
        sections.append(
            f"<section><h2>{html.escape(run['config'])}: makespan {makespan:.1f}s, "
            f"{run['stats']['failed_attempts']} failed attempts</h2>"
            f"{_gantt(run, colours, horizon, shape.memory_bytes)}</section>"
        )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{heading}</title><style>"
        "body{font-family:sans-serif;margin:16px;color:#222;background:#fff}"
        "table.figures{border-collapse:collapse;margin:8px 0 16px}"
        "table.figures td,table.figures th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}table.figures td:first-child{text-align:left}"
        ".key{display:inline-block;margin:2px 8px;font-size:11px}"
        ".key i{display:inline-block;width:10px;height:10px;margin-right:4px}"
        "h2{font-size:14px;margin:14px 0 4px}.error{color:#c00;font-size:11px}"
        "</style></head><body>"
        f"<h1>{heading}</h1>"
        f"<p>{shape.nodes} nodes &times; {shape.cpu_millis / 1000:g} CPU &times; "
        f"{shape.memory_bytes / 2**30:g} GiB. Bars: attempts from binding to finish, a lane per "
        "node, coloured by step; hatched red with &#x2716;: OOM-killed or failed. Below each "
        "lane: memory requested (blue) and used (green) on that node.</p>"
        f"{_table(runs)}<div class='legend'>{legend}</div>{''.join(sections)}"
        "</body></html>"
    )
