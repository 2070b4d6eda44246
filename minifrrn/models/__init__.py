"""FRRN and its units: ``ResidualUnit``, ``FRRU``, ``FRRN``, ``frrn_a``, ``frrn_b``, ``frrn_tiny``."""
from .frrn import (FRRN, FRRN_A_SPEC, FRRN_B_SPEC, FRRN_TINY_SPEC, MODELS, build_model, frrn_a,
                   frrn_b, frrn_tiny)
from .units import CB, CBR, FRRU, ResidualUnit

__all__ = ["ResidualUnit", "FRRU", "FRRN", "frrn_a", "frrn_b", "frrn_tiny", "build_model", "MODELS",
           "CBR", "CB", "FRRN_A_SPEC", "FRRN_B_SPEC", "FRRN_TINY_SPEC"]
