/**
 * Options shared by the `sandbox-docker` commands.
 *
 * @since 0.1.0
 */
import type * as Args from "@effect/cli/Args"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { parseDuration } from "../internal/duration.js"
import { presets, type ReadinessPolicy } from "../ReadinessPolicy.js"

/**
 * Bad command-line input, found after parsing (a bad duration, say).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArguments extends Schema.TaggedError<InvalidArguments>()("InvalidArguments", {
  option: Schema.String,
  problem: Schema.String
}) {
  override get message(): string {
    return `--${this.option}: ${this.problem}`
  }
}

/**
 * Arguments the command line parser could not read (an unknown option, a
 * missing value, no subcommand). The problem says which.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidUsage extends Schema.TaggedError<InvalidUsage>()("InvalidUsage", {
  problem: Schema.String
}) {
  override get message(): string {
    return `${this.problem} (see sandbox-docker --help)`
  }
}

/**
 * Every way the command line can be refused before anything starts.
 *
 * @since 0.1.0
 * @category errors
 */
export type CliInputError = InvalidArguments | InvalidUsage

/**
 * An optional text option.
 *
 * @since 0.1.0
 * @category options
 */
export const text = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(description),
    Options.optional
  )

/**
 * An option with a fixed set of values. Read as text and checked by
 * {@link decodeChoice}, so that a wrong value is refused naming the option.
 *
 * @since 0.1.0
 * @category options
 */
export const choice = (name: string, values: ReadonlyArray<string>, description: string) =>
  text(name, values.join("|"), description)

/**
 * The value of a {@link choice} option, or its default.
 *
 * @since 0.1.0
 * @category options
 */
export const decodeChoice = <const A extends string>(
  name: string,
  values: ReadonlyArray<A>,
  value: Option.Option<string>,
  fallback: A
): Effect.Effect<A, InvalidArguments> =>
  Option.match(value, {
    onNone: () => Effect.succeed(fallback),
    onSome: (given) =>
      values.includes(given as A)
        ? Effect.succeed(given as A)
        : Effect.fail(
            new InvalidArguments({
              option: name,
              problem: `${JSON.stringify(given)} is not one of ${values.join(", ")}`
            })
          )
  })

/**
 * A whole number option, read as text and checked by {@link decodeWhole}.
 *
 * @since 0.1.0
 * @category options
 */
export const whole = (name: string, description: string) => text(name, "N", description)

/**
 * The value of a {@link whole} option: decimal digits, from `min` to `max`.
 *
 * @since 0.1.0
 * @category options
 */
export const decodeWhole = (
  name: string,
  value: Option.Option<string>,
  range: { readonly min: number; readonly max: number }
): Effect.Effect<Option.Option<number>, InvalidArguments> =>
  Option.match(value, {
    onNone: () => Effect.succeed(Option.none()),
    onSome: (given) => {
      const number = /^\d{1,10}$/.test(given) ? Number(given) : Number.NaN
      return number >= range.min && number <= range.max
        ? Effect.succeed(Option.some(number))
        : Effect.fail(
            new InvalidArguments({
              option: name,
              problem: `${JSON.stringify(given)} is not a whole number from ${range.min} to ${range.max}`
            })
          )
    }
  })

/**
 * A duration option, written the way Docker writes them (`500ms`, `30s`, `2m`).
 *
 * @since 0.1.0
 * @category options
 */
export const duration = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("DURATION"),
    Options.withDescription(description),
    Options.optional
  )

/**
 * Decodes an optional duration option.
 *
 * @since 0.1.0
 * @category options
 */
export const decodeDuration = (
  name: string,
  value: Option.Option<string>
): Effect.Effect<Option.Option<Duration.Duration>, InvalidArguments> =>
  Option.match(value, {
    onNone: () => Effect.succeed(Option.none()),
    onSome: (text) =>
      Either.match(parseDuration(text), {
        onLeft: (problem) => Effect.fail(new InvalidArguments({ option: name, problem })),
        onRight: (parsed) => Effect.succeed(Option.some(parsed))
      })
  })

/**
 * `--json`: one JSON object per line.
 *
 * @since 0.1.0
 * @category options
 */
export const json = Options.boolean("json").pipe(
  Options.withDescription("print one JSON object per line, each with an `event` field")
)

/**
 * `--policy fast|seed`.
 *
 * @since 0.1.0
 * @category options
 */
export const policy = choice(
  "policy",
  ["fast", "seed"],
  "readiness policy: fast (default) or seed (the original timings, for comparison)"
)

/**
 * `--deadline DURATION`.
 *
 * @since 0.1.0
 * @category options
 */
export const deadline = duration(
  "deadline",
  "give up when not ready after this long (default: the policy's, 30s for fast)"
)

/**
 * The readiness policy the options choose.
 *
 * @since 0.1.0
 * @category options
 */
export const readinessPolicy = (
  policyOption: Option.Option<string>,
  deadlineOption: Option.Option<string>
): Effect.Effect<ReadinessPolicy, InvalidArguments> =>
  Effect.gen(function* () {
    const name = yield* decodeChoice("policy", ["fast", "seed"], policyOption, "fast")
    const parsed = yield* decodeDuration("deadline", deadlineOption)
    const chosen = Option.match(parsed, {
      onNone: () => presets[name],
      onSome: (limit) => presets[name].withDeadline(limit)
    })
    if (Duration.lessThan(chosen.deadline, Duration.millis(1))) {
      return yield* new InvalidArguments({ option: "deadline", problem: "must be at least 1ms" })
    }
    return chosen
  })

/**
 * The parsed values of a record of options and arguments, before validation.
 *
 * @since 0.1.0
 * @category options
 */
export type ValuesOf<T> = {
  readonly [K in keyof T]: T[K] extends Options.Options<infer A>
    ? A
    : T[K] extends Args.Args<infer A>
      ? A
      : never
}
