/**
 * Durations the way Docker and Go write them: `500ms`, `30s`, `2m`, `1h`,
 * `1m30s`, `1.5s`.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000
}

/** The longest duration accepted on the command line: one day. */
export const MAX_DURATION_MS = 86_400_000

const PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y

/**
 * Parses a duration; the error says what is wrong and what is allowed.
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const input = text.trim()
  const usage = `use a number with a unit, like 500ms, 30s, 2m or 1m30s`
  if (input.length === 0) return Either.left(`empty duration: ${usage}`)
  if (input.startsWith("-")) return Either.left(`"${text}" is negative: ${usage}`)
  let total = 0
  PART.lastIndex = 0
  let index = 0
  while (index < input.length) {
    PART.lastIndex = index
    const match = PART.exec(input)
    if (match === null) return Either.left(`"${text}" is not a duration: ${usage}`)
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ""] ?? Number.NaN)
    index = PART.lastIndex
  }
  if (!Number.isFinite(total)) return Either.left(`"${text}" is not a duration: ${usage}`)
  if (total > MAX_DURATION_MS) return Either.left(`"${text}" is longer than the maximum of 24h`)
  return Either.right(Duration.millis(total))
}

/**
 * Formats milliseconds the same way: `850ms`, `1.2s`, `2m30s`.
 */
export const formatMillis = (ms: number): string => {
  if (ms < 1_000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1).replace(/\.?0+$/, "")}s`
  const minutes = Math.floor(ms / 60_000)
  const seconds = Math.round((ms % 60_000) / 1_000)
  return seconds === 0 ? `${minutes}m` : `${minutes}m${seconds}s`
}
