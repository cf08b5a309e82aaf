"""The page's features, one module each; each declares its callbacks with ``registry.Feature``.

    url        the URL <-> the controls (a link reproduces the view)
    pair       choosing, uploading and opening (HDF5) a pair
    images     the inputs and the fused images (colour or Y only)
    grid       the comparison grid, its Jacobian colour bars, the pin badge, model cards
    dense      whole-image jobs: request, run (background), status, cancel, messages
    cohort     "Compute all samples": the shown models on every bundled pair (background), its CSV
    maps       the whole-image maps: finished results and a running job's preview
    statistics MRI-share histograms, the region table, the guidance scatter and its brushing
    metrics    the fusion quality metrics table
    downloads  the figures PNG sheet, the statistics CSV, HDF5 results, fused PNGs
    hover      the browser side (assets/fs_hover.js, fs_regions.js, fs_scatter.js): clientside callbacks

``dashboard.callbacks.register(app)`` attaches all of them and the hover endpoint.
"""
