/**
 * How to wait: an initial delay, the retry schedule between attempts, the
 * timeout of each probe and the hard deadline.
 *
 * @since 0.1.0
 */
import { Duration, Schedule, Schema } from "effect"

/**
 * The same interval between attempts, every time.
 *
 * @since 0.1.0
 * @category models
 */
export class FixedInterval extends Schema.TaggedClass<FixedInterval>()("FixedInterval", {
  interval: Schema.DurationFromMillis
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
    initial: Schema.DurationFromMillis,
    factor: Schema.Number.pipe(Schema.greaterThanOrEqualTo(1)),
    max: Schema.DurationFromMillis
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
 * A readiness policy. Every duration is encoded as milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export class ReadinessPolicy extends Schema.Class<ReadinessPolicy>("ReadinessPolicy")({
  /** A name for reports: `fast`, `seed`, or your own. */
  name: Schema.String,
  /** Wait this long after the spawn before the first attempt. */
  initialDelay: Schema.DurationFromMillis,
  /** The spacing between attempts. */
  retry: RetrySpacing,
  /** The timeout of each probe that has none of its own. */
  probeTimeout: Schema.DurationFromMillis,
  /** Timeouts for named probes (for example `socket`), overriding `probeTimeout`. */
  probeTimeouts: Schema.optionalWith(
    Schema.Record({ key: Schema.String, value: Schema.DurationFromMillis }),
    { default: () => ({}) }
  ),
  /** The hard limit, counted from the spawn. */
  deadline: Schema.DurationFromMillis
}) {
  /**
   * The retry schedule the readiness loop runs on.
   */
  get schedule(): Schedule.Schedule<Duration.Duration> {
    const spacing = this.retry
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
 * up to 100 ms. A ready daemon is found within a few milliseconds; a slow one
 * costs a few cheap probes a second. Engine probes that find the socket wait
 * on the held connection, which the daemon answers the moment it serves.
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
    max: Duration.millis(100)
  }),
  probeTimeout: Duration.seconds(2),
  probeTimeouts: {},
  deadline: Duration.seconds(30)
})

/**
 * The seed's timings, kept for comparison: 2 s initial wait, 1 s between
 * attempts, 2 s for the socket check, 3 s for `docker info`, then 30 s of
 * attempts (a 32 s deadline from the spawn).
 *
 * @since 0.1.0
 * @category presets
 */
export const seed: ReadinessPolicy = new ReadinessPolicy({
  name: "seed",
  initialDelay: Duration.seconds(2),
  retry: new FixedInterval({ interval: Duration.seconds(1) }),
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
