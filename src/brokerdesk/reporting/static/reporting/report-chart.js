// Draws the daily volume chart of a report page from its json_script data (Chart.js).
(function () {
  var source = document.getElementById("report-chart-data");
  var canvas = document.getElementById("report-chart");
  if (!source || !canvas || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [{ label: data.label, data: data.values.map(Number), backgroundColor: "#2f6fde" }],
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
  });
})();
