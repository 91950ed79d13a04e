//! Cell drawings (DOT and SVG) as DARTS visualize.py draws them.
