"""Pure tables and parsers of device_agent.jetson, on real strings from Jetson boards."""

from __future__ import annotations

import re

import pytest

from device_agent import jetson

# --------------------------------------------------------------------------- nv_tegra_release

# Real first lines of /etc/nv_tegra_release (see tests/data/sysroots/PROVENANCE.md).
RELEASE_LINES = [
    (
        "# R32 (release), REVISION: 7.1, GCID: 29689809, BOARD: t186ref, EABI: aarch64, "
        "DATE: Wed Feb  2 21:33:23 UTC 2022",
        "32.7.1",
    ),
    (
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
        "DATE: Sat Feb 19 17:05:08 UTC 2022",
        "32.7.1",
    ),
    (
        "# R35 (release), REVISION: 3.1, GCID: 32790763, BOARD: t186ref, EABI: aarch64, "
        "DATE: Wed Mar 15 07:54:12 UTC 2023",
        "35.3.1",
    ),
    (
        "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, "
        "DATE: Mon Jun 16 16:07:13 UTC 2025",
        "36.4.4",
    ),
    (
        "# R36 (release), REVISION: 4.7, GCID: 42132812, BOARD: generic, EABI: aarch64, "
        "DATE: Thu Sep 18 22:54:44 UTC 2025\n# KERNEL_VARIANT: oot\n"
        "TARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n",
        "36.4.7",
    ),
    (
        "# R38 (release), REVISION: 2.2, GCID: 42205042, BOARD: generic, EABI: aarch64, "
        "DATE: Thu Sep 25 22:47:11 UTC 2025",
        "38.2.2",
    ),
]


@pytest.mark.parametrize("text, l4t", RELEASE_LINES)
def test_parse_nv_tegra_release_real_lines(text: str, l4t: str) -> None:
    assert jetson.parse_nv_tegra_release(text) == l4t


@pytest.mark.parametrize(
    "text",
    [None, "", "not a release line", "R36 REVISION 4.4", "# R (release), REVISION: 1.0"],
)
def test_parse_nv_tegra_release_rejects_other_text(text: object) -> None:
    assert jetson.parse_nv_tegra_release(text) is None  # type: ignore[arg-type]


def test_parse_nv_tegra_release_keeps_every_digit() -> None:
    # A regex, not jtop's lstrip("# R")/rstrip(" (release)") character sets: two-digit
    # fields come through whole.
    line = "# R40 (release), REVISION: 10.0, GCID: 1, BOARD: generic, EABI: aarch64"
    assert jetson.parse_nv_tegra_release(line) == "40.10.0"
    assert jetson.normalize_l4t("36.2") == "36.2.0"
    assert jetson.normalize_l4t("R35.3.1") == "35.3.1"
    assert jetson.normalize_l4t("junk") is None


# --------------------------------------------------------------------------- L4T -> JetPack

# From the research notes (tftrt-and-jetson-stack.md section 3, benchmarking section 2).
JETPACK_CASES = [
    ("32.6.1", "4.6"),
    ("32.7.1", "4.6.1"),
    ("32.7.3", "4.6.3"),
    ("32.7.6", "4.6.6"),
    ("35.1.0", "5.0.2"),
    ("35.2.1", "5.1"),
    ("35.3.1", "5.1.1"),
    ("35.4.1", "5.1.2"),
    ("35.5.0", "5.1.3"),
    ("36.2", "6.0 DP"),
    ("36.3", "6.0"),
    ("36.4.0", "6.1"),
    ("36.4.3", "6.2"),
    ("36.4.4", "6.2.1"),
    ("36.4.7", "6.2.1"),
    ("36.5.0", "6.2.2"),
    ("38.2", "7.0"),
    ("38.4", "7.1"),
    ("39.2", "7.2"),
]


@pytest.mark.parametrize("l4t, jetpack", JETPACK_CASES)
def test_jetpack_for_known_l4t(l4t: str, jetpack: str) -> None:
    assert jetson.jetpack_for_l4t(l4t) == jetpack


@pytest.mark.parametrize(
    "l4t, nearest, jetpack",
    [
        ("36.4.5", "36.4.4", "6.2.1"),  # unknown patch: closest earlier one of 36.4
        ("36.4.1", "36.4.0", "6.1"),
        ("35.3.0", "35.3.1", "5.1.1"),  # nothing earlier in 35.3: the closest later one
        ("32.7.9", "32.7.6", "4.6.6"),
        ("38.2.3", "38.2.2", "7.0"),
    ],
)
def test_jetpack_falls_back_within_major_minor(l4t: str, nearest: str, jetpack: str) -> None:
    assert jetson.nearest_l4t(l4t) == nearest
    assert jetson.jetpack_for_l4t(l4t) == jetpack


