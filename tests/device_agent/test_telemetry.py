"""tegrastats parsing (golden lines), the sampler (fake tegrastats, /proc) and the arithmetic."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from device_agent.protocol import TelemetrySample
from device_agent.telemetry import (
    TRIP_POINTS_C,
    TelemetrySampler,
    cpu_loads,
    parse_line,
    parse_tegrastats,
    proc_sample,
    read_meminfo,
    read_proc_stat,
    summarize,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "tegrastats"


def _lines(name: str) -> List[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _local(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%m-%d-%Y %H:%M:%S"))


def _expect(
    marker: str,
    ram: Any,
    swap: Any,
    cpu: List[Optional[float]],
    gpu: Optional[float],
    gpu_freq: Optional[List[int]],
    temps: Dict[str, float],
    rails: Dict[str, float],
    power: Optional[float],
    ts: float = 0.0,
) -> Dict[str, Any]:
    return {
        "marker": marker,
        "sample": {
            "ts": ts,
            "ram_used_mb": ram[0] if ram else None,
            "ram_total_mb": ram[1] if ram else None,
            "swap_used_mb": swap[0] if swap else None,
            "swap_total_mb": swap[1] if swap else None,
            "cpu_load_pct": cpu,
            "gpu_load_pct": gpu,
            "gpu_freq_mhz": gpu_freq,
            "temperatures_c": temps,
            "rails_mw": rails,
            "power_in_mw": power,
        },
    }


# Expected values, read off each line of samples.txt by hand, in file order. PMIC is kept
# as printed (the parser reports the line; summarize() ignores PMIC).
REAL = [
    _expect(  # TX1, L4T 32
        "VDD_IN 2532/2698",
        ram=(1179, 3983),
        swap=None,
        cpu=[1, 4, 0, 0],
        gpu=0,
        gpu_freq=[76],
        temps={
            "AO": 42.5,
            "CPU": 37.5,
            "GPU": 39,
            "PLL": 37,
            "Tdiode": 42.75,
            "PMIC": 100,
            "Tboard": 42,
            "thermal": 38.5,
        },
        rails={"VDD_IN": 2532, "VDD_CPU": 76, "VDD_GPU": 19},
        power=2532,
    ),
    _expect(  # Nano, JP4: POM_5V_IN is the input rail
        "POM_5V_IN 4520/4680",
        ram=(1180, 3965),
        swap=(149, 1024),
        cpu=[30, 33, 28, 26],
        gpu=0,
        gpu_freq=[76],
        temps={"PLL": 57, "CPU": 60.5, "PMIC": 100, "GPU": 59, "AO": 65, "thermal": 59.75},
        rails={"POM_5V_IN": 4520, "POM_5V_GPU": 0, "POM_5V_CPU": 1078},
        power=4520,
    ),
    _expect(  # TX2: MTS fg/bg, APE 150 are not rails
        "VDD_SYS_GPU 77/77",
        ram=(1873, 3830),
        swap=None,
        cpu=[8, 26, 24, 7, 7, 6],
        gpu=0,
        gpu_freq=[114],
        temps={
            "PLL": 39,
            "MCPU": 39,
            "PMIC": 50,
            "Tboard": 35,
            "GPU": 37,
            "BCPU": 39,
            "thermal": 38.5,
            "Tdiode": 37,
        },
        rails={
            "VDD_SYS_GPU": 77,
            "VDD_SYS_SOC": 539,
            "VDD_IN": 2930,
            "VDD_SYS_CPU": 539,
            "VDD_SYS_DDR": 727,
        },
        power=2930,
    ),
    _expect(  # AGX Xavier, no root: no GPU clock; no input rail: sum of all rails
        "VDDRQ 144/144",
        ram=(1903, 15692),
        swap=None,
        cpu=[1, 1, 2, 0, 0, 0, 0, 0],
        gpu=0,
        gpu_freq=None,
        temps={
            "AO": 32.5,
            "GPU": 32,
            "Tboard": 32,
            "Tdiode": 34.75,
            "AUX": 31.5,
            "CPU": 33.5,
            "thermal": 32.9,
            "PMIC": 100,
        },
        rails={"GPU": 0, "CPU": 216, "SOC": 864, "CV": 0, "VDDRQ": 144, "SYS5V": 1889},
        power=0 + 216 + 864 + 0 + 144 + 1889,
    ),
    _expect(  # Xavier NX, JP4
        "VDD_IN 6140/5510",
        ram=(5246, 7771),
        swap=(983, 20269),
        cpu=[47, 23, 32, 22, 31, 96],
        gpu=0,
        gpu_freq=[1109],
        temps={"AO": 29, "GPU": 31.5, "PMIC": 100, "AUX": 30, "CPU": 33.5, "thermal": 31.35},
        rails={"VDD_IN": 6140, "VDD_CPU_GPU_CV": 2706, "VDD_SOC": 1074},
        power=6140,
    ),
    _expect(  # Orin Nano, JP6: timestamp, lowercase sensors, mW units, GR3D_FREQ X%@[f]
        "VDD_IN 12479mW",
        ram=(6185, 7620),
        swap=(851, 3810),
        cpu=[15, 11, 14, 13, 11, 8],
        gpu=63,
        gpu_freq=[621],
        temps={
            "cpu": 53.968,
            "soc2": 52.437,
            "soc0": 50.75,
            "gpu": 53.343,
            "tj": 53.968,
            "soc1": 51.656,
        },
        rails={"VDD_IN": 12479, "VDD_CPU_GPU_CV": 4667, "VDD_SOC": 2817},
        power=12479,
        ts=_local("11-15-2024 08:38:09"),
    ),
    _expect(  # AGX Orin 64GB: per-GPC clocks, NVDLA0_FREQ @1600, no input rail -> sum
        "VDDQ_VDD2_1V8AO 1091mW",
        ram=(13983, 62780),
        swap=(126, 31390),
        cpu=[90] + [100] * 11,
        gpu=14,
        gpu_freq=[407, 407],
        temps={
            "CV0": 73.625,
            "CPU": 77.281,
            "Tboard": 62,
            "SOC2": 70,
            "Tdiode": 62.25,
            "SOC0": 69.531,
            "CV1": 72.5,
            "GPU": 69.125,
            "tj": 77.281,
            "SOC1": 68.968,
            "CV2": 67.25,
        },
        rails={
            "VDD_GPU_SOC": 3150,
            "VDD_CPU_CV": 14312,
            "VIN_SYS_5V0": 4968,
            "VDDQ_VDD2_1V8AO": 1091,
        },
        power=3150 + 14312 + 4968 + 1091,
        ts=_local("11-21-2025 08:49:48"),
    ),
    _expect(  # AGX Orin JP7.2: three-value rails (first kept), two-value temps (first kept)
        "VDD_GPU_SOC 5139mW/5139mW/5139mW",
        ram=(20642, 62817),
        swap=None,
        cpu=[23, 10, 4, 14, 30, 18, 10, 10, 33, 7, 5, 27],
        gpu=12,
        gpu_freq=[1300, 1300],
        temps={"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625},
        rails={"VDD_GPU_SOC": 5139, "VDD_CPU_CV": 3268, "VIN_SYS_5V0": 5500},
        power=5139 + 3268 + 5500,
        ts=_local("07-25-2026 09:08:28"),
    ),
    _expect(  # TX1, L4T 28.1: cluster cpu form, EMC, GR3D, no temps/rails
        "cpu [17%,13%,29%,5%]@408",
        ram=(3468, 3983),
        swap=(873, 8192),
        cpu=[17, 13, 29, 5],
        gpu=3,
        gpu_freq=[76],
        temps={},
        rails={},
        power=None,
    ),
    _expect(
        "cpu [17%,11%,65%,0%]@1734",
        ram=(3607, 3983),
        swap=(873, 8192),
        cpu=[17, 11, 65, 0],
        gpu=39,
        gpu_freq=[76],
        temps={},
        rails={},
        power=None,
    ),
]

SYNTHETIC = [
    _expect(  # Thor: no GPU load, VIN is the total (not VIN_SYS_5V0, not the sum)
        "GR3D_FREQ @[314,314,314]",
        ram=(5432, 125772),
        swap=(0, 0),
        cpu=[3, 1, 0, 2, 5, 0, 1, 0, 4, 0, 0, 1, 0, 2],
        gpu=None,
        gpu_freq=[314, 314, 314],
        temps={"cpu": 45.5, "gpu": 43.125, "tj": 46.25, "soc0": 44},
        rails={"VDD_GPU": 1210, "VDD_CPU_SOC_MSS": 5130, "VIN_SYS_5V0": 3900, "VIN": 19780},
        power=19780,
        ts=_local("10-02-2025 14:12:45"),
    ),
    _expect(  # offline sensors CV0/GPU omitted
        "CV0@-256C",
        ram=(13983, 62780),
        swap=(126, 31390),
        cpu=[90] + [100] * 11,
        gpu=14,
        gpu_freq=[407, 407],
        temps={
            "CPU": 77.281,
            "Tboard": 62,
            "SOC2": 70,
            "Tdiode": 62.25,
            "SOC0": 69.531,
            "CV1": 72.5,
            "tj": 77.281,
            "SOC1": 68.968,
            "CV2": 67.25,
        },
        rails={
            "VDD_GPU_SOC": 3150,
            "VDD_CPU_CV": 14312,
            "VIN_SYS_5V0": 4968,
            "VDDQ_VDD2_1V8AO": 1091,
        },
        power=23521,
        ts=_local("11-21-2025 08:49:48"),
    ),
    _expect(  # off cores -> None
        "13%@729,off,off]",
        ram=(6185, 7620),
        swap=(851, 3810),
        cpu=[15, 11, 14, 13, None, None],
        gpu=63,
        gpu_freq=[621],
        temps={
            "cpu": 53.968,
            "soc2": 52.437,
            "soc0": 50.75,
            "gpu": 53.343,
            "tj": 53.968,
            "soc1": 51.656,
        },
        rails={"VDD_IN": 12479, "VDD_CPU_GPU_CV": 4667, "VDD_SOC": 2817},
        power=12479,
        ts=_local("11-15-2024 08:38:09"),
    ),
    _expect(  # GR3D2_FREQ: clocks of both GPCs, the larger load
        "GR3D2_FREQ 35%@306",
        ram=(3503, 7337),
        swap=(430, 3668),
        cpu=[11, 13, 9, 18, None, None],
        gpu=35,
        gpu_freq=[305, 306],
        temps={
            "CV0": 42.718,
            "CPU": 44.093,
            "SOC2": 42.625,
            "SOC0": 43.281,
            "CV1": 42.25,
            "GPU": 41.343,
            "tj": 46.968,
            "SOC1": 46.968,
            "CV2": 42.875,
        },
        rails={"VDD_IN": 4915, "VDD_CPU_GPU_CV": 449, "VDD_SOC": 1431},
        power=4915,
        ts=_local("01-24-2024 09:17:09"),
    ),
]


def test_every_real_line_has_a_golden() -> None:
    lines = _lines("samples.txt")
    assert len(lines) == len(REAL) == 10
    text = (DATA / "samples.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(text):  # provenance: a `# source:` comment above every line
        if line.strip() and not line.startswith("#"):
            assert text[i - 1].startswith("# source:"), line
    assert len(_lines("synthetic.txt")) == len(SYNTHETIC)


@pytest.mark.parametrize(
    "name,index",
    [("samples.txt", i) for i in range(len(REAL))]
    + [("synthetic.txt", i) for i in range(len(SYNTHETIC))],
)
def test_golden_line(name: str, index: int) -> None:
    expected = (REAL if name == "samples.txt" else SYNTHETIC)[index]
    line = _lines(name)[index]
    assert expected["marker"] in line
    got = parse_tegrastats(line).to_dict()
    assert got == expected["sample"]


def test_cpu_clocks() -> None:
    lines = _lines("samples.txt")
    assert parse_line(lines[8])[1] == [408] * 4  # L4T 28 cluster form: one clock for all
    assert parse_line(lines[1])[1] == [1036] * 4
    assert parse_line(_lines("synthetic.txt")[2])[1] == [729] * 4 + [None, None]
    assert parse_line("RAM 1/2MB")[1] is None


def test_forms_and_unknown_tokens() -> None:
    s = parse_tegrastats("EMC_FREQ 0% GR3D_FREQ 42% BCPU@-45C PMIC@100C tj@-256C")
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (42, None)  # no root: no clock
    assert s.temperatures_c == {"BCPU": -45, "PMIC": 100}  # only -256 means offline
    s = parse_tegrastats(
        "APE 25 NVENC 716 NVDEC off VIC_FREQ 115 NVDLA0_FREQ @1600 OFA off "
        "MTS fg 0% bg 1% IRAM 0/252kB(lfb 252kB) (lfb 8x2MB) PVA0_FREQ off"
    )
    assert (s.rails_mw, s.temperatures_c, s.power_in_mw) == ({}, {}, None)
    assert s.cpu_load_pct is None and s.gpu_load_pct is None and s.ram_used_mb is None
    s = parse_tegrastats("VDD_IN 5000mW/4000mW/6000mW GPU 10/10 cpu@50C/51C CPU@40C")
    assert s.rails_mw == {"VDD_IN": 5000, "GPU": 10} and s.power_in_mw == 5000
    assert s.temperatures_c == {"cpu": 50, "CPU": 40}  # names as printed, case kept
    s = parse_tegrastats("GR3D 3%@76 GR3D_FREQ off")
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (3, [76])
    assert parse_tegrastats("VIN_SYS_5V0 3000mW/3000mW VDD_GPU 100mW/1mW").power_in_mw == 3100


def test_timestamp() -> None:
    line = "07-25-2026 09:08:28 RAM 1/2MB"
    assert parse_tegrastats(line).ts == _local("07-25-2026 09:08:28")
    assert parse_tegrastats(line, ts=12.5).ts == 12.5
    bad = parse_tegrastats("13-45-2024 99:99:99 RAM 1/2MB")
    assert bad.ts == 0.0 and bad.ram_used_mb == 1


GARBAGE = [
    "",
    "   ",
    "garbage",
    "RAM",
    "RAM x/yMB",
    "RAM 1/MB",
    "SWAP -1/2MB",
    "CPU [",
    "CPU [abc",
    "CPU [%@,@,]@",
    "cpu []@",
    "GR3D_FREQ",
    "GR3D_FREQ %@[",
    "GR3D_FREQ @[]",
    "GR3D_FREQ @[,,]",
    "VDD_IN",
    "VDD_IN /",
    "VDD_IN 1//2",
    "VDD_IN mW/mW",
    "@@@ C@ -C @C x@C",
    "\x00\xff\ufffd",
    "9" * 5000,
    "RAM " + "9" * 5000 + "/1MB",
    "tj@" + "9" * 400 + "C",
    "VDD_IN " + "9" * 400 + "/1",
    "CPU [" + "1%@1," * 5000 + "]",
    "01-01-1970",
    "99-99-9999 00:00:00",
    "}{][)(%@/",
]


@pytest.mark.parametrize("line", GARBAGE)
def test_garbage_never_raises(line: str) -> None:
    sample = parse_tegrastats(line)
    assert isinstance(sample, TelemetrySample)
    json.dumps(sample.to_dict(), allow_nan=False)


def test_fuzz_truncated_and_shuffled_lines() -> None:
    rng = random.Random(0)
    lines = _lines("samples.txt") + _lines("synthetic.txt")
    tokens = [t for ln in lines for t in ln.split()]
    for line in lines:
        for k in range(0, len(line), 7):
            parse_tegrastats(line[:k])
            parse_tegrastats(line[k:])
    for _ in range(500):
        fuzzed = " ".join(rng.choice(tokens) for _ in range(rng.randint(0, 30)))
        fuzzed = "".join(c if rng.random() > 0.05 else rng.choice("/@%[],C ") for c in fuzzed)
        sample = parse_tegrastats(fuzzed)
        json.dumps(sample.to_dict(), allow_nan=False)
    assert parse_tegrastats(b"RAM 1/2MB").ram_total_mb == 2  # type: ignore[arg-type]
    assert parse_tegrastats(None).ram_total_mb is None  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CLI


def _cli(stdin: str) -> List[Dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "device_agent.telemetry"],
        input=stdin.encode("utf-8"),
        capture_output=True,
        cwd=str(REPO),
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(ln) for ln in proc.stdout.decode().splitlines()]


def test_cli_contract() -> None:
    text = (DATA / "samples.txt").read_text(encoding="utf-8")  # comments are skipped
    out = _cli(text + "\n\nnot a tegrastats line\n")
    assert len(out) == len(REAL) + 1
    keys = {
        "ram_used_mb",
        "ram_total_mb",
        "swap_used_mb",
        "swap_total_mb",
        "cpu_load_pct",
        "gpu_load_pct",
        "temperatures_c",
        "rails_mw",
        "power_in_mw",
    }
    for got, expected in zip(out, REAL):
        assert keys <= set(got)
        assert got == expected["sample"]
    assert out[0]["swap_used_mb"] is None and out[0]["swap_total_mb"] is None  # null
    assert out[-1]["rails_mw"] == {} and out[-1]["power_in_mw"] is None
    thor = _cli(_lines("synthetic.txt")[0] + "\n")[0]
    assert thor["gpu_load_pct"] is None and thor["power_in_mw"] == 19780
    assert _cli(_lines("synthetic.txt")[2])[0]["cpu_load_pct"][-2:] == [None, None]


# --------------------------------------------------------------------------- sampler

FAKE_TEGRASTATS = """#!{python}
import os, signal, sys, time
args = sys.argv[1:]
with open({state!r} + "/argv", "w") as fh:
    fh.write(" ".join(args))
