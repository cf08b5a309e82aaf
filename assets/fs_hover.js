/*
 * Linked hover, pinning and arrow keys, in the browser.
 *
 * Every full-size image sits in a `.fs-frame.fs-full`. Moving over any of them
 * draws the crosshair (and each model's receptive-field box) on all of them at
 * once, here, without a round trip; the pixel then goes to the server's
 * hover route (`/fs-api/pixel`, dashboard/api.py), whose JSON answer (the Jacobian PNGs of
 * every model, markers, tick labels, readout values) is swapped into the page
 * here too: no Dash callback on the hot path. At most one request is in
 * flight; newer pixels wait and only the latest is sent. Each answer is announced as the
 * document event "fs-answer" (fs_scatter.js moves the scatter's markers with it).
 *
 * The page state and a few helpers are shared as window.fsPage with fs_regions.js (box and
 * lasso regions) and fs_scatter.js (the scatter's hovered-pixel markers), loaded after this file.
 *
 * The ids and the route are not written here: every clientside callback hands over the
 * page's browser config (dashboard/layout.py browser_config(), ids from dashboard/ids.py):
 *   route    the hover endpoint, relative to the app's prefix
 *   stores   {pinned, region}: the stores written with dash_clientside.set_props:
 *            pinned  {row, col}|null   click pins, click again or Esc releases, arrows step
 *            region  {kind, points}    a box or lasso drawn on any image (fs_regions.js)
 *   readout  the id of the readout table's box
 *   scatter  the id of the G_MRI vs G_PET scatter (fs_scatter.js)
 *   views    the Jacobian views ("jmri", "jpet"); types {image, ticks, mark}: their pattern types
 */
