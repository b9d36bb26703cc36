"""The harness: the `shekara` CLI, demo, fault runs, the local stack, benchmarks, evaluation and the traffic
simulator. It sits above every runtime package; no runtime package imports it (tests/harness/test_layout.py)."""
