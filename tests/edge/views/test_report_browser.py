"""`edge report` in a real headless browser (Debian's Chromium, tests/system_deps.sh).

The runs are recorded through the real store the way `edge bench` and `edge convert` record
them (record_runs, with device facts and model sizes), with realistic numbers: a native and
a TF-TRT FP16 model on an Orin, one 96 ms latency outlier, long model and device names. The
page is laid out by Chromium at 1280 and 800 px; a script added to a copy of the page writes
what the layout measured into the DOM, which `--dump-dom` returns.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from device_agent.protocol import (
    BenchOptions,
    BenchResult,
    BenchRun,
    ConversionSummary,
    ConvertResult,
    DeviceFacts,
    Engine,
    JetsonInfo,
    LatencyStats,
    PowerStats,
    TelemetrySample,
)
from edge.history.record import record_runs
from edge.views.report import build_report

ORIN = "orin-agx-64gb-lab-rack3-slot07.example.internal"
NAME = "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"
PROBE = """<script>addEventListener("load", () => {
  const d = document.documentElement, imgs = [...document.images];
  const wide = [...document.querySelectorAll("table, figure, img, p, h1, h2, h3, div")]
    .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
    .map(e => e.tagName + ": " + e.innerText.slice(0, 80));
  const out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({scrollWidth: d.scrollWidth, innerWidth: innerWidth,
    wide: wide,
    images: imgs.map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]),
    headline: document.querySelector(".headline").innerText});
  document.body.appendChild(out);
});</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: tests/system_deps.sh installs it (apt chromium)")
    return exe


def browse(page: Path, width: int, profile: Path, *args: str) -> str:
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},2000",
        "--hide-scrollbars",
        *args,
        page.as_uri(),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def lat(p50: float, spread: float = 1.0, worst: float | None = None) -> LatencyStats:
    return LatencyStats(
        p50=p50,
        p90=p50 * (1 + 0.08 * spread),
        p95=p50 * (1 + 0.12 * spread),
        p99=p50 * (1 + 0.25 * spread),
        mean=p50 * 1.03,
        min=p50 * 0.93,
        max=worst if worst is not None else p50 * 1.4,
        std=p50 * 0.04,
        cv=0.04,
    )


def bench(model: Path, backend: str, p50: dict[int, float], worst_bs1: float | None = None):
    runs = []
    for i, (bs, ms) in enumerate(p50.items()):
        samples = [
            TelemetrySample(ts=100.0 + 3 * i + 0.1 * k, power_in_mw=9000.0 + 40 * k * bs**0.5)
            for k in range(25)
        ]
        runs.append(
            BenchRun(
                batch_size=bs,
                iterations=int(3000 / ms),
                latency_ms=lat(ms, worst=worst_bs1 if bs == 1 else None),
                throughput_per_s=1000.0 * bs / ms,
                wall_seconds=3.0,
                power=PowerStats(9500.0 + 300 * bs**0.5, 12000.0, 9.5 * ms / bs),
                gpu_load_avg_pct=60.0 + bs,
                temp_peak_c=51.5,
                throttled=False,
                telemetry_source="tegrastats",
                telemetry=samples,
            )
        )
    options = BenchOptions(batch_sizes=list(p50), duration_seconds=3.0, scenario=None)
    return BenchResult(
        device=ORIN,
        status="succeeded",
        backend=backend,
        model=str(model),
        runs=runs,
        options=options,
        scenario="custom",
        transfers=True,
    )


def model_dir(root: Path, name: str, size: int) -> Path:
    (root / name / "variables").mkdir(parents=True)
    (root / name / "saved_model.pb").write_bytes(b"\0" * size)
    (root / name / "variables" / "variables.index").write_bytes(b"\0" * 100)
    return root / name


def record(tmp_path: Path) -> tuple[list[str], list[Path]]:
    """A convert run and two bench runs on an Orin, as the CLI records them."""
    host = tmp_path / "home" / "alice" / "models"
    native = model_dir(host, f"{NAME}_saved_model", 11_000_000)
    converted = model_dir(host, f"{NAME}_trt_fp16", 23_000_000)
    facts = DeviceFacts(
        agent_version="1",
        protocol=1,
        python="3.10.12",
        machine="aarch64",
        hostname="orin",
        memory_total_mb=62_841,
        memory_available_mb=58_000,
        swap_total_mb=31_000,
        disk_free_mb=40_000,
        tensorflow="2.15.0+nv24.05",
        jetson=JetsonInfo(
            module="Jetson AGX Orin 64GB",
            l4t="36.3.0",
            jetpack="6.0",
            nvpmodel="MAXN",
            compute_capability="8.7",
        ),
    )
    conv = ConvertResult(
        device=ORIN,
        status="succeeded",
        backend="tftrt",
        precision="FP16",
        output_model=f"/home/nvidia/.edge/jobs/20261203-0700-convert-ab12cd/artifacts/{NAME}",
        engines_built=True,
        seconds=212.4,
        summary=ConversionSummary(
            engines=[Engine(name="TRTEngineOp_000_000", nodes=412, ops={"Conv2D": 80})],
            ops_total=620,
            ops_converted=598,
            percent_converted=96.5,
        ),
    )
    stored = record_runs("convert", [conv], native, "a" * 64)
    p50 = {1: 4.1, 8: 17.5, 32: 61.0}
    stored += record_runs(
        "bench",
        [bench(native, "native", p50, worst_bs1=96.0)],
        native,
        "a" * 64,
        None,
        {ORIN: facts},
    )
    fast = {bs: ms / 2.6 for bs, ms in p50.items()}
    stored += record_runs(
        "bench", [bench(converted, "tftrt", fast)], converted, "b" * 64, None, {ORIN: facts}
    )
    return [r.run_id for r in stored], [native, converted]


@pytest.mark.parametrize("width", [1280, 800])
def test_report_fits_and_loads_in_chromium(tmp_path: Path, width: int) -> None:
    ids, models = record(tmp_path)
    rep = build_report(ids, tmp_path / "out")
    page = rep.html.read_text(encoding="utf-8")
    assert str(tmp_path) not in page and "alice" not in page and "/home/" not in page
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = browse(probed, width, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["innerWidth"] == width
    assert layout["scrollWidth"] <= width, layout  # nothing sticks out of the page
    assert layout["wide"] == [], layout
    assert len(layout["images"]) == len(rep.plots) == 5
    for complete, natural, shown in layout["images"]:
        assert complete and natural > 0 and 0 < shown <= width
    # The headline names the comparison, the speedup and the latencies the runs hold.
    assert layout["headline"].startswith(
        f"{NAME} on {ORIN}: converted (tftrt backend, FP16) vs native: 2.60x throughput at "
        "batch 32, p50 61.000 ms -> 23.462 ms"
    ), layout["headline"]

    shot = tmp_path / f"report-{width}.png"
    browse(rep.html, width, tmp_path / "profile", f"--screenshot={shot}")
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, width)
    assert np.asarray(image[..., :3]).std() > 0.05  # drawn, not a blank page
    keep = Path("/tmp/f-report-shots")
    if keep.is_dir():  # for looking at by eye
        shutil.copy(shot, keep / shot.name)
