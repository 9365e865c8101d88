"""quotad: enforces a township's electricity quota plan from its enterprises' meters."""

__all__ = ["__version__"]

__version__ = "0.1.0"
