/* The KPI page's charts: reads the JSON the page carries (json_script "kpi-data") and draws one line chart per
   canvas with Chart.js (vendored in static/vendor). No inline script: the page's CSP allows only files. */
(function () {
  "use strict";

  var COLOURS = ["#2f6f9f", "#c0504d", "#4f9a45", "#8064a2", "#d88c1a", "#2aa198", "#7f7f7f", "#b5485d"];

  function draw(canvas, labels, datasets) {
    var chart = new window.Chart(canvas, {
      type: "line",
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        spanGaps: false,
        scales: { y: { beginAtZero: true } },
        plugins: { legend: { position: "bottom" } }
      }
    });
    canvas.setAttribute("data-drawn", String(chart.data.datasets.length));
  }

  function dataset(label, values, index) {
    var colour = COLOURS[index % COLOURS.length];
    return { label: label, data: values, borderColor: colour, backgroundColor: colour, tension: 0.2 };
  }

  function start() {
    var source = document.getElementById("kpi-data");
    if (!source || !window.Chart) {
      return;
    }
    var kpi = JSON.parse(source.textContent);
    var series = kpi.series || {};
    var labels = kpi.labels || {};
    document.querySelectorAll("canvas[data-series]").forEach(function (canvas) {
      var keys = canvas.getAttribute("data-series").split(",");
      draw(canvas, kpi.months, keys.map(function (key, i) {
        return dataset(labels[key] || key, series[key] || [], i);
      }));
    });
    document.querySelectorAll("canvas[data-prefix]").forEach(function (canvas) {
      var prefix = canvas.getAttribute("data-prefix");
      var keys = Object.keys(series).filter(function (key) { return key.indexOf(prefix) === 0; }).sort();
      draw(canvas, kpi.months, keys.map(function (key, i) {
        return dataset(key.slice(prefix.length), series[key], i);
      }));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
