/**
 * Durations the way Docker and Go write them: `500ms`, `30s`, `2m`, `1h`,
 * `1m30s`, `1.5s`; and the Schema of a duration a configuration takes: any
 * `Duration.DurationInput` (a `Duration`, milliseconds, `"10 seconds"`) or
 * Go's text.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

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

/** Go's duration text in milliseconds, without a bound; `undefined` when it is not one. */
const goMillis = (input: string): number | undefined => {
  if (input.length === 0) return undefined
  let total = 0
  let index = 0
  while (index < input.length) {
    PART.lastIndex = index
    const match = PART.exec(input)
    if (match === null) return undefined
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ""] ?? Number.NaN)
    index = PART.lastIndex
  }
  return Number.isFinite(total) ? total : undefined
}

/**
 * Parses a duration; the error says what is wrong and what is allowed.
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const input = text.trim()
  const usage = `use a number with a unit, like 500ms, 30s, 2m or 1m30s`
  if (input.length === 0) return Either.left(`empty duration: ${usage}`)
  if (input.startsWith("-")) return Either.left(`"${text}" is negative: ${usage}`)
  const total = goMillis(input)
  if (total === undefined) return Either.left(`"${text}" is not a duration: ${usage}`)
  if (total > MAX_DURATION_MS) return Either.left(`"${text}" is longer than the maximum of 24h`)
  return Either.right(Duration.millis(total))
}

const isNonNegative = (n: number) => n >= 0 // false for NaN too

/**
 * A duration from anything `Duration.decode` takes, or Go's text (`"30s"`).
 * Unlike `Duration.decode`, a negative or NaN input is refused, not made 0.
 */
export const fromInput = (input: unknown): Option.Option<Duration.Duration> => {
  if (Duration.isDuration(input)) return Option.some(input)
  if (typeof input === "number") {
    return isNonNegative(input) ? Option.some(Duration.millis(input)) : Option.none()
  }
  if (typeof input === "bigint") {
    return input >= BigInt(0) ? Option.some(Duration.nanos(input)) : Option.none()
  }
  if (Array.isArray(input)) {
    const [seconds, nanos] = input as Array<unknown>
    return input.length === 2 &&
      typeof seconds === "number" &&
      typeof nanos === "number" &&
      Number.isFinite(seconds) &&
      Number.isFinite(nanos) &&
      isNonNegative(seconds) &&
      isNonNegative(nanos)
      ? Duration.decodeUnknown(input)
      : Option.none()
  }
  if (typeof input !== "string") return Option.none()
  const text = input.trim()
  if (text.startsWith("-")) return Option.none()
  const go = goMillis(text)
  if (go !== undefined) return Option.some(Duration.millis(go))
  // `Duration.decode` reads "10 seconds" and "1.5 minutes"; "NaN seconds" gives NaN, refused.
  return Duration.decodeUnknown(text).pipe(
    Option.filter((duration) => !Number.isNaN(Duration.toMillis(duration)))
  )
}

const DurationInputFromSelf = Schema.declare(
  (input: unknown): input is Duration.DurationInput => Option.isSome(fromInput(input)),
  { identifier: "DurationInput" }
)

/**
 * A duration as a configuration takes it, like Effect's own APIs: a
 * `Duration`, milliseconds (`10000`), `"10 seconds"`, or Go's `"10s"`.
 * Encodes to the `Duration` itself.
 */
export const DurationFromInput: Schema.Schema<Duration.Duration, Duration.DurationInput> =
  Schema.transformOrFail(DurationInputFromSelf, Schema.DurationFromSelf, {
    strict: true,
    decode: (input, _, ast) =>
      Option.match(fromInput(input), {
        onNone: () => ParseResult.fail(new ParseResult.Type(ast, input)),
        onSome: ParseResult.succeed
      }),
    encode: ParseResult.succeed
  })

/**
 * {@link DurationFromInput} of at most `max` (`maxText` in messages: `"24h"`);
 * `what` names it (`"a stop grace"`) in the message, which says every form
 * it may take.
 */
export const boundedDuration = (what: string, max: Duration.Duration, maxText: string) =>
  DurationFromInput.pipe(
    Schema.filter((duration) => Duration.lessThanOrEqualTo(duration, max))
  ).annotations({
    message: () => ({
      message: `${what} is a duration from 0 to ${maxText}: milliseconds (10000), "10 seconds", "10s" or a Duration`,
      override: true
    })
  })

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
