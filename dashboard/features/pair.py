"""The pair: choose a bundled sample, upload two images, or open a dense result (HDF5) with its pair.

Uploads are checked at once (``decode_upload``, then the server's size and pixel limits); a pair is
stored in the service under the hash of its contents, and that id names it in links and jobs.
"""
from __future__ import annotations

import base64
import time

from dash import Input, Output, State, no_update

import fusion
from fusion import data

from .. import backend, components, ids
from ..registry import Feature

feature = Feature(__name__)
register = feature.register

#: Longest file name accepted from an upload (names are only shown, never used as paths).
UPLOAD_NAME_CHARS = 255


def pair_options(uploads: list | None, current: str | None) -> list[dict]:
    """Dropdown options: the bundled samples, this page's uploads, and ``current`` if it is none of them."""
    options = [{"label": backend.sample_label(s), "value": f"{backend.SAMPLE_PREFIX}{s}"} for s in data.list_samples()]
    for item in uploads or []:
        options.append({"label": item["label"], "value": item["id"]})
    if current and all(o["value"] != current for o in options):
        options.append({"label": f"shared pair {current[:8]}", "value": current})
    return options


@feature.callback(
    Output(ids.PAIR, "data"), Output(ids.PAIR_MSG, "children"), Output(ids.PAIR_SELECT, "options"),
    Input(ids.PAIR_SELECT, "value"), State(ids.UPLOADS, "data"),
)
def choose_pair(key, uploads):
    """Resolve the chosen pair through the service; a stale link falls back to the default sample."""
    message = None
    try:
        pair = backend.resolve_pair(key or backend.default_pair_key())
    except (fusion.InvalidInput, KeyError) as exc:
        pair = backend.resolve_pair(backend.default_pair_key())
        message = components.stale_pair(key, exc, pair["label"])
    return pair, message, pair_options(uploads, key)


def decode_upload(contents, filename, label: str) -> tuple[bytes, str]:
    """The bytes and the file name of one ``dcc.Upload`` payload (a base64 data URI).

    Raises fusion.InvalidInput, with a message for the page, for anything else: another type,
    not a base64 data URI, over the upload size, or a file name that is not a short plain name.
    """
    if filename is None:
        filename = label
    if not isinstance(filename, str) or not filename.strip():
        raise fusion.InvalidInput("the file name is missing or not a text")
    if len(filename) > UPLOAD_NAME_CHARS:
        raise fusion.InvalidInput(f"the file name is longer than {UPLOAD_NAME_CHARS} characters")
    if any(not c.isprintable() for c in filename) or any(c in filename for c in "/\\") or filename in (".", ".."):
        raise fusion.InvalidInput(f"the file name {filename[:60]!r} has control characters or looks like a path")
    if not isinstance(contents, str):
        raise fusion.InvalidInput(f"{filename}: not a file upload (got {type(contents).__name__})")
    head, comma, payload = contents.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64") or len(head) > 200:
        raise fusion.InvalidInput(f"{filename}: not a file upload (expected a base64 data URI)")
    limit = int(backend.config().max_upload_mb * 2**20)
    if len(payload) // 4 * 3 > limit:
        raise fusion.InvalidInput(f"{filename}: the file is over the {limit / 2**20:g} MB allowed")
    try:
        return base64.b64decode(payload, validate=True), filename
    except ValueError:  # binascii.Error
        raise fusion.InvalidInput(f"{filename}: the upload is damaged (not valid base64)") from None


def with_upload(uploads: list | None, pair_id: str, label: str) -> list[dict]:
    """This page's uploads with ``pair_id`` (last, under ``label``), each pair once."""
    return [u for u in (uploads or []) if u["id"] != pair_id] + [{"id": pair_id, "label": label}]


@feature.callback(
    Output(ids.UPLOAD_MSG, "children"), Output(ids.PAIR_SELECT, "value", allow_duplicate=True),
    Output(ids.PAIR_SELECT, "options", allow_duplicate=True), Output(ids.UPLOADS, "data"),
    Input(ids.UPLOAD_MRI, "contents"), Input(ids.UPLOAD_PET, "contents"),
    State(ids.UPLOAD_MRI, "filename"), State(ids.UPLOAD_PET, "filename"), State(ids.UPLOADS, "data"),
    prevent_initial_call=True,
)
def upload_pair(mri, pet, mri_name, pet_name, uploads):
    """Validate each dropped file at once; when both are good, store the pair and select it.

    The new option goes out with the new value: a Dropdown drops a value missing from its options.
    """
    problems, files = [], {}
    for label, contents, name in (("MRI", mri, mri_name), ("PET", pet, pet_name)):
        if contents is not None:
            try:
                files[label] = decode_upload(contents, name, label)
                backend.load_upload(*files[label])  # the server's size and pixel limits, from the header
            except fusion.InvalidInput as exc:
                problems.append(f"{label}: {exc}")
    if problems:
        return components.refused("Upload refused. ", problems), no_update, no_update, no_update
    if len(files) < 2:
        got = "MRI" if "MRI" in files else "PET"
        return components.half_upload(got, "PET" if got == "MRI" else "MRI"), no_update, no_update, no_update
    (mri, mri_name), (pet, pet_name) = files["MRI"], files["PET"]
    try:
        pair_id = backend.put_uploaded_pair(mri, mri_name, pet, pet_name)
    except fusion.InvalidInput as exc:
        return components.refused("Upload refused. ", str(exc)), no_update, no_update, no_update
    label = f"upload {mri_name} + {pet_name}"
    uploads = with_upload(uploads, pair_id, label)
    return components.accepted(f"Using {label}."), pair_id, pair_options(uploads, pair_id), uploads


@feature.callback(
    Output(ids.UPLOAD_MSG, "children", allow_duplicate=True),
    Output(ids.PAIR_SELECT, "value", allow_duplicate=True),
    Output(ids.PAIR_SELECT, "options", allow_duplicate=True), Output(ids.UPLOADS, "data", allow_duplicate=True),
    Output(ids.MODELS, "value", allow_duplicate=True), Output(ids.OPENED, "data"),
    Input(ids.UPLOAD_H5, "contents"),
    State(ids.UPLOAD_H5, "filename"), State(ids.UPLOADS, "data"), State(ids.MODELS, "value"),
    prevent_initial_call=True,
)
def open_result(contents, filename, uploads, models):
    """Open a dense result (HDF5): its pair becomes the current pair and its model's maps show at
    once, or, computed with other weights, the pair opens and a message says why the maps do not."""
    try:
        content, name = decode_upload(contents, filename, "HDF5 file")
        opened = backend.open_hdf5(content, name)
    except (fusion.InvalidInput, ValueError) as exc:
        return (components.refused("File refused. ", str(exc)), *[no_update] * 5)
    pair_id, model = opened["pair_id"], opened["model"]
    uploads = with_upload(uploads, pair_id, f"file {name}")
    models = list(models or [])
    if opened["installed"]:
        models += [model] if model not in models else []
        message = components.accepted(f"Opened {name}: its pair and the whole-image maps of {model}.")
    else:
        message = components.opened_pair_only(name, opened["problem"])
    return message, pair_id, pair_options(uploads, pair_id), uploads, models, {"pair": pair_id, "t": time.time()}
