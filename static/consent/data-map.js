/* The data map graph (consent/provision/data_map.html): fetches the graph from the page's data-src and
   draws it with cytoscape.js (vendored, static/consent/vendor). No inline script (CSP). The layout is
   cytoscape's force-directed "cose" for a map of ordinary size; past COSE_MAX nodes the concentric one
   (this CRM in the middle, other systems around it, recipients outside), which needs no simulation and stays
   fast at a few hundred nodes. Both are built into cytoscape. */
(function () {
  "use strict";
  var box = document.getElementById("data-map");
  if (!box || typeof cytoscape !== "function") { return; }
  var colours = { crm: "#9cc9f5", system: "#b7deb7" };
  var rings = { crm: 3, system: 2 };
  var COSE_MAX = 80;
  function textWidth(text) {  // at font-size 11: full-width (Japanese) characters about 12px, others 7px
    var width = 20;
    for (var i = 0; i < text.length; i++) { width += text.charCodeAt(i) > 255 ? 12 : 7; }
    return width;
  }
  fetch(box.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
    .then(function (graph) {
      var elements = graph.nodes.map(function (n) {
        var label = n.label + " (" + n.country + ")";
        return { group: "nodes", data: { id: n.id, label: label, kind: n.kind, ring: rings[n.kind] || 1,
          width: textWidth(label), colour: colours[n.kind] || "#ffe08a" } };
      }).concat(graph.edges.map(function (e) {
        return { group: "edges", data: { id: e.id, source: e.source, target: e.target, label: e.label } };
      }));
      var cy = cytoscape({
        container: box,
        elements: elements,
        style: [
          { selector: "node", style: { "label": "data(label)", "background-color": "data(colour)",
            "shape": "round-rectangle", "width": "data(width)", "height": 28,
            "text-valign": "center", "font-size": 11, "border-width": 1, "border-color": "#555" } },
          { selector: "edge", style: { "label": "data(label)", "curve-style": "bezier", "width": 1.5,
            "target-arrow-shape": "triangle", "line-color": "#777", "target-arrow-color": "#777",
            "font-size": 9, "text-rotation": "autorotate", "text-background-color": "#fff",
            "text-background-opacity": 0.8 } }
        ],
        layout: graph.nodes.length <= COSE_MAX
          ? { name: "cose", animate: false, randomize: false, nodeRepulsion: function () { return 400000; },
              idealEdgeLength: function () { return 140; }, padding: 30 }
          : { name: "concentric", minNodeSpacing: 30, avoidOverlap: true,
              concentric: function (node) { return node.data("ring"); }, levelWidth: function () { return 1; } }
      });
      box.setAttribute("data-nodes", String(cy.nodes().length));
      box.setAttribute("data-edges", String(cy.edges().length));
      box.setAttribute("data-state", "drawn");
      var png = document.getElementById("data-map-png");
      if (png) {
        png.addEventListener("click", function (event) {
          event.preventDefault();
          var blob = cy.png({ output: "blob", full: true, bg: "#ffffff", scale: 2 });
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = "data-map.png";
          document.body.appendChild(link);
          link.click();
          link.remove();
        });
      }
    })
    .catch(function (error) {
      box.setAttribute("data-state", "failed");
      box.textContent = String(error);
    });
})();
