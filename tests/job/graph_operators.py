"""Print the operators of the job's graphs, as JSON: `python -m tests.job.graph_operators
VARIANTS`, VARIANTS a JSON object of name -> list of KEY=VALUE settings (with "--until" for a
bounded replay); prints name -> {uid: the operator's parallelism}, by uid.

Run in a process of its own: building a graph starts a PyFlink gateway, which would stay in
the test process."""

from __future__ import annotations

import json
import sys

from streaming.config import load_settings, parse_assignments
from streaming.job.environment import execution_environment
from streaming.job.pipeline import build_job
from streaming.job.positions import parse_start, parse_until


def graph_operators(args: list[str]) -> dict[str, int]:
    until = parse_until("latest") if "--until" in args else None
    settings = load_settings(overrides=parse_assignments([a for a in args if a != "--until"]))
    env = execution_environment(settings)
    build_job(env, settings, parse_start("earliest"), until)
    nodes = env._j_stream_execution_environment.getStreamGraph(False).getStreamNodes()
    found = {str(node.getTransformationUID()): node.getParallelism() for node in nodes.toArray()}
    return dict(sorted(found.items()))


if __name__ == "__main__":
    variants = json.loads(sys.argv[1])
    print(json.dumps({name: graph_operators(args) for name, args in variants.items()}))
