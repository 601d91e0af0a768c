"""Quality the way the LIVECell paper measures it: metrics (pure numpy) and the evaluate report."""
