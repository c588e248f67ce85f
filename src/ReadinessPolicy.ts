/**
 * How to wait: an initial delay, the `Schedule` that spaces attempts (from
 * the spacing given as data, a slower one for probes that start a process,
 * or any `Schedule` of yours), what in the process's output means "look
 * again now", the timeout of each probe and the hard deadline.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { DurationFromInput } from "./internal/duration.js"

/**
 * The same interval between attempts, every time.
 *
 * @since 0.1.0
 * @category models
 */
export class FixedInterval extends Schema.TaggedClass<FixedInterval>()("FixedInterval", {
  interval: DurationFromInput
}) {}

/**
 * An interval that starts at `initial`, grows by `factor` after each attempt
 * and stays at `max` once it gets there.
 *
 * @since 0.1.0
 * @category models
 */
export class ExponentialBackoff extends Schema.TaggedClass<ExponentialBackoff>()(
  "ExponentialBackoff",
  {
    initial: DurationFromInput,
    factor: Schema.Number.pipe(Schema.greaterThanOrEqualTo(1)),
    max: DurationFromInput
  }
) {}

/**
 * The spacing of attempts, as data.
 *
 * @since 0.1.0
 * @category models
 */
export const RetrySpacing = Schema.Union(FixedInterval, ExponentialBackoff)

/**
 * @since 0.1.0
 * @category models
 */
export type RetrySpacing = FixedInterval | ExponentialBackoff

/**
 * A `Schedule` as a field of a Schema class. It is taken as it is and is
 * not encoded: a policy with one is made in code, not read from a file.
 *
 * @since 0.1.0
 * @category models
 */
export const AnySchedule: Schema.Schema<Schedule.Schedule<unknown, unknown>> = Schema.declare(
  (input: unknown): input is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(input),
  { identifier: "Schedule" }
)

/**
 * The Schedule a spacing describes; its output is the delay it chose.
 *
 * @since 0.1.0
 * @category constructors
 */
export const scheduleOf = (spacing: RetrySpacing): Schedule.Schedule<Duration.Duration> => {
  switch (spacing._tag) {
    case "FixedInterval":
      return Schedule.spaced(spacing.interval).pipe(Schedule.as(spacing.interval))
    case "ExponentialBackoff":
      return Schedule.exponential(spacing.initial, spacing.factor).pipe(
        Schedule.union(Schedule.spaced(spacing.max)),
        Schedule.map(([exponential]) => Duration.min(exponential, spacing.max))
      )
  }
}

/**
 * A readiness policy. Every duration is given as a `Duration.DurationInput`
 * (a Duration, milliseconds, `"10 seconds"` or `10s`).
 *
 * @since 0.1.0
 * @category models
 */
