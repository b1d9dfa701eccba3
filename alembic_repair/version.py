"""The package version, in the base layer: the quick doctor path keys its cache on it."""

__version__ = "0.1.0"
