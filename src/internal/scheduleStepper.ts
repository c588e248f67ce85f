/**
 * A `Schedule` stepped from callbacks: each call runs the schedule's step
 * at the clock's time and says how long to wait before the next attempt,
 * as `Schedule.driver` would sleep, without a fiber to sleep in.
 *
 * @internal
 */
import { Effect, type Schedule, ScheduleDecision, ScheduleIntervals } from "effect"

/**
 * Returns the function that steps `schedule`: the delay in milliseconds
 * until the next recurrence, or `Infinity` once the schedule is done.
 */
export const make = <Out>(
  schedule: Schedule.Schedule<Out, unknown>,
  now: () => number
): (() => number) => {
  let state: unknown = schedule.initial
  let done = false
  return () => {
    if (done) return Number.POSITIVE_INFINITY
    const time = now()
    const [next, , decision] = Effect.runSync(schedule.step(time, undefined, state))
    state = next
    if (ScheduleDecision.isDone(decision)) {
      done = true
      return Number.POSITIVE_INFINITY
    }
    return Math.max(0, ScheduleIntervals.start(decision.intervals) - time)
  }
}
