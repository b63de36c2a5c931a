"""The push benchmark's CPU/MiB math, its issue 14 target verdicts and the scale lines."""

from __future__ import annotations

import pytest
from netlab.report import MIB, Row, check_targets, cpu_ms_per_mib, table

N = 16


def verdicts(rows: list[Row]) -> dict[str, str]:
    return {t.text: t.verdict for t in check_targets(rows, N)}


def one(rows: list[Row], starts: str) -> str:
    hits = [v for text, v in verdicts(rows).items() if text.startswith(starts)]
    assert len(hits) == 1, (starts, verdicts(rows))
    return hits[0]


def test_cpu_ms_per_mib_counts_every_device() -> None:
    # 16 devices x 128 MiB = 2048 MiB sent; 25.6 s of CPU is 12.5 ms per MiB (issue 14)
    assert cpu_ms_per_mib(25.6, 128 * MIB, 16) == pytest.approx(12.5)
    assert cpu_ms_per_mib(0.27, 100 * MIB, 1) == pytest.approx(2.7)
    row = Row(3, "g", "t", 10.0, nbytes=64 * MIB, devices=4, cpu_s=1.28)
    assert row.cpu_ms_per_mib == pytest.approx(5.0)
    assert row.agg_mib_s == pytest.approx(4 * 6.4)


@pytest.mark.parametrize(("cpu", "nbytes", "devices"), [(None, MIB, 1), (1.0, 0, 1), (1.0, MIB, 0)])
def test_cpu_ms_per_mib_unknown(cpu: float | None, nbytes: int, devices: int) -> None:
    assert cpu_ms_per_mib(cpu, nbytes, devices) is None


def fanout(edge_s: float, scp_s: float, edge_cpu: float, pm_cpu: float) -> list[Row]:
    nb = 128 * MIB
    return [
        Row(3, "g", "scp", scp_s, nbytes=nb, devices=N, key="c3.scp", cpu_s=5.0),
        Row(3, "g", "pm", 20.0, nbytes=nb, devices=N, key="c3.paramiko", cpu_s=pm_cpu),
        Row(3, "g", "edge", edge_s, "edge", nb, N, key="c3.edge", cpu_s=edge_cpu),
    ]


def test_fanout_time_target() -> None:
    assert one(fanout(12.0, 12.2, 1, 1), "16 devices fan-out: edge no slower") == "PASS"
    assert one(fanout(12.2, 12.2, 1, 1), "16 devices fan-out: edge no slower") == "PASS"
    assert one(fanout(26.3, 12.2, 1, 1), "16 devices fan-out: edge no slower") == "FAIL"


def test_fanout_cpu_target_is_within_1_5x_of_paramiko() -> None:
    cpu = "16 devices fan-out: edge's client CPU"
    assert one(fanout(12, 12, edge_cpu=7.5, pm_cpu=5.0), cpu) == "PASS"  # exactly 1.5x
    assert one(fanout(12, 12, edge_cpu=7.6, pm_cpu=5.0), cpu) == "FAIL"
    assert one(fanout(12, 12, edge_cpu=25.6, pm_cpu=5.5), cpu) == "FAIL"  # issue 14: 4.6x
    rows = fanout(12, 12, 1, 1)
    rows[1].cpu_s = None  # paramiko's CPU not counted: no verdict
    assert one(rows, cpu) == "n/a"


def single(edge: float, scp: float, tcp: float) -> list[Row]:
    return [
        Row(1, "g", "tcp", tcp, "ref", key="c1.tcp"),
        Row(1, "g", "scp", scp, key="c1.scp"),
        Row(1, "g", "edge", edge, "edge", key="c1.edge"),
    ]


def test_single_device_targets() -> None:
    ceiling = "1 device, 100 Mbit/s: edge >= 95% of the raw TCP"
    vs_scp = "1 device, 100 Mbit/s: edge >= scp"
    assert one(single(edge=11.0, scp=11.5, tcp=10.5), ceiling) == "PASS"  # 95.5%
    assert one(single(edge=11.0, scp=11.5, tcp=10.4), ceiling) == "FAIL"  # 94.5%
    assert one(single(edge=11.0, scp=11.5, tcp=10.5), vs_scp) == "PASS"
    assert one(single(edge=13.31, scp=11.54, tcp=11.2), vs_scp) == "FAIL"


def test_model_rtt_repush_probe_targets() -> None:
    rows = [
        Row(1, "m", "scp", 1.73, key="c1.model_scp"),
        Row(1, "m", "edge", 3.11, "edge", key="c1.model_edge"),
        Row(2, "r", "scp", 4.49, key="c2.scp"),
        Row(2, "r", "edge", 1.49, "edge", key="c2.edge"),
        Row(4, "p", "rsync", 4.13, key="c4.rsync"),
        Row(4, "p", "edge", 4.0, "edge", key="c4.edge"),
        Row(4, "p", "edge warm", 0.5, "edge", key="c4.edge_warm"),
        Row(5, "q", "ssh", 2.09, key="c5.ssh"),
        Row(5, "q", "edge", 2.47, "edge", key="c5.edge_cold"),
        Row(5, "q", "edge warm", 0.29, "edge", key="c5.edge_warm"),
    ]
    assert one(rows, "1 device, 100 Mbit/s: MobileNetV2") == "FAIL"
    assert one(rows, "1 device, 50 ms RTT") == "PASS"  # 4.49 / 1.49 = 3.01x
    rows[3].seconds = 1.5  # 2.99x
    assert one(rows, "1 device, 50 ms RTT") == "FAIL"
    assert one(rows, "unchanged re-push to 16, cold") == "PASS"
    assert one(rows, "unchanged re-push to 16, warm") == "FAIL"  # 0.5 is not under 0.5
    assert one(rows, "probe of 16, cold") == "FAIL"
    assert one(rows, "probe of 16, warm") == "PASS"


def test_unmeasured_targets_say_so_and_old_targets_are_gone() -> None:
    targets = check_targets([], N)
    assert {t.verdict for t in targets} == {"n/a"}
    texts = " ".join(t.text for t in targets)
    assert "Ansible" not in texts and "line time" not in texts
    assert len([t for t in targets if not t.text.startswith("scale")]) == 10


def test_scale_lines_report_growth() -> None:
    nb = 32 * MIB
    rows = [
        Row(6, "a", "scp", 4.0, nbytes=nb, devices=16, key="c6.scp.small"),
        Row(6, "b", "scp", 32.0, nbytes=nb, devices=64, key="c6.scp.large"),
        Row(6, "a", "edge", 8.0, "edge", nb, 16, key="c6.edge.small"),
    ]
    lines = {t.text: t for t in check_targets(rows, N) if t.text.startswith("scale")}
    scp = lines["scale, no shaping: parallel scp aggregate MiB/s"]
    assert scp.verdict == "info"
    # 16 x 32 MiB / 4 s = 128 MiB/s; 64 x 32 MiB / 32 s = 64 MiB/s: grew 0.5x
    assert "128 MiB/s" in scp.detail and "64 MiB/s" in scp.detail and "0.50x" in scp.detail
    assert lines["scale, no shaping: edge push aggregate MiB/s"].verdict == "n/a"


def test_table_shows_cpu_columns() -> None:
    rows = [Row(3, "g", "edge", 10.0, "edge", 10 * MIB, 2, cpu_s=0.5)]
    line = table(rows).splitlines()[-1]
    cells = [c.strip() for c in line.split("|")]
    assert "0.50" in cells and "25.00" in cells  # 0.5 s over 20 MiB = 25 ms/MiB
