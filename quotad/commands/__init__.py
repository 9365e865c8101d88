"""The commands of `quotad` other than `run` and `check-config`: each a function cli.py dispatches to."""
