"""Parse one line of `tegrastats` output, from TX1 (L4T 28) to Thor (JetPack 7).

The parser is pure and total: it never raises, and a token it does not recognize is
skipped. Forms handled (see tests/data/tegrastats/ for real lines of each):

- `MM-DD-YYYY HH:MM:SS` prefix (JP5+): parsed as local time into `ts`.
- `RAM X/YMB (lfb ..)`, `SWAP X/YMB (cached ZMB)`; `IRAM`, `lfb`, `cached` are ignored.
- CPU: per core `CPU [X%@MHz,...,off]` (an `off` core -> None) and the L4T 28 cluster
  form `cpu [a%,b%,...]@MHz`.
- GPU: `GR3D_FREQ X%@MHz`, `X%@[f0,f1]` (one clock per GPC), Thor's load-less `@[f,f,f]`
  (load None), L4T 28 `GR3D X%@MHz`, and non-root `GR3D_FREQ X%` (no clock). Early Orin
  `GR3D2_FREQ` adds a clock; the load is the larger of the two.
- Temperatures `name@X.XC` (any case, name as printed); JP7.2 `cpu@52.968C/52.968C` keeps
  the first value; `-256C` (sensor offline) is omitted. PMIC is kept as printed: it is a
  real token of the line, although on Nano/TX1/Xavier it is a constant 100C placeholder;
  `telemetry.summarize` leaves it out of peaks and trip checks instead.
- Power rails `NAME X/Y` (JP4, bare mW), `NAME XmW/YmW` (JP5+), `NAME XmW/YmW/ZmW` (JP7.2):
  the FIRST value (current power) is kept. A rail value always contains a slash, so
  `APE 25`, `NVENC 716`, `VIC_FREQ 115` are never rails.
- `power_in_mw`: the module input rail (`VDD_IN`, `POM_5V_IN`, or Thor's `VIN`, the
  carrier-board total; Thor's `VIN_SYS_5V0` is a sub-rail), else the sum of all rails
  (AGX Xavier, AGX Orin have no input rail; jtop's `total_power()` does the same), else None.
"""

from __future__ import annotations

import re
import time
from typing import Dict, List, Optional, Tuple

from device_agent.protocol import TelemetrySample

# Module input rails, in order of preference. Anything else is a subset of these.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")

_INT = r"\d{1,9}"
_NUM = r"\d{1,9}(?:\.\d{1,6})?"
_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
_MEM = re.compile(r"^(" + _INT + r")/(" + _INT + r")MB$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RAIL_VALUE = re.compile(r"^(" + _NUM + r")(?:mW)?(?:/" + _NUM + r"(?:mW)?){1,3}$")
_TEMP = re.compile(r"^([A-Za-z][A-Za-z0-9_.\-]*)@(-?" + _NUM + r")C(?:/.*)?$")
_CORE = re.compile(r"^(" + _NUM + r")%(?:@(" + _INT + r"))?$")
_GPU = re.compile(r"^(?:(" + _NUM + r")%)?(?:@(?:(" + _INT + r")|\[([\d,]{1,200})\]))?$")
_OFFLINE_C = -256.0
# Memory fields are never rails (their values end in MB/kB anyway). `CPU` and `GPU` are
# not listed: on AGX Xavier `CPU 216/216` and `GPU 0/0` are power rails.
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM"})

CpuFreqs = Optional[List[Optional[int]]]


def _ints(text: str) -> List[int]:
    return [int(p) for p in text.split(",") if p.isdigit() and len(p) <= 9]


def _timestamp(tokens: List[str]) -> Tuple[Optional[float], int]:
    """(epoch seconds in local time, tokens used) for a leading `MM-DD-YYYY HH:MM:SS`."""
    if len(tokens) < 2:
        return None, 0
    d, t = _DATE.match(tokens[0]), _TIME.match(tokens[1])
    if not d or not t:
        return None, 0
    month, day, year = (int(x) for x in d.groups())
    hour, minute, second = (int(x) for x in t.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None, 2
    try:
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1)), 2
    except (OverflowError, ValueError):
        return None, 2