@pytest.mark.parametrize("l4t", ["40.1.0", "36.9.0", "35.9", "99", "", None, "not-a-version"])
def test_unknown_l4t_line_maps_to_none(l4t: object) -> None:
    # A future release must not be guessed into a JetPack it is not, nor crash.
    assert jetson.nearest_l4t(l4t) is None  # type: ignore[arg-type]
    assert jetson.jetpack_for_l4t(l4t) is None  # type: ignore[arg-type]


def test_jetpack_table_keys_are_normalized() -> None:
    for key in jetson.JETPACK_BY_L4T:
        assert re.fullmatch(r"\d+\.\d+\.\d+", key), key
        assert jetson.normalize_l4t(key) == key


# --------------------------------------------------------------------------- module table


def test_device_classes_cover_the_recipe_slugs() -> None:
    classes = jetson.device_classes()
    assert len(classes) == len(set(classes))
    for slug in [
        "nano-2gb",
        "nano-4gb",
        "tx1-4gb",
        "tx2-4gb",
        "tx2-8gb",
        "xavier-nx-8gb",
        "xavier-nx-16gb",
        "agx-xavier-8gb",
        "agx-xavier-16gb",
        "agx-xavier-32gb",
        "agx-xavier-64gb",
        "orin-nano-4gb",
        "orin-nano-8gb",
        "orin-nx-8gb",
        "orin-nx-16gb",
        "agx-orin-32gb",
        "agx-orin-64gb",
        "thor-128gb",
    ]:
        assert slug in classes


def test_module_table_is_consistent() -> None:
    parts = [part for mod in jetson.MODULES for part in mod.parts]
    assert len(parts) == len(set(parts))
    for mod in jetson.MODULES:
        assert mod.compute_capability == jetson.COMPUTE_CAPABILITY[mod.soc]
        # the slug ends in the nominal memory, e.g. "orin-nano-8gb" <-> 8192 MB
        assert mod.device_class.endswith(f"-{mod.memory_mb // 1024}gb")
        assert all(re.fullmatch(r"p\d{4}-\d{4}", part) for part in mod.parts)


@pytest.mark.parametrize(
    "soc, cc",
    [
        ("tegra210", "5.3"),
        ("tegra186", "6.2"),
        ("tegra194", "7.2"),
        ("tegra234", "8.7"),
        ("tegra264", "11.0"),
        ("tegra999", None),
        (None, None),
    ],
)
def test_compute_capability_by_soc(soc: object, cc: object) -> None:
    assert jetson.compute_capability_for(soc) == cc  # type: ignore[arg-type]


def test_find_module_by_slug_name_or_part() -> None:
    assert jetson.find_module("orin-nano-8gb").parts == ("p3767-0003", "p3767-0005")
    assert jetson.find_module("Jetson AGX Orin 64GB").device_class == "agx-orin-64gb"
    assert jetson.find_module("p3448-0003").device_class == "nano-2gb"
    assert jetson.find_module("raspberry-pi-5") is None


# --------------------------------------------------------------------------- device tree


def test_device_tree_strings_are_nul_terminated() -> None:
    assert jetson.parse_dt_string(b"NVIDIA Jetson Nano Developer Kit\0") == (
        "NVIDIA Jetson Nano Developer Kit"
    )
    assert jetson.parse_dt_string(b"\0") is None
    assert jetson.parse_dt_string(None) is None
    assert jetson.parse_dt_string_list(
        b"nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0"
    ) == ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"]
    # undecodable bytes do not raise
    assert jetson.parse_dt_string(b"Jetson \xff\0") == "Jetson \ufffd"