with open({state!r} + "/pid", "w") as fh:
    fh.write(str(os.getpid()))
if {ignore_term}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if {fail}:
    sys.stderr.write("tegrastats: permission denied\\n")
    sys.exit(3)
interval = int(args[args.index("--interval") + 1]) / 1000.0
lines = [ln for ln in open({data!r}).read().splitlines() if ln and not ln.startswith("#")]
i = 0
while True:
    sys.stdout.write(lines[i % len(lines)] + "\\n")
    sys.stdout.flush()
    i += 1
    time.sleep(interval)
"""


def _fake_tegrastats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: bool) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    script = bin_dir / "tegrastats"
    script.write_text(
        FAKE_TEGRASTATS.format(
            python=sys.executable,
            state=str(state),
            data=str(DATA / "samples.txt"),
            ignore_term=kw.get("ignore_term", False),
            fail=kw.get("fail", False),
        )
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    return state


def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sampler_runs_fake_tegrastats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _fake_tegrastats(tmp_path, monkeypatch)
    before = time.time()
    with TelemetrySampler(interval_ms=50) as sampler:
        assert sampler.source == "tegrastats"
        _wait_for(lambda: len(sampler.samples) >= 12)
    samples = sampler.stop()  # a second stop() is harmless
    assert len(samples) >= 12
    assert (state / "argv").read_text() == "--interval 50"
    for sample, expected in zip(samples, REAL):
        got = sample.to_dict()
        assert before <= got.pop("ts") <= time.time()  # stamped at read time
        assert got == {k: v for k, v in expected["sample"].items() if k != "ts"}
    assert [s.ts for s in samples] == sorted(s.ts for s in samples)
    assert sampler.cpu_freq_mhz[8] == [408] * 4
    pid = int((state / "pid").read_text())
    assert _gone(pid) and not Path(f"/proc/{pid}").exists()  # terminated and reaped


def test_sampler_kills_a_tegrastats_that_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _fake_tegrastats(tmp_path, monkeypatch, ignore_term=True)
    sampler = TelemetrySampler(interval_ms=20)
    sampler.start()
    _wait_for(lambda: len(sampler.samples) >= 2)
    sampler.stop()
    assert _gone(int((state / "pid").read_text()))


def test_sampler_reports_a_failing_tegrastats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _fake_tegrastats(tmp_path, monkeypatch, fail=True)
    sampler = TelemetrySampler(interval_ms=20)
    sampler.start()
    _wait_for(lambda: (state / "pid").exists())
    time.sleep(0.3)
    assert sampler.stop() == []
    assert any("status 3" in w and "permission denied" in w for w in sampler.warnings)


def test_proc_fallback_real_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with TelemetrySampler(interval_ms=50) as sampler:
        assert sampler.source == "proc"
        deadline = time.time() + 0.4
        while time.time() < deadline:
            sum(i * i for i in range(10000))  # some CPU load
        _wait_for(lambda: len(sampler.samples) >= 3)
    samples = sampler.samples
    assert len(samples) >= 3 and not sampler.warnings
    for s in samples:
        assert s.cpu_load_pct and any(x is not None for x in s.cpu_load_pct)
        assert all(x is None or 0.0 <= x <= 100.0 for x in s.cpu_load_pct)
        assert s.ram_total_mb and 0 < s.ram_used_mb <= s.ram_total_mb  # type: ignore[operator]
        assert s.swap_total_mb is not None and s.swap_used_mb is not None
        assert (s.gpu_load_pct, s.rails_mw, s.temperatures_c, s.power_in_mw) == (None, {}, {}, None)
    assert sampler.summarize(samples[0].ts, samples[-1].ts, 10)[0] is None  # no power


STAT = """cpu  400 0 200 1000 100 0 0 0 0 0
cpu0 {u0} 0 100 {i0} 50 0 0 0 0 0
cpu2 100 0 100 500 50 0 0 0 0 0
intr 1 2 3
"""


def test_proc_arithmetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stat").write_text(STAT.format(u0=100, i0=500))
    prev = read_proc_stat(str(tmp_path))
    assert prev == {0: (550, 750), 2: (550, 750)}
    (tmp_path / "stat").write_text(STAT.format(u0=175, i0=525))
    cur = read_proc_stat(str(tmp_path))
    # core 0: +75 busy, +25 idle -> 75%; core 1 offline -> None; core 2 idle -> 0%
    assert cpu_loads(prev, cur) == [75.0, None, 0.0]
    (tmp_path / "meminfo").write_text(
        "MemTotal:        4000000 kB\nMemFree:          500000 kB\n"
        "MemAvailable:    1000000 kB\nSwapTotal:       2097152 kB\nSwapFree:        1048576 kB\n"
    )
    mem = read_meminfo(str(tmp_path))
    s = proc_sample(prev, cur, mem, ts=5.0)
    assert (s.ram_used_mb, s.ram_total_mb, s.swap_used_mb, s.swap_total_mb) == (
        2929,
        3906,
        1024,
        2048,
    )
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    sampler = TelemetrySampler(interval_ms=20, proc_root=str(tmp_path))
    assert sampler.source == "proc"
    with sampler:
        _wait_for(lambda: len(sampler.samples) >= 2)
    assert sampler.samples[0].cpu_load_pct == [0.0, None, 0.0]  # no ticks elapsed


@pytest.mark.parametrize(
    "sysroot", sorted(p.name for p in (REPO / "tests/data/sysroots").iterdir() if p.is_dir())
)
def test_sampler_reads_meminfo_as_info_does(sysroot: str, tmp_path: Path) -> None:
    """One /proc/meminfo parser: the /proc sampler sees every field `info` sees, from the
    boards' real files and from one with the fields an old regex skipped."""
    from device_agent import facts

    root = REPO / "tests/data/sysroots" / sysroot
    expected = facts.read_meminfo(str(root))
    assert expected["MemTotal"] > 0
    assert read_meminfo(str(root / "proc")) == expected
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(
        (root / "proc/meminfo").read_text() + "Active(anon):      12 kB\nHugePages_Total:    3\n"
    )
    assert (
        read_meminfo(str(tmp_path / "proc"))
        == facts.read_meminfo(str(tmp_path))
        == {**expected, "Active(anon)": 12, "HugePages_Total": 3}
    )
    with pytest.raises(OSError):  # the sampler stops with a warning, info says nothing
        read_meminfo(str(tmp_path))


