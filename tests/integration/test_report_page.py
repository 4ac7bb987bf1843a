"""The replay report page renders in a real headless Chromium: not blank, SVG charts present.

Needs Debian's ``chromium`` (``scripts/bootstrap.sh`` installs it for the test run); no control
plane. The page is built from two runs of attempts shaped like a replay's (one with an
OOM-killed attempt), screenshotted, and the picture and the rendered DOM are checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from scheduler.devtools import replay, report, runstats

GIB = 2**30
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def _attempts(oom: bool) -> list[replay.Attempt]:
    steps = ["NF:FASTQC", "NF:TRIM", "NF:ALIGN", "NF:MULTIQC"]
    result = []
    for index in range(24):
        step = steps[index % 4]
        start = float(index // 2) * 2.0
        failed = oom and index == 5
        result.append(
            replay.Attempt(
                task_id=str(index),
                step=step,
                pod_name=f"pod-{index}",
                attempt=1,
                created_s=start,
                cpu_millis=2000,
                memory_bytes=(2 if failed else 6) * GIB,
                memory_limit_bytes=(2 if failed else 6) * GIB,
                peak_bytes=3 * GIB,
                bound_s=start + 0.2,
                finished_s=start + (1.5 if failed else 3.0),
                node=f"kwok-node-{index % 2}",
                outcome="oom" if failed else "succeeded",
            )
        )
    return result


def page(tmp_path: Path) -> Path:
    shape = runstats.ClusterShape(nodes=2, cpu_millis=8000, memory_bytes=32 * GIB)
    rows = []
    for label, oom in (("kube-scheduler", False), ("critical_path-roundrobin+envelope", True)):
        attempts = _attempts(oom)
        stats = runstats.run_stats(attempts, makespan_s=26.0, time_scale=0.05, cluster=shape)
        rows.append(
            {
                "workflow": "demo/trace-1",
                "config": label,
                "error": "",
                "stats": stats.to_json(),
                "attempts": [report.attempt_json(a) for a in attempts],
            }
        )
    path = tmp_path / "run.html"
    path.write_text(report.comparison_page(rows, shape=shape), encoding="utf-8")
    return path


def test_page_is_self_contained(tmp_path: Path) -> None:
    text = page(tmp_path).read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"url\((?!#)", text)  # only the inline hatch pattern is referenced
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    path = page(tmp_path)
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1400", path.as_uri())
    image = Image.open(shot).convert("L")
    assert image.size == (1100, 1400)
    stats = ImageStat.Stat(image)
    assert stats.stddev[0] > 20, "the screenshot is (nearly) uniform: a blank page"
    dark = sum(count for level, count in enumerate(image.histogram()) if level < 200)
    assert dark > 0.02 * image.size[0] * image.size[1], "too little drawn on the page"
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert dom.count('class="gantt"') == 2
    assert dom.count('class="bar"') == 24 + 23
    assert dom.count('class="bar failed"') == 1
    assert dom.count('class="mem-requested"') == 4 and dom.count('class="mem-used"') == 4
    assert "critical_path-roundrobin+envelope" in dom
