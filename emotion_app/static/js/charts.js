// Charts, drawn with the vendored Chart.js (static/vendor/chart.umd.min.js, loaded before the modules).

const charts = new WeakMap();

/** Draw (or redraw) a stacked bar chart on `canvas`: `labels` along x, one series per `{label, color, data}`;
 * `format(value)` writes a value in tooltips and on the y axis. */
export function stackedBars(canvas, labels, series, format) {
  const Chart = globalThis.Chart;
  const data = {
    labels,
    datasets: series.map(({ label, color, data: values }) => ({
      label, data: values, backgroundColor: color, borderColor: color, borderWidth: 0, stack: "time",
    })),
  };
  let chart = charts.get(canvas);
  if (chart) {
    chart.data = data;
    chart.update();
    return chart;
  }
  chart = new Chart(canvas, {
    type: "bar",
    data,
    options: {
      animation: false, // redrawn on every change: movement would only distract
      maintainAspectRatio: false,
      responsive: true,
      scales: {
        x: { stacked: true, grid: { display: false } },
        y: { stacked: true, beginAtZero: true, ticks: { callback: (value) => format(value) } },
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 14 } },
        tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${format(item.raw)}` } },
      },
    },
  });
  charts.set(canvas, chart);
  return chart;
}