# --------------------------------------------------------------------------- arithmetic


def _s(ts: float, power: Optional[float] = None, **kw: Any) -> TelemetrySample:
    return TelemetrySample(ts=ts, power_in_mw=power, **kw)


def test_energy_constant_power() -> None:
    samples = [_s(t / 4, 5000.0) for t in range(9)]  # 0 .. 2 s
    power, gpu, temp, throttled, warnings = summarize(samples, 0.0, 2.0, 100)
    assert power is not None
    assert (power.avg_mw, power.peak_mw) == (5000.0, 5000.0)
    assert power.energy_per_inference_mj == pytest.approx(100.0)  # 5 W x 2 s / 100
    assert (gpu, temp, throttled, warnings) == (None, None, False, [])


def test_energy_trapezoid_and_window() -> None:
    # A ramp with uneven spacing: trapezoid mean (0.5*500 + 1.5*1000) / 2 = 875, where the
    # plain mean would be 666.7. Samples outside [start, end] are ignored.
    samples = [_s(-1.0, 99999.0), _s(0.5, 1000.0), _s(0.0, 0.0), _s(2.0, 1000.0), _s(2.5, 99999.0)]
    power = summarize(samples, 0.0, 2.0, 10)[0]
    assert power is not None
    assert power.avg_mw == pytest.approx(875.0)
    assert power.peak_mw == 1000.0
    assert power.energy_per_inference_mj == pytest.approx(875.0 * 2.0 / 10)
    one = summarize([_s(1.0, 3000.0)], 0.0, 4.0, 2)[0]
    assert one is not None and (one.avg_mw, one.energy_per_inference_mj) == (3000.0, 6000.0)


