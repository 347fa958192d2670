// The bar chart of an attestation: one bar per measure (its percentage, 0–100%) with a mark
// at the threshold. Inline SVG built with createElementNS; sizes go in width/height/x/y
// attributes and colours in auditor.css classes, because the CSP forbids style="".
// The table beside it carries the same numbers for screen readers; the chart is one image.
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

// Each row: the measure's name on one line, its bar under it, so the chart stays readable
// when it shrinks to a phone's width.
const LEFT = 12;
const BAR_WIDTH = 400;
const ROW = 46;
const TOP = 22;

/** rows: the summaries of measure-report.js. */
export function attestationChart(rows) {
  const width = LEFT + BAR_WIDTH + 70;
  const height = TOP + rows.length * ROW + 6;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-labelledby': 'chart-title chart-desc', class: 'attestation-chart' });
  chart.append(
    svg('title', { id: 'chart-title' }, 'Measures against their thresholds'),
    svg(
      'desc',
      { id: 'chart-desc' },
      rows.map((r) => `${r.title}: ${r.percentage || 'no denominator'}, threshold ${r.threshold}, ${r.met}`).join('; ')
    )
  );
  // The 0, 50 and 100% grid.
  for (const pct of [0, 50, 100]) {
    const x = LEFT + (BAR_WIDTH * pct) / 100;
    chart.append(svg('line', { x1: x, x2: x, y1: TOP - 4, y2: height - 4, class: 'grid' }), svg('text', { x, y: TOP - 8, 'text-anchor': 'middle', class: 'axis' }, `${pct}%`));
  }
  rows.forEach((row, i) => {
    const y = TOP + i * ROW;
    const group = svg('g', { class: `bar-row ${cssState(row.met)}`, 'data-measure': row.id });
    group.append(svg('text', { x: LEFT + 4, y: y + 15, class: 'label' }, row.title));
    const barWidth = row.score === undefined ? 0 : Math.max(row.score * BAR_WIDTH, row.score > 0 ? 2 : 0);
    group.append(svg('rect', { x: LEFT, y: y + 21, width: BAR_WIDTH, height: 18, rx: 3, class: 'track' }));
    group.append(svg('rect', { x: LEFT, y: y + 21, width: barWidth.toFixed(1), height: 18, rx: 3, class: 'bar' }));
    if (typeof row.thresholdFraction === 'number') {
      const x = LEFT + row.thresholdFraction * BAR_WIDTH;
      group.append(svg('line', { x1: x, x2: x, y1: y + 18, y2: y + 42, class: 'threshold' }));
    }
    group.append(svg('text', { x: LEFT + BAR_WIDTH + 8, y: y + 35, class: 'value' }, row.met === 'excluded' ? 'excluded' : row.percentage || '–'));
    chart.append(group);
  });
  return chart;
}

export function cssState(met) {
  return met === 'met' ? 'is-met' : met === 'excluded' ? 'is-excluded' : 'is-not-met';
}
