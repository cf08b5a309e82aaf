"""The Dash dashboard: layout, per-model panels, colour mapping and callbacks.

Nothing here does tensor math: callbacks ask ``fusion.serving.SaliencyService``
for float maps and colour them into PNGs (``colour``) or Plotly figures
(``figures``). ``app.py`` at the repository root builds the app.
"""
