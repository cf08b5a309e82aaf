/*
 * Linked hover, pinning, arrow keys and region drawing, in the browser.
 *
 * Every full-size image sits in a `.fs-frame.fs-full`. Moving over any of them
 * draws the crosshair (and each model's receptive-field box) on all of them at
 * once, here, without a round trip; the pixel then goes to the server's
 * hover route (`/fs-api/pixel`, dashboard/api.py), whose JSON answer (the Jacobian PNGs of
 * every model, markers, tick labels, readout values) is swapped into the page
 * here too: no Dash callback on the hot path. At most one request is in
 * flight; newer pixels wait and only the latest is sent.
 *
 * The ids and the route are not written here: every clientside callback hands over the
 * page's browser config (dashboard/layout.py browser_config(), ids from dashboard/ids.py):
 *   route    the hover endpoint, relative to the app's prefix
 *   stores   {pinned, region}: the stores written from here with dash_clientside.set_props:
 *            pinned  {row, col}|null   click pins, click again or Esc releases, arrows step
 *            region  {kind, points}    a box or lasso drawn on any image
 *   readout  the id of the readout table's box
 *   scatter  the id of the G_MRI vs G_PET scatter, whose "hovered pixel" markers are moved from here
 *            (Plotly.update, once the cursor rests) to the hover answer's ∂F/∂MRI(p), ∂F/∂PET(p):
 *            a Dash update would keep the page busy for tens of ms per rest during a Compute
 *   views    the Jacobian views ("jmri", "jpet"); types {image, ticks, mark}: their pattern types
 */
