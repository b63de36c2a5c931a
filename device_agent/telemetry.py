"""Telemetry while a benchmark runs: tegrastats (or /proc) sampling and its arithmetic.

- `parse_tegrastats(line)`: one tegrastats line -> TelemetrySample (telemetry_parse.py).
- `TelemetrySampler`: a context manager that runs `tegrastats --interval N` (or samples
  /proc/stat and /proc/meminfo where tegrastats is absent) in a background thread.
- `summarize(...)`: power, energy per inference, GPU load, peak temperature, throttling.
- `python -m device_agent.telemetry`: tegrastats lines on stdin -> one JSON sample a line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Dict, List, Optional, Sequence, Tuple

from device_agent.facts import parse_meminfo
from device_agent.protocol import PowerStats, TelemetrySample
from device_agent.telemetry_parse import CpuFreqs, parse_line, parse_tegrastats

__all__ = ["TelemetrySampler", "parse_line", "parse_tegrastats", "summarize", "main"]

# Temperature warning thresholds (deg C) by sensor name, lower-cased with trailing digits
# removed (soc0 -> soc, CV2 -> cv). One conservative value, set below every trip point we
# could source: TX2 hardware shutdown 101.5 C and Tj max 105 C (TX2 Thermal Design Guide,
# quoted in NVIDIA forum thread t/61195); AGX Orin tj active trip 105 C (mainline Linux
# tegra234-p3701-0008.dtsi); the ~97 C software-throttle trip often quoted for Nano/TX1
# (unverified). Board sensors (Tboard), averages (thermal), PMIC and Wi-Fi are not checked.
TRIP_POINTS_C: Dict[str, float] = {
    name: 95.0
    for name in ("tj", "cpu", "gpu", "bcpu", "mcpu", "soc", "cv", "aux", "pll", "ao", "tdiode")
}
# Sensors left out of temp_peak: PMIC prints a constant (100C on Nano/TX1/Xavier).
IGNORED_SENSORS = frozenset({"pmic"})
# A clock is "dropped" when it falls below (1 - CLOCK_DROP) x the highest clock seen so far
# in the run while that unit's load is at least HIGH_LOAD_PCT (a DVFS governor lowers the
# clock only when load is low, so a low clock at high load means a thermal/power cap).
CLOCK_DROP = 0.20
HIGH_LOAD_PCT = 80.0


def _sensor_key(name: str) -> str:
    return re.sub(r"\d+$", "", name.lower())


# --------------------------------------------------------------------------- /proc


def read_proc_stat(proc_root: str = "/proc") -> Dict[int, Tuple[int, int]]:
    """Per-core (idle, total) jiffies from `<proc_root>/stat`; offline cores are absent."""
    cores: Dict[int, Tuple[int, int]] = {}
    with open(os.path.join(proc_root, "stat")) as fh:
        for line in fh:
            m = re.match(r"^cpu(\d+)\s+(.*)$", line)
            if not m:
                continue
            ticks = [int(x) for x in m.group(2).split()[:8]]  # guest is already in user
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            cores[int(m.group(1))] = (idle, sum(ticks))
    return cores


def cpu_loads(
    prev: Dict[int, Tuple[int, int]], cur: Dict[int, Tuple[int, int]]
) -> List[Optional[float]]:
    """Per-core load % between two `read_proc_stat` readings; None for an offline core."""
    if not cur:
        return []
    loads: List[Optional[float]] = []
    for core in range(max(cur) + 1):
        if core not in cur or core not in prev:
            loads.append(None)
            continue
        d_idle = cur[core][0] - prev[core][0]
        d_total = cur[core][1] - prev[core][1]
        busy = 100.0 * (1.0 - d_idle / d_total) if d_total > 0 else 0.0
        loads.append(round(min(100.0, max(0.0, busy)), 1))
    return loads


def read_meminfo(proc_root: str = "/proc") -> Dict[str, int]:
    """`<proc_root>/meminfo` as {field: kB} (parsed as `info` does: facts.parse_meminfo);
    OSError when it cannot be read, which ends /proc sampling with a warning."""
    with open(os.path.join(proc_root, "meminfo"), errors="replace") as fh:
        return parse_meminfo(fh.read())


def proc_sample(
    prev: Dict[int, Tuple[int, int]],
    cur: Dict[int, Tuple[int, int]],
    mem: Dict[str, int],
    ts: float,
) -> TelemetrySample:
    """A sample from /proc: CPU loads and RAM/swap in MB (used = total - MemAvailable)."""
    total = mem.get("MemTotal", 0)
    avail = mem.get(
        "MemAvailable", mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)
    )
    swap_total = mem.get("SwapTotal")
    swap_free = mem.get("SwapFree", 0)
    return TelemetrySample(
        ts=ts,
        ram_used_mb=(total - avail) // 1024 if total else None,
        ram_total_mb=total // 1024 if total else None,
        swap_used_mb=(swap_total - swap_free) // 1024 if swap_total is not None else None,
        swap_total_mb=swap_total // 1024 if swap_total is not None else None,
        cpu_load_pct=cpu_loads(prev, cur),
    )


# --------------------------------------------------------------------------- sampler


class TelemetrySampler:
    """Samples telemetry in a thread between `start()` and `stop()`.

    `source` is "tegrastats" when `tegrastats` is on PATH (it is run as our child with
    `--interval`), else "proc". Use as `with TelemetrySampler(100) as t: ...; t.samples`.
    """

    def __init__(
        self,
        interval_ms: int = 100,
        proc_root: str = "/proc",
        tegrastats: Optional[str] = None,
    ) -> None:
        self.interval_ms = max(1, int(interval_ms))
        self.proc_root = proc_root
        self.tegrastats = tegrastats or shutil.which("tegrastats")
        self.source = "tegrastats" if self.tegrastats else "proc"
        self.warnings: List[str] = []
        self._samples: List[TelemetrySample] = []
        self._cpu_freqs: List[CpuFreqs] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._proc: Optional[subprocess.Popen] = None
        self._stderr: Optional[IO[bytes]] = None

    def __enter__(self) -> TelemetrySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def samples(self) -> List[TelemetrySample]:
        with self._lock:
            return list(self._samples)

    @property
    def cpu_freq_mhz(self) -> List[CpuFreqs]:
        """Per-core CPU clocks of each sample (tegrastats only; TelemetrySample has none)."""
        with self._lock:
            return list(self._cpu_freqs)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("TelemetrySampler already started")
        target = self._read_proc
        if self.source == "tegrastats":
            try:
                self._stderr = tempfile.TemporaryFile()
                self._proc = subprocess.Popen(
                    [str(self.tegrastats), "--interval", str(self.interval_ms)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=self._stderr,
                )
                target = self._read_tegrastats
            except OSError as exc:
                self.warnings.append(f"tegrastats failed to start ({exc}); sampling /proc")
                self.source = "proc"
        self._thread = threading.Thread(target=target, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> List[TelemetrySample]:
        """Stop sampling (terminate and reap tegrastats) and return the samples."""
        self._halt.set()
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            elif proc.returncode != 0:
                self.warnings.append(
                    f"tegrastats exited early with status {proc.returncode}: {self._err()}"
                )
        if self._thread is not None:
            self._thread.join(timeout=5)
        if proc is not None and proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        self._proc, self._stderr = None, None
        return self.samples

    def summarize(
        self, start: float, end: float, inferences: int
    ) -> Tuple[Optional[PowerStats], Optional[float], Optional[float], bool, List[str]]:
        """`summarize()` over this sampler's samples, CPU clocks included."""
        with self._lock:
            samples, freqs = list(self._samples), list(self._cpu_freqs)
        return summarize(samples, start, end, inferences, cpu_freq_mhz=freqs)

    def _err(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read(2000).decode("utf-8", "replace").strip()

    def _add(self, sample: TelemetrySample, freqs: CpuFreqs) -> None:
        with self._lock:
            self._samples.append(sample)
            self._cpu_freqs.append(freqs)

    def _read_tegrastats(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            for raw in iter(proc.stdout.readline, b""):
                sample, freqs = parse_line(raw.decode("utf-8", "replace"), ts=time.time())
                self._add(sample, freqs)
        except (OSError, ValueError):  # the pipe was closed under us by stop()
            pass

    def _read_proc(self) -> None:
        try:
            prev = read_proc_stat(self.proc_root)
            while not self._halt.wait(self.interval_ms / 1000.0):
                cur = read_proc_stat(self.proc_root)
                mem = read_meminfo(self.proc_root)
                self._add(proc_sample(prev, cur, mem, time.time()), None)
                prev = cur
        except (OSError, ValueError, IndexError) as exc:
            self.warnings.append(f"/proc sampling stopped: {exc}")


# --------------------------------------------------------------------------- arithmetic


def _power(
    window: List[TelemetrySample],
    start: float,
    end: float,
    inferences: int,
    warnings: List[str],
) -> Optional[PowerStats]:
    """Time-weighted (trapezoid) mean of power_in_mw; energy/inference = avg x (end-start)."""
    points = [(s.ts, float(s.power_in_mw)) for s in window if s.power_in_mw is not None]
    if not points:
        return None
    if inferences < 1:
        warnings.append("no inferences in the window: energy per inference is undefined")
        return None
    span = points[-1][0] - points[0][0]
    if len(points) == 1 or span <= 0:
        avg = sum(p for _, p in points) / len(points)
    else:
        area = sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(points, points[1:]))
        avg = area / span
    # mW x s = mJ: the mean power held over the whole run, shared by its inferences.
    energy = avg * (end - start) / inferences
    return PowerStats(avg_mw=avg, peak_mw=max(p for _, p in points), energy_per_inference_mj=energy)


def _thermal_warnings(window: List[TelemetrySample]) -> List[str]:
    peaks: Dict[str, float] = {}
    for s in window:
        for name, value in s.temperatures_c.items():
            trip = TRIP_POINTS_C.get(_sensor_key(name))
            if trip is not None and value >= trip and value > peaks.get(name, -1e9):
                peaks[name] = value
    return [
        f"thermal: {name} reached {value:g} C (warning threshold "
        f"{TRIP_POINTS_C[_sensor_key(name)]:g} C, just below the throttle trip points)"
        for name, value in sorted(peaks.items())
    ]


def _drops(series: List[Tuple[Optional[float], Optional[float]]]) -> Tuple[int, float, float]:
    """(dropped samples, lowest clock, max before it) for (load, clock) pairs in time order."""
    peak, count, low, low_peak = 0.0, 0, 0.0, 0.0
    for load, clock in series:
        if clock is None or clock <= 0:
            continue
        if (
            load is not None
            and load >= HIGH_LOAD_PCT
            and peak > 0
            and clock < (1.0 - CLOCK_DROP) * peak
        ):
            count += 1
            if not low or clock < low:
                low, low_peak = clock, peak
        peak = max(peak, clock)
    return count, low, low_peak


def _clock_warnings(window: List[TelemetrySample], freqs: List[CpuFreqs]) -> List[str]:
    warnings = []
    gpu = [(s.gpu_load_pct, float(max(s.gpu_freq_mhz)) if s.gpu_freq_mhz else None) for s in window]
    count, low, peak = _drops(gpu)
    if count:
        warnings.append(
            f"gpu clock: dropped to {low:g} MHz (max so far {peak:g} MHz) at >= "
            f"{HIGH_LOAD_PCT:g}% load in {count} of {len(window)} samples"
        )
    cores = max((len(f) for f in freqs if f), default=0)
    for core in range(cores):
        series = []
        for s, f in zip(window, freqs):
            loads = s.cpu_load_pct or []
            load = loads[core] if core < len(loads) else None
            clock = f[core] if f and core < len(f) else None
            series.append((load, float(clock) if clock is not None else None))
        count, low, peak = _drops(series)
        if count:
            warnings.append(
                f"cpu clock: core {core} dropped to {low:g} MHz (max so far {peak:g} MHz) "
                f"at >= {HIGH_LOAD_PCT:g}% load in {count} of {len(window)} samples"
            )
    return warnings


def summarize(
    samples: Sequence[TelemetrySample],
    start: float,
    end: float,
    inferences: int,
    cpu_freq_mhz: Optional[Sequence[CpuFreqs]] = None,
) -> Tuple[Optional[PowerStats], Optional[float], Optional[float], bool, List[str]]:
    """(power, gpu_load_avg, temp_peak, throttled, warnings) over samples in [start, end].

    - power: avg_mw is the time-weighted (trapezoid) mean of power_in_mw over the samples'
      span (one sample: its value); peak_mw the max; energy_per_inference_mj =
      avg_mw x (end - start) s / inferences (mW x s = mJ). None without power data.
    - gpu_load_avg: plain mean over the samples that report a GPU load.
    - temp_peak: max over all sensors of all samples, PMIC excluded.
    - throttled: a sensor of TRIP_POINTS_C reached its threshold, or a GPU/CPU clock fell
      more than CLOCK_DROP below the run's max so far while that unit's load was
      >= HIGH_LOAD_PCT. `cpu_freq_mhz` (per sample, aligned with `samples`) enables the
      CPU check; `TelemetrySampler.summarize` passes it.
    """
    warnings: List[str] = []
    if end < start:
        return None, None, None, False, [f"bad window: end {end} is before start {start}"]
    freqs = list(cpu_freq_mhz) if cpu_freq_mhz is not None else []
    freqs += [None] * (len(samples) - len(freqs))
    pairs = sorted(
        ((s, f) for s, f in zip(samples, freqs) if start <= s.ts <= end), key=lambda p: p[0].ts
    )
    window = [s for s, _ in pairs]
    if samples and not window:
        warnings.append(f"no telemetry samples within the run ({len(samples)} outside it)")
    power = _power(window, start, end, inferences, warnings)
    loads = [s.gpu_load_pct for s in window if s.gpu_load_pct is not None]
    gpu_avg = sum(loads) / len(loads) if loads else None
    temps = [
        v
        for s in window
        for k, v in s.temperatures_c.items()
        if _sensor_key(k) not in IGNORED_SENSORS
    ]
    temp_peak = max(temps) if temps else None
    throttle = _thermal_warnings(window) + _clock_warnings(window, [f for _, f in pairs])
    return power, gpu_avg, temp_peak, bool(throttle), warnings + throttle


# --------------------------------------------------------------------------- CLI


def main(argv: Optional[List[str]] = None) -> int:
    """Read tegrastats lines on stdin, print one JSON TelemetrySample per line."""
    parser = argparse.ArgumentParser(
        prog="python -m device_agent.telemetry",
        description="Parse tegrastats lines (stdin) into JSON objects (stdout), one a line. "
        "Blank lines and lines starting with '#' are skipped.",
    )
    parser.parse_args(argv)
    try:
        for raw in sys.stdin.buffer:
            line = raw.decode("utf-8", "replace").strip()
            if not line or line.startswith("#"):
                continue
            sys.stdout.write(json.dumps(parse_tegrastats(line).to_dict(), sort_keys=True))
            sys.stdout.write("\n")
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
