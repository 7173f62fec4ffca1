"""SSN3D Studio: part-aligned video person re-identification (Jiang et al., AAAI 2021)."""

__version__ = "0.1.0"