NANO = ["nvidia,p3449-0000-b00+p3448-0000-b00", "nvidia,jetson-nano", "nvidia,tegra210"]
TX2 = ["nvidia,quill", "nvidia,tegra186"]
AGX_XAVIER = [
    "nvidia,galen",
    "nvidia,jetson-xavier",
    "nvidia,p2822-0000+p2888-0001",
    "nvidia,tegra194",
]
XAVIER_NX = [
    "nvidia,p3509-0000-a00+p3668-0000-a01",
    "nvidia,p3509-0000-a00+p3668-0001-a01",
    "nvidia,tegra194",
]
AGX_ORIN_MAINLINE = ["nvidia,p3737-0000+p3701-0000", "nvidia,p3701-0000", "nvidia,tegra234"]
ORIN_NANO = ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"]
THOR = ["nvidia,p4071-0000+p3834-0008", "nvidia,p3834-0008", "nvidia,tegra264"]


def test_part_numbers_put_the_module_before_the_carrier() -> None:
    assert jetson.part_numbers(NANO) == ["p3448-0000", "p3449-0000"]
    assert jetson.part_numbers(NANO, b"3448\0") == ["p3448-0000", "p3449-0000", "p3448"]
    assert jetson.part_numbers([], "3767:0005") == ["p3767-0005"]
    assert jetson.part_numbers(TX2) == []


@pytest.mark.parametrize(
    "compatible, soc",
    [
        (NANO, "tegra210"),
        (TX2, "tegra186"),
        (AGX_XAVIER, "tegra194"),
        (ORIN_NANO, "tegra234"),
        (THOR, "tegra264"),
        (["nvidia,tegra210b01"], "tegra210"),
        (["raspberrypi,5-model-b", "brcm,bcm2712"], None),
        ([], None),
    ],
)
def test_soc_from_compatible(compatible: list, soc: object) -> None:
    assert jetson.soc_from_compatible(compatible) == soc


# (model, compatible, boardids, MemTotal MB) -> device class. Memory totals are the
# MemTotal/tegrastats figures of real boards (7620 Orin Nano 8GB, 3830 TX2 4GB, 15692 AGX
# Xavier 16GB, 62780 AGX Orin 64GB, 15655 Orin NX 16GB).
IDENTIFY_CASES = [
    # exact part number in compatible wins, whatever the memory says
    (
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        ORIN_NANO,
        None,
        7620,
        "orin-nano-8gb",
    ),
    (None, ORIN_NANO, None, None, "orin-nano-8gb"),
    ("NVIDIA Jetson Nano Developer Kit", NANO, None, 3964, "nano-4gb"),
    ("NVIDIA Jetson Xavier NX Developer Kit", XAVIER_NX, None, 7771, "xavier-nx-8gb"),
    ("Jetson-AGX", AGX_XAVIER, None, 15692, "agx-xavier-16gb"),
    ("NVIDIA Jetson AGX Thor Developer Kit", THOR, None, 125749, "thor-128gb"),
    # nvidia,boardids when compatible has no module part
    (None, ["nvidia,tegra234"], "3767:0004", 3500, "orin-nano-4gb"),
    (None, ["nvidia,tegra234"], b"3767:0000\0", None, "orin-nx-16gb"),
    # known board, unknown SKU (p3701-0000 devkit module): memory picks the variant
    ("NVIDIA Jetson AGX Orin Developer Kit", AGX_ORIN_MAINLINE, None, 30536, "agx-orin-32gb"),
    ("NVIDIA Jetson AGX Orin Developer Kit", AGX_ORIN_MAINLINE, None, 62780, "agx-orin-64gb"),
    # model string + memory
    ("NVIDIA Jetson TX2 Developer Kit", TX2, None, 3830, "tx2-4gb"),
    ("NVIDIA Jetson TX2 Developer Kit", TX2, None, 7850, "tx2-8gb"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", [], None, 15655, "orin-nx-16gb"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", [], None, 7620, "orin-nx-8gb"),
    ("NVIDIA Jetson Orin Nano Developer Kit", [], None, 3400, "orin-nano-4gb"),
    # SoC + memory only (custom carrier with an unknown model string)
    ("ACME Robot Brain", ["acme,brain", "nvidia,tegra234"], None, 62780, "agx-orin-64gb"),
    ("ACME Robot Brain", ["acme,brain", "nvidia,tegra210"], None, 1980, "nano-2gb"),
    ("ACME Robot Brain", ["acme,brain", "nvidia,tegra194"], None, 30000, "agx-xavier-32gb"),
]


@pytest.mark.parametrize("model, compatible, boardids, mem, device_class", IDENTIFY_CASES)
def test_identify_module(
    model: object, compatible: list, boardids: object, mem: object, device_class: str
) -> None:
    mod = jetson.identify_module(model, compatible, boardids, mem)  # type: ignore[arg-type]
    assert mod is not None
    assert mod.device_class == device_class


