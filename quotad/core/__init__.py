"""The functional core: readings in, alerts and orders out. Pure: no IO, no clock, no thread (tests/core/test_purity.py
derives the list of pure modules from this folder and quotad/schedule/)."""
