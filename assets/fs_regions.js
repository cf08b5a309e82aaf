/*
 * Regions for the statistics, in the browser: a box or lasso dragged on any full-size image (in the
 * "box" and "lasso" region modes) is outlined on every full-size image and written to the region
 * store (the config's stores.region) with dash_clientside.set_props.
 *
 * Loaded after fs_hover.js (assets load in name order), whose page state and helpers it uses
 * (window.fsPage).
 */
(function () {
    "use strict";
    const page = window.fsPage, S = page.S;
    const SVG = "http://www.w3.org/2000/svg";

    function fullFrames() { return document.querySelectorAll(".fs-frame.fs-full"); }

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

    document.addEventListener("mousedown", function (ev) {
        if (S.mode === "hover" || ev.button !== 0) { return; }
        const frame = ev.target.closest && ev.target.closest(".fs-frame.fs-full");
        if (!frame) { return; }
        const p = page.pixelAt(frame, ev, true);
        if (!p) { return; }
        ev.preventDefault();
        S.drag = {kind: S.mode, frame: frame, points: [[p.row, p.col]]};
    });

    document.addEventListener("mousemove", function (ev) {
        if (!S.drag) { return; }
        const p = page.pixelAt(S.drag.frame, ev, true);
        if (!p) { return; }
        if (S.drag.kind === "box") {
            S.drag.points = [S.drag.points[0], [p.row, p.col]];
        } else {
            const last = S.drag.points[S.drag.points.length - 1];
            if (last[0] !== p.row || last[1] !== p.col) { S.drag.points.push([p.row, p.col]); }
        }
        drawRegion(S.drag);
    }, {passive: true});

    document.addEventListener("mouseup", function () {
        if (!S.drag) { return; }
        const region = {kind: S.drag.kind, points: S.drag.points};
        S.drag = null;
        const enough = region.kind === "box" ? region.points.length >= 2 : region.points.length >= 3;
        if (enough) { S.region = region; page.setProps("region", region); } else { drawRegion(S.region); }
    });

    window.dash_clientside = Object.assign({}, window.dash_clientside);
    window.dash_clientside.fs = Object.assign({}, window.dash_clientside.fs, {
        regionMode: function (mode, cfg) {
            page.configure(cfg);
            S.mode = mode || "hover";
            document.documentElement.dataset.fsMode = S.mode;
            return window.dash_clientside.no_update;
        },
        drawRegion: function (region, version, cfg) {
            page.configure(cfg);
            S.region = region && region.points ? region : null;
            drawRegion(S.region);
            return window.dash_clientside.no_update;
        },
    });
})();