(function () {
    "use strict";
    const S = {
        h: 0, w: 0, pixel: null, pinned: null, seq: 0,
        inflight: false, sentAt: 0, queued: null, restTimer: null, answer: null,
        mode: "hover", drag: null, region: null,
        view: {pair: null, models: [], window: "rf", jac: "signed", shared: false, gamma: 1},
        base: "/",
        cfg: null,  // the page's browser config, from the first clientside callback
    };
    const SVG = "http://www.w3.org/2000/svg";
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

    function fullFrames() { return document.querySelectorAll(".fs-frame.fs-full"); }

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
        clearTimeout(S.restTimer);
        S.restTimer = setTimeout(function () { markScatter(); }, 150);
    }

    /* ---------------------------------------------------------------- the scatter's hovered pixel */
    function scatterPlot() {  // the Plotly div of the scatter (dcc.Graph puts it inside its own div)
        const box = S.cfg && document.getElementById(S.cfg.scatter);
        return box && box.querySelector(".js-plotly-plot");
    }

    function hoveredTraces(data) { return (data || []).filter(function (t) { return t.meta && t.meta.hovered; }); }

    /* Put each model's "hovered pixel" marker (the traces with meta {hovered: model}) at its (G_MRI, G_PET) of
       the last answered pixel; nothing when they are there already. Returns whether the plot had ``expect``
       such traces (any number when not given). */
    function markScatter(expect) {
        const gd = scatterPlot();
        if (!gd || !gd.data || !window.Plotly) { return false; }
        if (typeof expect === "number" && hoveredTraces(gd.data).length !== expect) { return false; }
        if (!gd.fsMarked && gd.on) {  // a new figure from the server: mark it again once drawn
            gd.fsMarked = true;
            gd.on("plotly_afterplot", function () { markScatter(); });
        }
        const answer = S.answer || {models: {}};
        const index = [], xs = [], ys = [];
        gd.data.forEach(function (trace, k) {
            const model = trace.meta && trace.meta.hovered;
            if (!model) { return; }
            const r = answer.models[model];
            const x = r && !r.error ? r.dmri : null, y = r && !r.error ? r.dpet : null;
            if ((trace.x || [])[0] === x && (trace.y || [])[0] === y) { return; }
            index.push(k);
            xs.push([x]);
            ys.push([y]);
        });
        if (index.length) {  // update, not restyle: the graph turns a restyle into a Dash update
            window.Plotly.update(gd, {x: xs, y: ys}, {}, index);
        }
        return true;
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

    /* ---------------------------------------------------------------- regions */
    function regionPath(region) {
        if (!region || !region.points || !region.points.length) { return null; }
        const pts = region.points;
        if (region.kind === "box") {
            const a = pts[0], b = pts[pts.length - 1];
            const r0 = Math.min(a[0], b[0]), r1 = Math.max(a[0], b[0]);
            const c0 = Math.min(a[1], b[1]), c1 = Math.max(a[1], b[1]);
            return "M" + c0 + "," + r0 + "H" + (c1 + 1) + "V" + (r1 + 1) + "H" + c0 + "Z";
        }
        return "M" + pts.map(function (q) { return (q[1] + 0.5) + "," + (q[0] + 0.5); }).join("L") + "Z";
    }

    function drawRegion(region) {
        const d = regionPath(region);
        const frames = fullFrames();
        for (let k = 0; k < frames.length; k++) {
            let svg = frames[k].querySelector("svg.fs-region");
            if (!svg) {
                if (!d) { continue; }
                svg = document.createElementNS(SVG, "svg");
                svg.setAttribute("class", "fs-region");
                svg.setAttribute("preserveAspectRatio", "none");
                svg.appendChild(document.createElementNS(SVG, "path"));
                frames[k].appendChild(svg);
            }
            svg.setAttribute("viewBox", "0 0 " + S.w + " " + S.h);
            svg.firstChild.setAttribute("d", d || "");
            svg.style.display = d ? "block" : "none";
        }
    }

    /* ---------------------------------------------------------------- events */
    document.addEventListener("mousemove", function (ev) {
        const frame = ev.target.closest && ev.target.closest(".fs-frame.fs-full");
        if (S.drag) {
            const anchor = S.drag.frame;
            const p = pixelAt(anchor, ev, true);
            if (!p) { return; }
            if (S.drag.kind === "box") {
                S.drag.points = [S.drag.points[0], [p.row, p.col]];
            } else {
                const last = S.drag.points[S.drag.points.length - 1];
                if (last[0] !== p.row || last[1] !== p.col) { S.drag.points.push([p.row, p.col]); }
            }
            drawRegion(S.drag);
            return;
        }
        if (!frame || S.pinned || S.mode !== "hover") { return; }
        const p = pixelAt(frame, ev, false);
        if (p) {
            window.__fsHoverT0 = ev.timeStamp;  // read by benchmarks/bench_browser_hover.py
            select(p);
        }
    }, {passive: true});

    document.addEventListener("mousedown", function (ev) {
        if (S.mode === "hover" || ev.button !== 0) { return; }
        const frame = ev.target.closest && ev.target.closest(".fs-frame.fs-full");
        if (!frame) { return; }
        const p = pixelAt(frame, ev, true);
        if (!p) { return; }
        ev.preventDefault();
        S.drag = {kind: S.mode, frame: frame, points: [[p.row, p.col]]};
    });

    document.addEventListener("mouseup", function () {
        if (!S.drag) { return; }
        const region = {kind: S.drag.kind, points: S.drag.points};
        S.drag = null;
        const enough = region.kind === "box" ? region.points.length >= 2 : region.points.length >= 3;
        if (enough) { S.region = region; setProps("region", region); } else { drawRegion(S.region); }
    });

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
    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        fs: {
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
            regionMode: function (mode, cfg) {
                configure(cfg);
                S.mode = mode || "hover";
                document.documentElement.dataset.fsMode = S.mode;
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
            /* A new scatter figure: mark the hovered pixel in it once Plotly has drawn it. */
            scatterShown: function (figure, cfg) {
                configure(cfg);
                const expect = hoveredTraces(figure && figure.data).length;
                let tries = 0;
                (function again() {
                    if (!markScatter(expect) && ++tries < 50) { setTimeout(again, 200); }
                })();
                return window.dash_clientside.no_update;
            },
            /* "PNG": the selected pixel (pinned, else the last hovered) for the server's figure sheet. */
            sheetPixel: function (clicks, cfg) {
                configure(cfg);
                const p = S.pinned || S.pixel;
                if (!clicks || !p) { return window.dash_clientside.no_update; }
                return {row: p.row, col: p.col, clicks: clicks};
            },
            drawRegion: function (region, version, cfg) {
                configure(cfg);
                S.region = region && region.points ? region : null;
                drawRegion(S.region);
                return window.dash_clientside.no_update;
            },
        },
    });
})();
