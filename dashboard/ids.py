"""Every component id of the page and the hover route, written once.

The layout, the callbacks, the request guard and the browser code use these names. The
browser (``assets/fs_hover.js``) gets the ids and the route it needs from the store
``BROWSER_CONFIG``, which the layout fills with ``layout.browser_config()`` and every
clientside callback reads; so a renamed id here reaches the JavaScript too.

Per-model components have pattern-matching ids ``{"type", "model"}`` or ``{"type", "view",
"model"}`` (``pid``); ``every`` is the ``ALL`` pattern over one type, for callbacks that
serve every model at once.
"""
from __future__ import annotations

from dash import ALL

#: The hover endpoint (``dashboard/api.py``), under the app's URL prefix.
HOVER_ROUTE = "/fs-api/pixel"
#: Everything under this path (after the prefix) is the JSON API.
API_PATH = "/fs-api/"

# ------------------------------------------------------------------ stores (dcc.Store)
PAIR = "fs-pair"                      # the shown pair: {id, label, h, w, ...}
PINNED = "fs-pinned"                  # the pinned pixel {row, col} or None (written by the browser)
SHEET_PIXEL = "fs-sheet-pixel"        # the selected pixel when "PNG" is pressed (written by the browser)
REGION = "fs-region"                  # the drawn or brushed region (written by the browser or the scatter)
GRID_VERSION = "fs-grid-version"      # {models, window, pair, t} of the grid on the page
DENSE_REQUEST = "fs-dense-request"    # the models and pair a whole-image job was asked for
DENSE_RESULT = "fs-dense-result"      # the job's failures (read as State only)
DENSE_PROGRESS = "fs-dense-progress"  # the running job's progress (and which model its preview shows)
DENSE_PREVIEW = "fs-dense-preview"    # the running job's latest preview {pair, t, model, srcs} (shown in the browser)
DENSE_STATUS = "fs-dense-status"      # per model: done / failed / cancelled / lost / missing
DENSE_CANCELLED = "fs-dense-cancelled"
DENSE_JOB = "fs-dense-job"            # the job's place in line or fate (written by dashboard/jobs.py)
COHORT_REQUEST = "fs-cohort-request"  # the models a "Compute all samples" job was asked for
COHORT_RESULT = "fs-cohort-result"    # that job's summary (read as State only)
COHORT_PROGRESS = "fs-cohort-progress"  # its progress over the whole cohort, then its summary
COHORT_CANCELLED = "fs-cohort-cancelled"
COHORT_JOB = "fs-cohort-job"          # its place in line or fate (written by dashboard/jobs.py)
UPLOADS = "fs-uploads"                # uploaded pairs of this page: [{id, label}]
OPENED = "fs-opened"                  # the last HDF5 file opened
STATS_ROWS = "fs-stats-rows"          # the statistics table's rows, for the CSV
JS_SINK = "fs-js-sink"                # output of the clientside callbacks (never read)
BROWSER_CONFIG = "fs-browser-config"  # ids and route for assets/fs_hover.js

STORES = (PAIR, PINNED, SHEET_PIXEL, REGION, GRID_VERSION, DENSE_REQUEST, DENSE_RESULT, DENSE_PROGRESS,
          DENSE_PREVIEW, DENSE_STATUS, DENSE_CANCELLED, DENSE_JOB, COHORT_REQUEST, COHORT_RESULT, COHORT_PROGRESS,
          COHORT_CANCELLED, COHORT_JOB, UPLOADS, OPENED, STATS_ROWS, JS_SINK)

