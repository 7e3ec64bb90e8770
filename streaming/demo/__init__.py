"""`walkstream demo`: the whole system on the local stack, in one command.

Starts Kafka and Redis (unless they already answer), then the streaming job and the trainer
as child processes in a fresh namespace of their own (topics, consumer groups, Redis key
prefix, state directories), streams a ratings file (default: synthetic data with planted
communities) through the producer, waits until every item the job has seen has a vector in
Redis, and shows what came out and what it measured. `--follow` keeps streaming (the same
events again, later in event time) and prints each new version. Ctrl-C stops everything
the demo started.
"""

from streaming.demo.results import DemoResult
from streaming.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "DemoResult", "run_demo"]
