// Charts, drawn with the vendored Chart.js (static/vendor/chart.umd.min.js, loaded before the modules).

const charts = new WeakMap();

/** The bar chart on `canvas`: made with `options` the first time, given the new `data` and updated after. */
function drawBars(canvas, data, options) {
  let chart = charts.get(canvas);
  if (chart) {
    chart.data = data;
    chart.update();
    return chart;
  }
  chart = new globalThis.Chart(canvas, { type: "bar", data, options });
  charts.set(canvas, chart);
  return chart;
}

/** Draw (or redraw) a stacked bar chart on `canvas`: `labels` along x, one series per `{label, color, data}`;
 * the y axis runs from 0 to `max` in `step`s, its ticks written by `tick(value)`, tooltips by `format(value)`. */
export function stackedBars(canvas, labels, series, { format, tick, max, step }) {
  const data = {
    labels,
    datasets: series.map(({ label, color, data: values }) => ({
      label, data: values, backgroundColor: color, borderColor: color, borderWidth: 0, stack: "time",
    })),
  };
  return drawBars(canvas, data, {
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
  });
}

/** Draw (or redraw) one horizontal bar per label on `canvas`: `values` are shares from 0 to 1, shown in %,
 * each bar in its own colour of `colors`. */
export function scoreBars(canvas, labels, values, colors) {
  const data = {
    labels,
    datasets: [{ label: "Score", data: values.map((value) => Math.round(value * 1000) / 10), backgroundColor: colors, borderWidth: 0 }],
  };
  return drawBars(canvas, data, {
    indexAxis: "y",
    animation: false,
    maintainAspectRatio: false,
    responsive: true,
    scales: {
      x: { min: 0, max: 100, ticks: { stepSize: 25, callback: (value) => `${value} %` } },
      y: { grid: { display: false } },
    },
    plugins: {
      legend: { display: false },
      tooltip: { callbacks: { label: (item) => `${item.raw} %` } },
    },
  });
}
