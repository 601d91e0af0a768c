"""livecell-seg: U-Net + watershed instance segmentation for LIVECell phase-contrast images."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