def _cpu(value: str) -> Tuple[List[Optional[float]], List[Optional[int]]]:
    """Loads and clocks of `[X%@F,...,off]` or the L4T 28 cluster form `[a%,b%]@F`."""
    body, _, cluster = value[1:].partition("]")
    cluster_freq = int(cluster[1:]) if re.match(r"^@" + _INT + "$", cluster) else None
    loads: List[Optional[float]] = []
    freqs: List[Optional[int]] = []
    for entry in body.split(","):
        m = _CORE.match(entry)
        if m:
            loads.append(float(m.group(1)))
            freqs.append(int(m.group(2)) if m.group(2) else cluster_freq)
        else:  # "off", or something unreadable: the core gives no number
            loads.append(None)
            freqs.append(None)
    return loads, freqs


def _gpu(value: str) -> Tuple[Optional[float], Optional[List[int]], bool]:
    """(load, clocks, matched) of `X%@F`, `X%@[f,f]`, `@[f,f,f]`, `X%`."""
    m = _GPU.match(value)
    if not m or not any(m.groups()):
        return None, None, False
    load = float(m.group(1)) if m.group(1) else None
    if m.group(2):
        return load, [int(m.group(2))], True
    if m.group(3):
        return load, _ints(m.group(3)) or None, True
    return load, None, True


class _Line:
    """Accumulates the fields of one line while its tokens are read."""

    def __init__(self) -> None:
        self.sample = TelemetrySample()
        self.cpu_freqs: CpuFreqs = None

    def keyword(self, key: str, value: str) -> bool:
        """Handle `key value`; True when the pair was understood."""
        s = self.sample
        if key in ("RAM", "SWAP"):
            m = _MEM.match(value)
            if not m:
                return False
            used, total = int(m.group(1)), int(m.group(2))
            if key == "RAM":
                s.ram_used_mb, s.ram_total_mb = used, total
            else:
                s.swap_used_mb, s.swap_total_mb = used, total
            return True
        if key in ("CPU", "cpu"):
            if not value.startswith("["):
                return False
            s.cpu_load_pct, self.cpu_freqs = _cpu(value)
            return True
        if key in ("GR3D_FREQ", "GR3D", "GR3D2_FREQ"):
            load, freqs, ok = _gpu(value)
            if not ok:
                return False
            if key == "GR3D2_FREQ":  # early Orin: a second GPC printed on its own
                if load is not None:
                    s.gpu_load_pct = max(load, s.gpu_load_pct or 0.0)
                if freqs:
                    s.gpu_freq_mhz = (s.gpu_freq_mhz or []) + freqs
            else:
                s.gpu_load_pct = load
                s.gpu_freq_mhz = freqs
            return True
        return False

    def rail(self, name: str, value: str) -> bool:
        if name in _NOT_RAILS or not _NAME.match(name):
            return False
        m = _RAIL_VALUE.match(value)
        if not m:
            return False
        self.sample.rails_mw[name] = float(m.group(1))
        return True

    def temperature(self, token: str) -> bool:
        m = _TEMP.match(token)
        if not m:
            return False
        degrees = float(m.group(2))
        if degrees > _OFFLINE_C:  # -256C: the sensor is offline
            self.sample.temperatures_c[m.group(1)] = degrees
        return True

    def finish(self) -> None:
        rails = self.sample.rails_mw
        self.sample.power_in_mw = _input_power(rails)


def _input_power(rails: Dict[str, float]) -> Optional[float]:
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name]
    return float(sum(rails.values())) if rails else None


def parse_line(line: str, ts: Optional[float] = None) -> Tuple[TelemetrySample, CpuFreqs]:
    """Parse `line` into a sample and the per-core CPU clocks (MHz, None when off/absent).

    `ts` overrides the line's own timestamp; without either, `ts` is 0.0.
    """
    parsed = _Line()
    try:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        tokens = str(line).split()
        stamp, i = _timestamp(tokens)
        parsed.sample.ts = ts if ts is not None else (stamp or 0.0)
        while i < len(tokens):
            token = tokens[i]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            try:
                if nxt and (parsed.keyword(token, nxt) or parsed.rail(token, nxt)):
                    i += 2
                    continue
                parsed.temperature(token)
            except (ValueError, IndexError, OverflowError):
                pass  # an unreadable part of the line: skip it
            i += 1
        parsed.finish()
    except Exception:  # a parser of monitoring output must never raise
        pass
    return parsed.sample, parsed.cpu_freqs


def parse_tegrastats(line: str, ts: Optional[float] = None) -> TelemetrySample:
    """Parse one tegrastats line; never raises (unknown or broken parts are skipped)."""
    return parse_line(line, ts)[0]