def test_summarize_edge_cases() -> None:
    assert summarize([], 0.0, 1.0, 10) == (None, None, None, False, [])
    power, _, _, _, warnings = summarize([_s(5.0, 10.0)], 0.0, 1.0, 10)
    assert power is None and "no telemetry samples" in warnings[0]
    power, _, _, _, warnings = summarize([_s(0.5, 10.0)], 0.0, 1.0, 0)
    assert power is None and "no inferences" in warnings[0]
    assert summarize([_s(0.5, 10.0)], 1.0, 0.0, 1)[4][0].startswith("bad window")


def test_gpu_load_and_temperature_peak() -> None:
    samples = [
        _s(0.0, gpu_load_pct=50.0, temperatures_c={"PMIC": 100.0, "CPU": 60.0, "tj": 61.5}),
        _s(1.0, gpu_load_pct=None, temperatures_c={"Tboard": 40.0}),
        _s(2.0, gpu_load_pct=100.0, temperatures_c={"gpu": 63.25}),
    ]
    _, gpu, temp, throttled, _ = summarize(samples, 0.0, 2.0, 1)
    assert (gpu, temp, throttled) == (75.0, 63.25, False)  # PMIC's constant 100C ignored


def test_thermal_trip_warnings() -> None:
    assert TRIP_POINTS_C["tj"] == 95.0
    hot = [
        _s(0.0, temperatures_c={"tj": 94.9, "SOC1": 90.0}),
        _s(1.0, temperatures_c={"tj": 96.5, "CV2": 95.0}),
        _s(2.0, temperatures_c={"tj": 95.5}),
    ]
    _, _, temp, throttled, warnings = summarize(hot, 0.0, 2.0, 1)
    assert throttled and temp == 96.5
    assert len(warnings) == 2
    assert "CV2 reached 95 C" in warnings[0] and "tj reached 96.5 C" in warnings[1]
    board = [_s(0.0, temperatures_c={"Tboard": 99.0, "PMIC": 100.0, "thermal": 96.0})]
    assert summarize(board, 0.0, 1.0, 1)[3:] == (False, [])


