/*
 * The G_MRI vs G_PET scatter's "hovered pixel" markers, moved in the browser.
 *
 * Each model's marker is a trace with meta {hovered: model} (dashboard/figures.py guidance_scatter),
 * empty on the server. Once the cursor rests (150 ms after the last hover answer, the "fs-answer"
 * event of fs_hover.js) the markers go to the answer's dF/dMRI(p), dF/dPET(p), which are G_MRI and
 * G_PET at p; and again each time Plotly draws a new figure. Plotly.update, not restyle: dcc.Graph
 * turns a restyle into a Dash update, which would keep the page busy for tens of ms per rest during
 * a Compute.
 *
 * Loaded after fs_hover.js (assets load in name order), whose page state it uses (window.fsPage).
 */
(function () {
    "use strict";
    const page = window.fsPage, S = page.S;
    let rest = null;

    function scatterPlot() {  // the Plotly div of the scatter (dcc.Graph puts it inside its own div)
        const box = S.cfg && document.getElementById(S.cfg.scatter);
        return box && box.querySelector(".js-plotly-plot");
    }

    function hoveredTraces(data) { return (data || []).filter(function (t) { return t.meta && t.meta.hovered; }); }

    /* Put each model's marker at its (G_MRI, G_PET) of the last answered pixel; nothing when they are there
       already. Returns whether the plot had ``expect`` such traces (any number when not given). */
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
        if (index.length) {
            window.Plotly.update(gd, {x: xs, y: ys}, {}, index);
        }
        return true;
    }

    document.addEventListener("fs-answer", function () {
        clearTimeout(rest);
        rest = setTimeout(function () { markScatter(); }, 150);
    });

    window.dash_clientside = Object.assign({}, window.dash_clientside);
    window.dash_clientside.fs = Object.assign({}, window.dash_clientside.fs, {
        /* A new scatter figure: mark the hovered pixel in it once Plotly has drawn it. */
        scatterShown: function (figure, cfg) {
            page.configure(cfg);
            const expect = hoveredTraces(figure && figure.data).length;
            let tries = 0;
            (function again() {
                if (!markScatter(expect) && ++tries < 50) { setTimeout(again, 200); }
            })();
            return window.dash_clientside.no_update;
        },
    });
})();