export class ReadinessPolicy extends Schema.Class<ReadinessPolicy>("ReadinessPolicy")({
  /** A name for reports: `fast`, `seed`, or your own. */
  name: Schema.String,
  /** Wait this long after the spawn before the first attempt. */
  initialDelay: DurationFromInput,
  /** The spacing between attempts. */
  retry: RetrySpacing,
  /**
   * Any `Schedule` to space attempts with instead of `retry` and
   * `commandRetry`. Its input is the failure that ended the attempt; a
   * schedule that ends leaves the rest of the wait to the deadline.
   */
  schedule: Schema.optional(AnySchedule),
  /**
   * The spacing of a probe that starts a process (a command probe such as
   * `docker info`): each attempt waits for the longer of this and `retry`
   * at that step. A process
   * costs tens of milliseconds of CPU where a socket or Engine probe costs
   * well under one, so waiting stays cheap only if processes are started
   * rarely. Default: the same as `retry`.
   */
  commandRetry: Schema.optional(RetrySpacing),
  /**
   * A pattern (a regular expression's source) of the process's output lines
   * after which an attempt starts at once, whatever the spacing says: a line
   * the process prints when it becomes ready, such as dockerd's `API listen
   * on` (printed as it starts serving). Probes may wake the loop too (the
   * socket file appearing). Wake-ups never run attempts side by side.
   */
  wakeOnOutput: Schema.optional(Schema.String),
  /**
   * Whether probes' own wake-ups start an attempt at once (the socket file
   * appearing: `Probe.socketFile` watches its directory). While a watched
   * check says "not yet", the loop then waits for its wake-up and polls only
   * every `pollWhileWatched`, as a safety net. Without, attempts follow the
   * spacing alone.
   */
  wakeOnProbeEvents: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /**
   * How often a check whose wake-ups are watched is still polled while it
   * says "not yet": a safety net only, since its watch wakes the loop.
   * Default: the longest delay of `retry`.
   */
  pollWhileWatched: Schema.optional(DurationFromInput),
  /** The timeout of each probe that has none of its own. */
  probeTimeout: DurationFromInput,
  /** Timeouts for named probes (for example `socket`), overriding `probeTimeout`. */
  probeTimeouts: Schema.optionalWith(
    Schema.Record({ key: Schema.String, value: DurationFromInput }),
    { default: () => ({}) }
  ),
  /** The hard limit, counted from the spawn. */
  deadline: DurationFromInput
}) {
  /**
   * The `Schedule` that spaces the attempts of a probe: the one given as
   * `schedule`; else `retry`, and for a probe that starts a process the
   * longer of `retry` and `commandRetry` at each step.
   */
  scheduleFor(startsProcess: boolean): Schedule.Schedule<unknown, unknown> {
    if (this.schedule !== undefined) return this.schedule
    const cheap = scheduleOf(this.retry)
    return startsProcess && this.commandRetry !== undefined
      ? Schedule.intersect(cheap, scheduleOf(this.commandRetry))
      : cheap
  }

  /**
   * The pace of polling while the loop waits for a probe's wake-up (see
   * `wakeOnProbeEvents`): `pollWhileWatched`, else the longest delay
   * `retry` ever makes.
   */
  get watchedPollDelay(): Duration.Duration {
    if (this.pollWhileWatched !== undefined) return this.pollWhileWatched
    return this.retry._tag === "FixedInterval" ? this.retry.interval : this.retry.max
  }

  /**
   * The timeout of the probe called `name`.
   */
  timeoutFor(name: string): Duration.Duration {
    return this.probeTimeouts[name] ?? this.probeTimeout
  }

  /**
   * A copy with another deadline.
   */
  withDeadline(deadline: Duration.DurationInput): ReadinessPolicy {
    return new ReadinessPolicy({ ...this, deadline: Duration.decode(deadline) })
  }
}

/**
 * The default: the first attempt at once, then 2 ms growing by half each time
 * up to 500 ms; for probes that run a command (`docker info`), 1 s doubling
 * up to 10 s. Waiting is driven by events more than by the clock:
 * the socket file appearing (`Probe.socketFile` watches its directory) and
 * dockerd's `API listen on` line each start an attempt at once, and Engine
 * probes that find the socket wait on the held connection, which dockerd
 * answers the moment it serves. The spacing is the fallback, kept sparse so
 * that a daemon that never gets ready costs little: while the socket is
 * watched and absent, it is polled every 2 s only, as a safety net.
 *
 * @since 0.1.0
 * @category presets
 */
export const fast: ReadinessPolicy = new ReadinessPolicy({
  name: "fast",
  initialDelay: Duration.zero,
  retry: new ExponentialBackoff({
    initial: Duration.millis(2),
    factor: 1.5,
    max: Duration.millis(500)
  }),
  commandRetry: new ExponentialBackoff({
    initial: Duration.seconds(1),
    factor: 2,
    max: Duration.seconds(10)
  }),
  wakeOnOutput: "API listen on",
  wakeOnProbeEvents: true,
  pollWhileWatched: Duration.seconds(2),
  probeTimeout: Duration.seconds(2),
  probeTimeouts: {},
  deadline: Duration.seconds(30)
})

/**
 * The seed's timings, kept for comparison: 2 s initial wait, 1 s between
 * attempts (command probes included), no wake-ups, 2 s for the socket check,
 * 3 s for `docker info`, then 30 s of attempts (a 32 s deadline from the
 * spawn).
 *
 * @since 0.1.0
 * @category presets
 */
export const seed: ReadinessPolicy = new ReadinessPolicy({
  name: "seed",
  initialDelay: Duration.seconds(2),
  retry: new FixedInterval({ interval: Duration.seconds(1) }),
  commandRetry: new FixedInterval({ interval: Duration.seconds(1) }),
  wakeOnProbeEvents: false,
  probeTimeout: Duration.seconds(3),
  probeTimeouts: { socket: Duration.seconds(2) },
  deadline: Duration.seconds(32)
})

/**
 * The presets by name.
 *
 * @since 0.1.0
 * @category presets
 */
export const presets: Readonly<Record<"fast" | "seed", ReadinessPolicy>> = { fast, seed }