def _gpu_run(loads: List[Optional[float]], clocks: List[int]) -> List[TelemetrySample]:
    return [
        _s(float(i), gpu_load_pct=load, gpu_freq_mhz=[clock, clock])
        for i, (load, clock) in enumerate(zip(loads, clocks))
    ]


def test_gpu_clock_drop() -> None:
    dropped = summarize(_gpu_run([99, 99, 99, 98], [1300, 1300, 900, 1300]), 0, 9, 1)
    assert dropped[3] and "gpu clock: dropped to 900 MHz (max so far 1300 MHz)" in dropped[4][0]
    assert "1 of 4 samples" in dropped[4][0]
    # Not throttling: low load (DVFS), a ramp up at high load, exactly a 20% drop, and
    # Thor's load-less GR3D_FREQ (no load, no verdict).
    for loads, clocks in [
        ([99, 99, 10], [1300, 1300, 300]),
        ([99, 99, 99], [600, 900, 1300]),
        ([99, 99], [1300, 1040]),
        ([None, None], [1300, 300]),
    ]:
        assert summarize(_gpu_run(loads, clocks), 0, 9, 1)[3:] == (False, []), (loads, clocks)


def test_cpu_clock_drop() -> None:
    samples = [_s(float(i), cpu_load_pct=[95.0, 5.0]) for i in range(3)]
    freqs = [[2201, 2201], [2201, 2201], [1200, 729]]
    power, _, _, throttled, warnings = summarize(samples, 0, 9, 1, cpu_freq_mhz=freqs)
    assert throttled and len(warnings) == 1  # core 1 is idle: its low clock is DVFS
    assert "core 0 dropped to 1200 MHz (max so far 2201 MHz)" in warnings[0]
    assert summarize(samples, 0, 9, 1)[3] is False  # no clocks, no CPU verdict
    off = [[2201, 2201], [None, 2201], [2201, 2201]]
    assert summarize(samples, 0, 9, 1, cpu_freq_mhz=off)[3] is False


def test_summarize_parsed_lines() -> None:
    lines = _lines("samples.txt")
    samples = [parse_tegrastats(lines[7], ts=10.0), parse_tegrastats(lines[6], ts=11.0)]
    power, gpu, temp, throttled, warnings = summarize(samples, 10.0, 11.0, 4)
    assert power is not None
    assert power.avg_mw == pytest.approx((13907 + 23521) / 2)
    assert power.peak_mw == 23521
    assert power.energy_per_inference_mj == pytest.approx((13907 + 23521) / 2 / 4)
    assert (gpu, temp, throttled, warnings) == (13.0, 77.281, False, [])
