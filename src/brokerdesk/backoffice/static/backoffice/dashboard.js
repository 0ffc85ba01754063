/* Back-office dashboard charts (Chart.js); the same figures are in the table below each chart. */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof window.Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var css = getComputedStyle(document.body);
  var primary = css.getPropertyValue("--bd-primary").trim() || "#5a3fd1";
  var danger = css.getPropertyValue("--bd-danger").trim() || "#b3261e";
  var success = css.getPropertyValue("--bd-success").trim() || "#127a4a";
  var num = function (values) { return values.map(Number); };
  if (window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
    window.Chart.defaults.animation = false;
  }
  var money = document.getElementById("money-chart");
  if (money) {
    new window.Chart(money, {
      data: {
        labels: data.labels,
        datasets: [
          { type: "bar", label: data.text.deposits, data: num(data.deposits), backgroundColor: success },
          { type: "bar", label: data.text.withdrawals, data: num(data.withdrawals), backgroundColor: danger },
          { type: "line", label: data.text.net, data: num(data.net), borderColor: primary, backgroundColor: primary, tension: 0.25 }
        ]
      },
      options: { responsive: true, maintainAspectRatio: false, interaction: { mode: "index", intersect: false } }
    });
  }
  var clients = document.getElementById("clients-chart");
  if (clients) {
    new window.Chart(clients, {
      type: "bar",
      data: { labels: data.labels, datasets: [{ label: data.text.clients, data: data.clients, backgroundColor: primary }] },
      options: { responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { ticks: { precision: 0 } } } }
    });
  }
})();
