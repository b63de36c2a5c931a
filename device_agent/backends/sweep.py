"""The `--min-segment-size auto` sweep for any backend (TF-TRT guide 6.1): the backend says
how to count engines at a size, `segments.run_sweep` chooses the size."""

from __future__ import annotations

import dataclasses
from typing import List, Tuple

from ..protocol import SweepPoint
from ..segments import run_sweep, sweep_sizes
from .base import Backend, BuildRequest


def resolve_segment_size(
    backend: Backend, request: BuildRequest
) -> Tuple[BuildRequest, List[SweepPoint]]:
    """The request with the swept minimum_segment_size, and the points counted; the request
    unchanged (and no points) without `auto` or for a backend with no segments to count."""
    options = request.options
    if not options.minimum_segment_size_auto:
        return request, []
    counter = backend.segment_counter(request)
    if counter is None:
        request.log(
            f"{backend.name} backend: no segments to sweep; minimum_segment_size "
            f"{options.minimum_segment_size} as given"
        )
        return request, []
    chosen, points = run_sweep(
        counter.count, sweep_sizes(options.minimum_segment_size), options.max_engines, request.log
    )
    if counter.note:
        request.log(f"{counter.note}: minimum_segment_size {chosen.minimum_segment_size}")
    swept = dataclasses.replace(options, minimum_segment_size=chosen.minimum_segment_size)
    return dataclasses.replace(request, options=swept), points
