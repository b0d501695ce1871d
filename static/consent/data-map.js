/* The data map graph (consent/provision/data_map.html): fetches the graph from the page's data-src and
   draws it with cytoscape.js (vendored, static/consent/vendor). No inline script (CSP). The layout is
   cytoscape's built-in breadthfirst (systems first), fast enough at a few hundred nodes. */
(function () {
  "use strict";
  var box = document.getElementById("data-map");
  if (!box || typeof cytoscape !== "function") { return; }
  var colours = { crm: "#9cc9f5", system: "#b7deb7" };
  fetch(box.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
    .then(function (graph) {
      var elements = graph.nodes.map(function (n) {
        return { group: "nodes", data: { id: n.id, label: n.label + " (" + n.country + ")", kind: n.kind,
          colour: colours[n.kind] || "#ffe08a" } };
      }).concat(graph.edges.map(function (e) {
        return { group: "edges", data: { id: e.id, source: e.source, target: e.target, label: e.label } };
      }));
      var cy = cytoscape({
        container: box,
        elements: elements,
        wheelSensitivity: 0.3,
        style: [
          { selector: "node", style: { "label": "data(label)", "background-color": "data(colour)",
            "shape": "round-rectangle", "width": "label", "height": 28, "padding": "8px",
            "text-valign": "center", "font-size": 11, "border-width": 1, "border-color": "#555" } },
          { selector: "edge", style: { "label": "data(label)", "curve-style": "bezier", "width": 1.5,
            "target-arrow-shape": "triangle", "line-color": "#777", "target-arrow-color": "#777",
            "font-size": 9, "text-rotation": "autorotate", "text-background-color": "#fff",
            "text-background-opacity": 0.8 } }
        ],
        layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1,
          roots: graph.nodes.filter(function (n) { return n.kind === "crm"; }).map(function (n) { return "#" + n.id; }) }
      });
      box.setAttribute("data-nodes", String(cy.nodes().length));
      box.setAttribute("data-edges", String(cy.edges().length));
      box.setAttribute("data-state", "drawn");
      var png = document.getElementById("data-map-png");
      if (png) {
        png.addEventListener("click", function () {
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
