// Charts, drawn with the vendored Chart.js (static/vendor/chart.umd.min.js, loaded before the modules).

const charts = new WeakMap();

/** Draw (or redraw) a stacked bar chart on `canvas`: `labels` along x, one series per `{label, color, data}`;
 * the y axis runs from 0 to `max` in `step`s, its ticks written by `tick(value)`, tooltips by `format(value)`. */
export function stackedBars(canvas, labels, series, { format, tick, max, step }) {
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
        y: { stacked: true, min: 0, max, ticks: { stepSize: step, callback: tick } },
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
