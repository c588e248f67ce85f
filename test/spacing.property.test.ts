/**
 * The readiness loop steps a policy's spacing by arithmetic
 * (internal/spacingStepper.ts), not through its `Schedule`. For random
 * spacings, fixed and exponential (factors from 1 to 4, caps below, at and
 * far above the start), and random moments of stepping, the delays are
 * exactly the Schedule's outputs, and match the intervals the Schedule
 * decides (what `Schedule.driver` would sleep) to within float rounding.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import * as SpacingStepper from "../src/internal/spacingStepper.js"
import {
  ExponentialBackoff,
  FixedInterval,
  fast,
  ReadinessPolicy,
  type RetrySpacing,
  seed
} from "../src/ReadinessPolicy.js"

const SEED = Number(process.env.FC_SEED ?? 1_737_000_321)
const RUNS = Number(process.env.FC_RUNS ?? 300)

/** Steps `schedule` as `Schedule.driver` does: its output and its delay. */
const stepSchedule = (schedule: Schedule.Schedule<Duration.Duration>) => {
  let state: unknown = schedule.initial
  return (now: number) => {
    const [next, output, decision] = Effect.runSync(schedule.step(now, undefined, state))
    state = next
    if (ScheduleDecision.isDone(decision)) throw new Error("a spacing's schedule never ends")
    return {
      output: Duration.toMillis(output),
      delay: ScheduleIntervals.start(decision.intervals) - now
    }
  }
}

const millis = (min: number, max: number) =>
  fc.double({ min, max, noNaN: true }).map((ms) => Duration.millis(ms))

const spacing: fc.Arbitrary<RetrySpacing> = fc.oneof(
  millis(0, 60_000).map((interval) => new FixedInterval({ interval })),
  fc
    .record({
      initial: millis(0.1, 5_000),
      factor: fc.oneof(
        fc.constant(1),
        fc.constant(1.5),
        fc.double({ min: 1, max: 4, noNaN: true })
      ),
      // The cap, as a multiple of the start: below it, at it, above it.
      capRatio: fc.oneof(fc.constant(1), fc.double({ min: 0.1, max: 10_000, noNaN: true }))
    })
    .map(
      ({ capRatio, factor, initial }) =>
        new ExponentialBackoff({
          initial,
          factor,
          max: Duration.millis(Duration.toMillis(initial) * capRatio)
        })
    )
)

/** Moments of stepping: an epoch-like start, then random gaps. */
const moments = fc
  .tuple(
    fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
    fc.array(fc.integer({ min: 0, max: 120_000 }), { minLength: 1, maxLength: 60 })
  )
  .map(([start, gaps]) => gaps.map((_, i) => start + gaps.slice(0, i + 1).reduce((a, b) => a + b)))

const policyWith = (retry: RetrySpacing) =>
  new ReadinessPolicy({ ...fast, name: "property", retry, commandRetry: undefined })

describe("a spacing stepped by arithmetic", () => {
  it("gives the delays of the policy's Schedule, step by step", () => {
    fc.assert(
      fc.property(spacing, moments, (retry, times) => {
        const policy = policyWith(retry)
        const arithmetic = SpacingStepper.make(policy.retry)
        const reference = stepSchedule(policy.schedule)
        for (const now of times) {
          const delay = arithmetic()
          const { delay: scheduled, output } = reference(now)
          expect(delay).toBe(output)
          // The Schedule's interval is on the epoch clock: float rounding.
          expect(Math.abs(delay - scheduled)).toBeLessThanOrEqual(1e-3)
        }
      }),
      { seed: SEED, numRuns: RUNS }
    )
  })

  it("gives the presets' documented delays", () => {
    const fastDelays = SpacingStepper.make(fast.retry)
    // 2 ms growing by half up to 500 ms, in whole nanoseconds as Duration counts.
    expect(Array.from({ length: 18 }, () => fastDelays())).toEqual([
      2, 3, 4.5, 6.75, 10.125, 15.1875, 22.78125, 34.171875, 51.257813, 76.886719, 115.330078,
      172.995117, 259.492676, 389.239014, 500, 500, 500, 500
    ])
    const command = SpacingStepper.make(fast.commandRetry ?? fast.retry)
    expect(Array.from({ length: 5 }, () => command())).toEqual([2000, 4000, 8000, 10_000, 10_000])
    const seedDelays = SpacingStepper.make(seed.retry)
    expect(Array.from({ length: 3 }, () => seedDelays())).toEqual([1000, 1000, 1000])
  })
})
