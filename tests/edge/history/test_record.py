"""record_runs keeps what `edge report` needs beyond the result: the device's facts, as
the bench itself read them from the real local agent, and the model's size."""

from __future__ import annotations

from pathlib import Path

from device_agent.protocol import BenchOptions
from edge.fleet.devices import local_device
from edge.history.record import record_runs
from edge.history.store import RunStore
from edge.ops import measure


def test_bench_on_local_records_the_device_facts(tiny_model: Path) -> None:
    run = measure.bench(
        tiny_model, [local_device()], BenchOptions(batch_sizes=[1], duration_seconds=0.3)
    )
    assert run.ok, run.errors
    facts = run.facts["local"]
    assert facts.memory_total_mb > 0 and facts.tensorflow  # what the agent read, not defaults
    stored = record_runs("bench", run.results, tiny_model, run.model_digest, None, run.facts)
    with RunStore() as store:
        again = store.get(stored[0].run_id)
    assert again.context["device_facts"] == facts.to_dict()
    size = sum(p.stat().st_size for p in tiny_model.rglob("*") if p.is_file())
    assert again.context["model_bytes"] == size > 0
