/**
 * Order statistics for the bench: quantiles by linear interpolation between
 * closest ranks (the same as numpy's default), so p50 of an even sample is
 * the mean of its two middle values.
 */

/** The `q` quantile (0..1) of `values`; NaN when there are none. */
export const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const position = (sorted.length - 1) * q
  const low = Math.floor(position)
  const high = Math.ceil(position)
  const lowValue = sorted[low] as number
  const highValue = sorted[high] as number
  return lowValue + (highValue - lowValue) * (position - low)
}

/** Median. */
export const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)

/** A summary of a sample. */
export interface Summary {
  readonly n: number
  readonly min: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

/** The usual summary of `values`. */
export const summarize = (values: ReadonlyArray<number>): Summary => {
  const finite = values.filter((v) => Number.isFinite(v))
  return {
    n: finite.length,
    min: finite.length === 0 ? Number.NaN : Math.min(...finite),
    p50: quantile(finite, 0.5),
    p90: quantile(finite, 0.9),
    p99: quantile(finite, 0.99),
    max: finite.length === 0 ? Number.NaN : Math.max(...finite),
    mean: finite.length === 0 ? Number.NaN : finite.reduce((a, b) => a + b, 0) / finite.length
  }
}

/** Rounds to `digits` decimals, for JSON and tables. */
export const round = (value: number, digits = 1): number => {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

/** A number for a table cell: `—` when not a number. */
export const fmt = (value: number, digits = 1): string =>
  Number.isFinite(value) ? value.toFixed(digits) : "—"
