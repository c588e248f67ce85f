/**
 * The time-to-ready chart: one row per policy, every run a dot, the median a
 * bar, on a logarithmic time axis (so the oracle's ~0.2 s and the seed's
 * ~2 s both read well). Plain SVG, no dependency.
 */
import { median, quantile } from "./stats.js"

/** One row of the chart. */
export interface Row {
  readonly label: string
  readonly values: ReadonlyArray<number>
  readonly color: string
}

const escape = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** Renders the rows as an SVG document. */
export const timeToReadySvg = (rows: ReadonlyArray<Row>, title: string, note: string): string => {
  const width = 820
  const left = 190
  const right = 30
  const top = 56
  const rowHeight = 46
  const height = top + rows.length * rowHeight + 64
  const all = rows.flatMap((row) => row.values).filter((v) => v > 0)
  const lowest = Math.max(10, 10 ** Math.floor(Math.log10(Math.min(...all, 100))))
  const highest = 10 ** Math.ceil(Math.log10(Math.max(...all, 1000)))
  const x = (ms: number) =>
    left +
    ((Math.log10(Math.max(ms, lowest)) - Math.log10(lowest)) /
      (Math.log10(highest) - Math.log10(lowest))) *
      (width - left - right)
  const ticks: Array<number> = []
  for (let decade = lowest; decade <= highest; decade *= 10) {
    for (const m of [1, 2, 5]) if (decade * m <= highest) ticks.push(decade * m)
  }
  const parts: Array<string> = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">${escape(title)}</text>`,
    `<text x="${left}" y="42" fill="#555">${escape(note)}</text>`
  )
  const axisY = top + rows.length * rowHeight
  for (const tick of ticks) {
    const tx = x(tick).toFixed(1)
    parts.push(
      `<line x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${axisY}" stroke="#e3e3e3"/>`,
      `<text x="${tx}" y="${axisY + 18}" text-anchor="middle" fill="#444">${tick >= 1000 ? `${tick / 1000} s` : `${tick} ms`}</text>`
    )
  }
  parts.push(
    `<text x="${(left + width - right) / 2}" y="${axisY + 42}" text-anchor="middle" fill="#444">time from the spawn to ready (log scale)</text>`
  )
  rows.forEach((row, index) => {
    const cy = top + index * rowHeight + rowHeight / 2
    const p50 = median(row.values)
    const p90 = quantile(row.values, 0.9)
    parts.push(
      `<text x="${left - 10}" y="${cy - 2}" text-anchor="end" font-weight="bold">${escape(row.label)}</text>`,
      `<text x="${left - 10}" y="${cy + 14}" text-anchor="end" fill="#555">p50 ${p50.toFixed(0)} ms · p90 ${p90.toFixed(0)} ms</text>`
    )
    row.values.forEach((value, i) => {
      // A small deterministic jitter so runs with close times stay visible.
      const jitter = ((i * 7919) % 13) - 6
      parts.push(
        `<circle cx="${x(value).toFixed(1)}" cy="${(cy + jitter).toFixed(1)}" r="3.2" fill="${row.color}" fill-opacity="0.55"/>`
      )
    })
    if (Number.isFinite(p50)) {
      const mx = x(p50).toFixed(1)
      parts.push(
        `<line x1="${mx}" y1="${cy - 15}" x2="${mx}" y2="${cy + 15}" stroke="${row.color}" stroke-width="3"/>`
      )
    }
  })
  parts.push("</svg>")
  return parts.join("\n") + "\n"
}