# ------------------------------------------------------------------ controls
URL = "fs-url"
PAIR_SELECT = "fs-pair-select"
UPLOAD_MRI, UPLOAD_PET, UPLOAD_H5 = "fs-upload-mri", "fs-upload-pet", "fs-upload-h5"
UPLOAD_MSG = "fs-upload-msg"
PAIR_MSG = "fs-pair-msg"
Y_ONLY = "fs-y-only"
COLOUR_NOTE = "fs-colour-note"
MODELS = "fs-models"
JAC_MODE = "fs-jac-mode"
SHARED = "fs-shared"
WINDOW = "fs-window"
GAMMA_J, GAMMA_G = "fs-gamma-j", "fs-gamma-g"
REGION_MODE = "fs-region-mode"
MASK_THRESHOLD = "fs-mask-threshold"
REGION_CLEAR = "fs-region-clear"
DENSE_RUN, DENSE_CANCEL, DENSE_MSG = "fs-dense-run", "fs-dense-cancel", "fs-dense-msg"
COHORT_RUN, COHORT_CANCEL, COHORT_MSG = "fs-cohort-run", "fs-cohort-cancel", "fs-cohort-msg"
COHORT_STATUS, COHORT_CSV, COHORT_DOWNLOAD = "fs-cohort-status", "fs-cohort-csv", "fs-cohort-download"
COHORT_RETRY = "fs-cohort-retry"      # retry a lost cohort job
LINK = "fs-link"
DOWNLOAD_PNG, DOWNLOAD_CSV = "fs-dl-png", "fs-dl-csv"
DOWNLOAD, DOWNLOAD_FUSED = "fs-download", "fs-download-fused"

# ------------------------------------------------------------------ messages written by callbacks
UPLOAD_ERROR, UPLOAD_OK, UPLOAD_WARNING = "fs-upload-error", "fs-upload-ok", "fs-upload-warning"
JOB_WAITING, JOB_LOST = "fs-job-waiting", "fs-job-lost"
COHORT_WAITING, COHORT_LOST = "fs-cohort-waiting", "fs-cohort-lost"
COHORT_BAR, COHORT_SUMMARY = "fs-cohort-bar", "fs-cohort-summary"
PINNED_BADGE = "fs-pinned-badge"
NO_MODELS = "fs-no-models"

# ------------------------------------------------------------------ the page's areas
INPUT = {"mri": "fs-input-mri", "pet": "fs-input-pet"}
PIN_BADGE = "fs-pin-badge"
READOUT = "fs-readout"
GRID = "fs-grid"
CARD_MODAL, CARD_TITLE, CARD_BODY = "fs-card-modal", "fs-card-title", "fs-card-body"
HISTOGRAM, SCATTER = "fs-hist", "fs-scatter"
STATS_TABLE, REGION_TABLE = "fs-stats-table", "fs-region-table"
METRICS_TABLE, METRICS_DATATABLE = "fs-metrics-table", "fs-metrics-datatable"

# ------------------------------------------------------------------ per-model components (pattern types)
#: The three kinds of grid rows: fused image, Jacobian of the hovered pixel, whole-image map.
KINDS = ("fused", "jacobian", "dense")
IMAGE = {kind: f"img-{kind}" for kind in KINDS}
COLOURBAR = {kind: f"cbar-{kind}" for kind in KINDS}
TICKS = {kind: f"ticks-{kind}" for kind in KINDS}
MARK = "mark"                  # the hovered pixel's marker in a zoomed Jacobian window
EMPTY = "empty"                # the note over a whole-image map not computed yet
STATUS = "status"              # the job status under a column's header
PROGRESS = "progress"          # the job's progress bar in it
RETRY = "retry"                # retry one model's failed job
CARD_BUTTON = "card-btn"       # open the model card
FUSED_PNG = "fused-png"        # download the fused image
HDF5 = "h5"                    # download the dense result
JOB_RETRY = "job-retry"        # retry a lost job ({"type", "index"})


def pid(kind: str, model: str, view: str | None = None) -> dict:
    """Pattern-matching id of one model's component (of one view of it, when ``view`` is given)."""
    return {"type": kind, "model": model} if view is None else {"type": kind, "view": view, "model": model}


def every(kind: str, views: bool = True) -> dict:
    """The ``ALL`` pattern over every component of type ``kind`` (and every view, when ``views``)."""
    return {"type": kind, "view": ALL, "model": ALL} if views else {"type": kind, "model": ALL}