(function () {
    "use strict";
    const S = {
        h: 0, w: 0, pixel: null, pinned: null, seq: 0,
        inflight: false, sentAt: 0, queued: null, answer: null,
        mode: "hover", drag: null, region: null,
        view: {pair: null, models: [], window: "rf", jac: "signed", shared: false, gamma: 1},
        base: "/",
        cfg: null,  // the page's browser config, from the first clientside callback
    };
    window.__fsState = S;  // for debugging and the browser benchmark

    // Where the app's routes live: Dash's own request prefix (FUSION_URL_PREFIX, e.g. "/fusion/"),
    // so that the hover endpoint is asked under the same prefix as Dash's callbacks.
    function basePath() {
        try {
            const prefix = JSON.parse(document.getElementById("_dash-config").textContent)
                .requests_pathname_prefix;
            if (prefix) { return prefix; }
        } catch (e) { /* no Dash config in the page: fall back to the page's folder */ }
        return window.location.pathname.replace(/[^/]*$/, "") || "/";
    }

    function configure(cfg) {
        if (cfg && cfg.route) { S.cfg = cfg; }
    }

    function setProps(store, data) {  // store: a key of the config's "stores"
        if (S.cfg && window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(S.cfg.stores[store], {data: data});
        }
    }

    function pixelAt(frame, ev, clamp) {
        const img = frame.querySelector("img");
        if (!img || !S.h || !S.w) { return null; }
        const r = img.getBoundingClientRect();
        if (!r.width || !r.height) { return null; }
        let col = Math.floor((ev.clientX - r.left) / r.width * S.w);
        let row = Math.floor((ev.clientY - r.top) / r.height * S.h);
        if (clamp) {
            col = Math.min(Math.max(col, 0), S.w - 1);
            row = Math.min(Math.max(row, 0), S.h - 1);
        } else if (row < 0 || col < 0 || row >= S.h || col >= S.w) {
            return null;
        }
        return {row: row, col: col};
    }

    /* Crosshair on every full-size image (two CSS variables: fs_style.css draws the lines) and each model's RF
       box on its fused image: a few style writes, no server. */
    function drawCursor(p) {
        const root = document.documentElement;
        root.classList.toggle("fs-has-cursor", !!(p && S.h));
        root.classList.toggle("fs-is-pinned", !!S.pinned);
        if (p && S.h) {
            root.style.setProperty("--fs-cy", (100 * (p.row + 0.5) / S.h) + "%");
            root.style.setProperty("--fs-cx", (100 * (p.col + 0.5) / S.w) + "%");
        }
        const boxes = document.querySelectorAll(".fs-frame.fs-full[data-rf] > .fs-rfbox");
        for (let k = 0; k < boxes.length; k++) {
            const box = boxes[k];
            if (!p || !S.h) {
                box.style.display = "none";
                continue;
            }
            const rf = box.parentNode.dataset.rf.split(",").map(Number);  // up, down, left, right
            const top = Math.max(p.row - rf[0], 0), bottom = Math.min(p.row + rf[1], S.h - 1);
            const left = Math.max(p.col - rf[2], 0), right = Math.min(p.col + rf[3], S.w - 1);
            box.style.top = (100 * top / S.h) + "%";
            box.style.height = (100 * (bottom - top + 1) / S.h) + "%";
            box.style.left = (100 * left / S.w) + "%";
            box.style.width = (100 * (right - left + 1) / S.w) + "%";
            box.style.display = "block";
        }
    }

    /* ---------------------------------------------------------------- the hover request */
    function domId(obj) {  // Dash's DOM id of a dict id: JSON with sorted keys
        const keys = Object.keys(obj).sort();
        return "{" + keys.map(function (k) { return JSON.stringify(k) + ":" + JSON.stringify(obj[k]); }).join(",") + "}";
    }

    function fmt(x) {
        if (x === null || x === undefined || !isFinite(x)) { return "n/a"; }
        if (x === 0) { return "0"; }
        return Number(x.toPrecision(3)).toString();
    }

    function el(tag, text, cls) {
        const e = document.createElement(tag);
        if (text !== undefined) { e.textContent = text; }
        if (cls) { e.className = cls; }
        return e;
    }

    function applyTicks(box, ticks) {
        if (!box) { return; }
        box.replaceChildren.apply(box, (ticks || []).map(function (t) {
            const span = el("span", t[1]);
            span.style.left = (100 * t[0]) + "%";
            return span;
        }));
    }

    function readout(data) {
        const box = document.getElementById(S.cfg.readout);
        if (!box) { return; }
        const head = el("div", null);
        head.id = "fs-readout-head";
        head.appendChild(el("b", "pixel (row " + data.row + ", col " + data.col + ")"));
        head.appendChild(el("span", "  MRI " + fmt(data.mri) + " · PET " + fmt(data.pet), "text-muted"));
        const table = el("table", null, "table table-sm table-borderless fs-readout-table mb-0");
        const hr = el("tr");
        ["model", "F(p)", "∂F/∂MRI(p)", "∂F/∂PET(p)", "MRI share of p", "path"].forEach(function (t) {
            hr.appendChild(el("th", t));
        });
        table.appendChild(el("thead")).appendChild(hr);
        const body = table.appendChild(el("tbody"));
        S.view.models.forEach(function (m) {
            const r = data.models[m];
            const tr = body.appendChild(el("tr"));
            tr.appendChild(el("td", m));
            if (!r || r.error) {
                const td = tr.appendChild(el("td", r ? r.error : "not available", "text-danger"));
                td.colSpan = 5;
                return;
            }
            [fmt(r.value), fmt(r.dmri), fmt(r.dpet), r.share.toFixed(2)].forEach(function (t) {
                tr.appendChild(el("td", t));
            });
            tr.appendChild(el("td", r.method, "text-muted"));
        });
        box.replaceChildren(head, table);
    }

    function apply(data) {
        Object.keys(data.models).forEach(function (m) {
            const r = data.models[m];
            const types = S.cfg.types;
            S.cfg.views.forEach(function (view) {
                const img = document.getElementById(domId({model: m, type: types.image, view: view}));
                if (img) { img.src = r.error ? "" : r[view]; }
                applyTicks(document.getElementById(domId({model: m, type: types.ticks, view: view})),
                           r.ticks && r.ticks[view]);
                const mark = document.getElementById(domId({model: m, type: types.mark, view: view}));
                if (mark && r.mark) {
                    mark.style.top = r.mark.top + "%";
                    mark.style.left = r.mark.left + "%";
                    mark.style.height = r.mark.height + "%";
                    mark.style.width = r.mark.width + "%";
                    mark.style.display = "block";
                }
            });
        });
        readout(data);
        S.answer = data;
        document.dispatchEvent(new CustomEvent("fs-answer", {detail: data}));  // fs_scatter.js listens
    }

    function send(p) {
        if (!S.view.pair || !S.cfg) { S.queued = p; return; }
        const now = performance.now();
        if (S.inflight && now - S.sentAt < 3000) { S.queued = p; return; }
        S.inflight = true;
        S.sentAt = now;
        S.queued = null;
        S.seq += 1;
        const v = S.view;
        const query = new URLSearchParams({pair: v.pair, models: v.models.join(","), row: p.row, col: p.col,
                                           jac: v.jac, shared: v.shared ? "1" : "0", gamma: v.gamma,
                                           win: v.window, seq: S.seq});
        fetch(S.base + S.cfg.route + "?" + query.toString())
            .then(function (r) { return r.json(); })
            .then(function (data) { if (!data.error) { apply(data); } })
            .catch(function (e) { console.warn("fusion-saliency hover request failed", e); })
            .finally(function () {
                S.inflight = false;
                const q = S.queued;
                S.queued = null;
                if (q) { send(q); }
            });
    }

    function refresh() {  // re-ask for the current pixel (new settings, models or pair)
        if (S.pixel) { send(S.pixel); }
    }

    /* Select a pixel: crosshair now, then the Jacobians, the readout and the scatter's markers from the server. */
    function select(p, force) {
        if (!force && S.pixel && p.row === S.pixel.row && p.col === S.pixel.col) { return; }
        S.pixel = p;
        drawCursor(p);
        send(p);
    }

    /* What fs_regions.js and fs_scatter.js share with this file (loaded after it: assets load in name order). */
    window.fsPage = {S: S, configure: configure, setProps: setProps, pixelAt: pixelAt};

    /* ---------------------------------------------------------------- events */
    document.addEventListener("mousemove", function (ev) {
        const frame = ev.target.closest && ev.target.closest(".fs-frame.fs-full");
        if (!frame || S.pinned || S.mode !== "hover") { return; }
        const p = pixelAt(frame, ev, false);
        if (p) {
            window.__fsHoverT0 = ev.timeStamp;  // read by benchmarks/bench_browser_hover.py
            select(p);
        }
    }, {passive: true});

    document.addEventListener("click", function (ev) {
        if (S.mode !== "hover") { return; }
        const frame = ev.target.closest && ev.target.closest(".fs-frame.fs-full");
        if (!frame) { return; }
        const p = pixelAt(frame, ev, false);
        if (!p) { return; }
        if (S.pinned) {
            S.pinned = null;
            setProps("pinned", null);
            select(p);
        } else {
            S.pinned = p;
            setProps("pinned", p);
        }
    });

    document.addEventListener("keydown", function (ev) {
        const tag = (ev.target && ev.target.tagName) || "";
        if (/INPUT|TEXTAREA|SELECT/.test(tag) || ev.target.isContentEditable) { return; }
        if (ev.key === "Escape" && S.pinned) {
            S.pinned = null;
            setProps("pinned", null);
            drawCursor(S.pixel);
            return;
        }
        const step = ev.shiftKey ? 10 : 1;
        const moves = {ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step]};
        const mv = moves[ev.key];
        const base = S.pinned || S.pixel;
        if (!mv || !base || !S.h) { return; }
        ev.preventDefault();
        const p = {row: Math.min(Math.max(base.row + mv[0], 0), S.h - 1),
                   col: Math.min(Math.max(base.col + mv[1], 0), S.w - 1)};
        S.pinned = p;
        setProps("pinned", p);
    });

    /* ---------------------------------------------------------------- Dash side */
    window.dash_clientside = Object.assign({}, window.dash_clientside);
    window.dash_clientside.fs = Object.assign({}, window.dash_clientside.fs, {
        setShape: function (pair, cfg) {
            configure(cfg);
            if (pair) {
                if (S.pixel && (S.pixel.row >= pair.h || S.pixel.col >= pair.w)) { S.pixel = null; }
                S.h = pair.h;
                S.w = pair.w;
                document.documentElement.style.setProperty("--fs-ar", pair.w + " / " + pair.h);
                if (!S.pixel) { S.pixel = {row: Math.floor(S.h / 2), col: Math.floor(S.w / 2)}; }
                drawCursor(S.pixel);
            }
            return window.dash_clientside.no_update;
        },
        pin: function (pinned, cfg) {
            configure(cfg);
            S.pinned = pinned || null;
            document.documentElement.classList.toggle("fs-is-pinned", !!S.pinned);
            if (pinned) { select({row: pinned.row, col: pinned.col}); }
            return window.dash_clientside.no_update;
        },
        setView: function (version, jac, shared, gamma, cfg) {
            configure(cfg);
            S.base = basePath();
            if (version) {
                S.view.pair = version.pair;
                S.view.models = version.models;
                S.view.window = version.window;
            }
            S.view.jac = jac || "signed";
            S.view.shared = !!shared;
            S.view.gamma = gamma || 1;
            if (!S.pixel && S.h) { S.pixel = {row: Math.floor(S.h / 2), col: Math.floor(S.w / 2)}; }
            if (S.pixel) { drawCursor(S.pixel); }
            refresh();
            return window.dash_clientside.no_update;
        },
        /* A running job's latest preview (four views of one model) into that model's whole-image maps,
           unless the model is done meanwhile, the page shows another pair, or the job ended. */
        showPreview: function (preview, status, idle) {
            const outputs = window.dash_clientside.callback_context.outputs_list;
            const none = window.dash_clientside.no_update;
            const shown = preview && status && !idle && preview.pair === status.pair;
            return outputs.map(function (o) {
                const m = o.id.model;
                const done = ((status && status.models[m]) || {}).state === "done";
                return shown && m === preview.model && !done ? (preview.srcs[o.id.view] || "") : none;
            });
        },
        /* "PNG": the selected pixel (pinned, else the last hovered) for the server's figure sheet. */
        sheetPixel: function (clicks, cfg) {
            configure(cfg);
            const p = S.pinned || S.pixel;
            if (!clicks || !p) { return window.dash_clientside.no_update; }
            return {row: p.row, col: p.col, clicks: clicks};
        },
    });
})();
