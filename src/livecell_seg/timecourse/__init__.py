"""Time lapses: per-well confluence, counts and growth fits, and their HTML report."""
