/**
 * Options shared by the `sandbox-docker` commands.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import { Duration, Effect, Either, Option, Schema } from "effect"
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
export const policy = Options.choice("policy", ["fast", "seed"]).pipe(
  Options.withDefault("fast" as const),
  Options.withDescription("readiness policy: fast (default) or seed (the original timings, for comparison)")
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
  name: "fast" | "seed",
  deadlineOption: Option.Option<string>
): Effect.Effect<ReadinessPolicy, InvalidArguments> =>
  Effect.map(decodeDuration("deadline", deadlineOption), (parsed) =>
    Option.match(parsed, {
      onNone: () => presets[name],
      onSome: (limit) => presets[name].withDeadline(limit)
    })
  ).pipe(
    Effect.filterOrFail(
      (chosen) => Duration.greaterThan(chosen.deadline, Duration.zero),
      () => new InvalidArguments({ option: "deadline", problem: "must be longer than 0s" })
    )
  )
