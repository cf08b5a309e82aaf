/*
 * Upload size limit, said in the page. dcc.Upload's max_size makes the browser drop a larger
 * file without any message (react-dropzone's rejected files never reach Dash), so this listener
 * sees the same drop or file choice first and writes the reason into #fs-upload-msg.
 * The limit comes from the data-max-bytes attribute of the .fs-uploads box (dashboard/layout.py).
 */
(function () {
    "use strict";

    function mb(bytes) {
        if (bytes < 1048576) { return Math.round(bytes / 1024) + " kB"; }
        return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
    }

    function check(event) {
        var box = event.target && event.target.closest ? event.target.closest(".fs-uploads") : null;
        if (!box || !box.dataset.maxBytes) { return; }
        var limit = Number(box.dataset.maxBytes);
        var files = (event.dataTransfer && event.dataTransfer.files) || (event.target && event.target.files) || [];
        var big = Array.prototype.filter.call(files, function (f) { return f.size > limit; });
        if (!big.length || !window.dash_clientside || !window.dash_clientside.set_props) { return; }
        var names = big.map(function (f) { return f.name + " (" + mb(f.size) + ")"; }).join(", ");
        window.dash_clientside.set_props("fs-upload-msg", {children: {
            namespace: "dash_bootstrap_components", type: "Alert",
            props: {id: "fs-upload-error", color: "danger", className: "mt-2 small mb-0",
                    children: "Upload refused: " + names + " is over the " + mb(limit) +
                              " a file may have on this server."}
        }});
    }

    document.addEventListener("drop", check, true);
    document.addEventListener("change", check, true);
})();
