/**
 * A {@link RetrySpacing} stepped by arithmetic: each call gives the delay in
 * milliseconds before the next attempt, the delay the policy's `Schedule`
 * (`ReadinessPolicy.schedule`) would choose at that step. The readiness
 * loop calls it once per failed attempt for every daemon it waits for, and
 * stepping the Schedule itself takes a fiber (`Effect.runSync`) per step;
 * the arithmetic takes none. test/spacing.property.test.ts checks the two
 * against each other.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type { RetrySpacing } from "../ReadinessPolicy.js"

/**
 * Returns the function that steps `spacing`: the delay in milliseconds
 * before the next attempt. Both spacings go on forever.
 */
export const make = (spacing: RetrySpacing): (() => number) => {
  switch (spacing._tag) {
    case "FixedInterval": {
      const interval = Duration.toMillis(spacing.interval)
      return () => interval
    }
    case "ExponentialBackoff": {
      // `Schedule.exponential` is `initial` times `factor ** n` at the n-th
      // step (from 0), in Duration's own arithmetic (whole nanoseconds for
      // a duration below a millisecond); the union with
      // `Schedule.spaced(max)` caps it at `max`.
      const max = Duration.toMillis(spacing.max)
      let step = 0
      let capped = false
      return () => {
        if (capped) return max
        const delay = Duration.toMillis(
          Duration.times(spacing.initial, Math.pow(spacing.factor, step))
        )
        step += 1
        if (delay >= max) {
          // (It grows no more: `factor >= 1`.)
          capped = true
          return max
        }
        return delay
      }
    }
  }
}
