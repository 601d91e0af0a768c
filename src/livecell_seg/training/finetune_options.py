"""Limits of ``livecell-seg finetune`` shared by the CLI and :mod:`livecell_seg.training.finetune`
(pure Python: the CLI reads them without importing torch)."""

#: steps when neither ``steps`` nor ``minutes`` is given (a few minutes on a 2-core CPU)
DEFAULT_STEPS = 150
#: most steps one run may take (``--steps``' upper bound)
MAX_STEPS = 1_000_000
#: longest time box (``--minutes``' upper bound): a day
MAX_MINUTES = 24 * 60.0