def test_identify_module_refuses_to_guess() -> None:
    # two Orin Nano variants and no memory to tell them apart
    assert jetson.identify_module("NVIDIA Jetson Orin Nano Developer Kit", [], None, None) is None
    # not a Jetson at all
    assert (
        jetson.identify_module(
            "Raspberry Pi 5 Model B Rev 1.0", ["raspberrypi,5-model-b", "brcm,bcm2712"], None, 8000
        )
        is None
    )
    assert jetson.identify_module(None, [], None, None) is None


def test_memory_pick_prefers_smallest_nominal_above_memtotal() -> None:
    orin_nanos = [m for m in jetson.MODULES if m.family == "orin-nano"]
    assert jetson.pick_by_memory(orin_nanos, 7620).device_class == "orin-nano-8gb"
    assert jetson.pick_by_memory(orin_nanos, 3600).device_class == "orin-nano-4gb"
    # more than the largest nominal size: the largest variant, not None
    assert jetson.pick_by_memory(orin_nanos, 9000).device_class == "orin-nano-8gb"
    assert jetson.pick_by_memory([], 9000) is None


# --------------------------------------------------------------------------- nvpmodel

NANO_CONF = """# MAXN is the NONE power model to release all constraints
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=5W >
CPU_ONLINE CORE_2 0
"""

ORIN_NANO_SUPER_CONF = """< POWER_MODEL ID=0 NAME=15W >
< POWER_MODEL ID=1 NAME=25W >
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
< POWER_MODEL ID=3 NAME=7W >
< PM_CONFIG DEFAULT=2 >
"""


def test_parse_nvpmodel_conf() -> None:
    assert jetson.parse_nvpmodel_conf(NANO_CONF) == {0: "MAXN", 1: "5W"}
    assert jetson.parse_nvpmodel_conf(ORIN_NANO_SUPER_CONF) == {
        0: "15W",
        1: "25W",
        2: "MAXN_SUPER",
        3: "7W",
    }
    # attribute order is not fixed; commented-out definitions do not count
    assert jetson.parse_nvpmodel_conf(
        "< POWER_MODEL NAME=MAXN ID=3 >\n# < POWER_MODEL ID=4 NAME=OLD >\n"
    ) == {3: "MAXN"}
    assert jetson.parse_nvpmodel_conf(None) == {}


@pytest.mark.parametrize(
    "status, conf, name",
    [
        ("pmode:0000", NANO_CONF, "MAXN"),
        ("pmode:0001\n", NANO_CONF, "5W"),
        ("pmode:0002 fmode:quiet", ORIN_NANO_SUPER_CONF, "MAXN_SUPER"),
        ("pmode:0009", ORIN_NANO_SUPER_CONF, "mode 9"),  # id the conf does not define
        ("pmode:0002", None, "mode 2"),  # conf missing
        (None, ORIN_NANO_SUPER_CONF, None),  # no status: no nvpmodel here
        ("garbage", ORIN_NANO_SUPER_CONF, None),
    ],
)
def test_nvpmodel_name(status: object, conf: object, name: object) -> None:
    assert jetson.nvpmodel_name(status, conf) == name  # type: ignore[arg-type]


def test_clocks_pinned_needs_every_known_pair_at_its_maximum() -> None:
    assert jetson.clocks_pinned([(1728000, 1728000), (1020000000, 1020000000)]) is True
    assert jetson.clocks_pinned([(115200, 1907200), (1109250000, 1109250000)]) is False
    # an unreadable pair does not decide; none readable is "unknown", not "off"
    assert jetson.clocks_pinned([(None, 1907200), (5, 5)]) is True
    assert jetson.clocks_pinned([(None, None)]) is None
    assert jetson.clocks_pinned([]) is None


def test_parse_freq_and_gpu_devfreq_names() -> None:
    assert jetson.parse_freq("1190400\n") == 1190400
    assert jetson.parse_freq("") is None and jetson.parse_freq("n/a") is None
    gpu = ["17000000.gv11b", "17000000.ga10b", "17000000.gpu", "57000000.gpu", "17000000.gp10b"]
    assert all(jetson.GPU_DEVFREQ_RE.search(n) for n in gpu)
    assert not any(jetson.GPU_DEVFREQ_RE.search(n) for n in ["15340000.vic", "15480000.nvdec"])
