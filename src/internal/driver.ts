/**
 * A `Driver` lets plain callbacks (a readiness or liveness loop written as a
 * state machine) use what the calling fiber has: its clock, and its runtime
 * to run effects. It is what keeps such a loop cheap without leaving Effect:
 *
 * - with the live clock, a timer is a `setTimeout`; with any other clock
 *   (`TestClock`), it is a fiber sleeping on that clock, so a loop under
 *   `TestClock` moves only when the test adjusts the clock;
 * - an effect runs on the caller's runtime (its services, log level and
 *   annotations, span, supervisor), synchronously when it can, and is
 *   tracked until it ends;
 * - `shutdown` interrupts whatever still runs and waits for it: nothing is
 *   left behind.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import * as Tracer from "effect/Tracer"

/** Stops what was started. Safe to call more than once, and after it ended. */
export type Cancel = () => void

/**
 * What a loop of callbacks has in flight: one step at a time (a probe run,
 * a timer), and how to cancel it.
 */
export interface Step {
  /**
   * Starts the next step. A step may finish synchronously and start the one
   * after it before `begin` returns its own cancel: the newer one is kept.
   */
  readonly start: (begin: () => Cancel) => void
  /** Cancels the step in flight, if any. */
  readonly cancel: Cancel
}

/**
 * A {@link Step} holder for one loop.
 */
export const makeStep = (): Step => {
  let current: Cancel = () => {}
  let generation = 0
  return {
    start: (begin) => {
      const mine = ++generation
      const stop = begin()
      if (generation === mine) current = stop
    },
    cancel: () => current()
  }
}

/**
 * Clock and runtime of one fiber, for callbacks.
 */
export interface Driver {
  /** The clock's time, in milliseconds. */
  readonly now: () => number
  /** Runs `task` after `millis` (at once when `millis <= 0`; never when infinite). */
  readonly schedule: (millis: number, task: () => void) => Cancel
  /**
   * Runs `effect` on the caller's runtime and calls `done` with its exit,
   * unless cancelled first (the effect is then interrupted). Synchronous
   * effects complete before `run` returns.
   */
  readonly run: <A, E>(effect: Effect.Effect<A, E>, done: (exit: Exit.Exit<A, E>) => void) => Cancel
  /**
   * Interrupts every effect and timer still running and waits for them;
   * from then on nothing calls back.
   */
  readonly shutdown: Effect.Effect<void>
}

/** The clock fibers have unless something (`TestClock`) replaced it. */
const liveClock = Context.get(DefaultServices.liveServices, Clock.Clock)

/** `setTimeout` takes at most this many milliseconds (about 24.8 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

/** A `setTimeout` that also waits longer than the maximum, in steps. */
const liveSchedule = (millis: number, task: () => void): Cancel => {
  if (millis === Number.POSITIVE_INFINITY) return () => {}
  let handle: ReturnType<typeof setTimeout> | undefined
  const arm = (remaining: number) => {
    handle = setTimeout(
      () => (remaining > MAX_TIMEOUT_MS ? arm(remaining - MAX_TIMEOUT_MS) : task()),
      Math.min(Math.max(remaining, 0), MAX_TIMEOUT_MS)
    )
  }
  arm(millis)
  return () => clearTimeout(handle)
}

/** A driver for the calling fiber; with `span`, the parent of what it runs. */
const makeWithin = (span: Tracer.AnySpan | undefined): Effect.Effect<Driver> =>
  Effect.gen(function* () {
    const own = yield* Effect.runtime<never>()
    const runtime =
      span === undefined
        ? own
        : Runtime.make({
            context: Context.add(own.context, Tracer.ParentSpan, span),
            fiberRefs: own.fiberRefs,
            runtimeFlags: own.runtimeFlags
          })
    const clock = yield* Effect.clock
    const runFork = Runtime.runFork(runtime)
    const runSyncExit = Runtime.runSyncExit(runtime)
    // Fibers started here and not yet ended (cancelled ones included, until
    // their interruption completes).
    const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
    // After shutdown, nothing calls back.
    let closed = false

    const track = <A, E>(
      fiber: Fiber.RuntimeFiber<A, E>,
      done: (exit: Exit.Exit<A, E>) => void
    ): Cancel => {
      let cancelled = false
      fibers.add(fiber)
      fiber.addObserver((exit) => {
        fibers.delete(fiber)
        if (!cancelled && !closed) done(exit)
      })
      return () => {
        if (cancelled) return
        cancelled = true
        fiber.unsafeInterruptAsFork(FiberId.none)
      }
    }

    const run = <A, E>(
      effect: Effect.Effect<A, E>,
      done: (exit: Exit.Exit<A, E>) => void
    ): Cancel => {
      const exit = runSyncExit(effect)
      if (Exit.isFailure(exit) && Cause.isDieType(exit.cause)) {
        const defect = exit.cause.defect
        // It went asynchronous: its fiber runs on; follow it.
        if (Runtime.isAsyncFiberException(defect)) {
          return track(defect.fiber as Fiber.RuntimeFiber<A, E>, done)
        }
      }
      done(exit)
      return () => {}
    }

    // Live timers not yet fired or cancelled.
    const timers = new Set<Cancel>()
    const schedule =
      clock === liveClock
        ? (millis: number, task: () => void): Cancel => {
            if (closed) return () => {}
            const cancel = liveSchedule(millis, () => {
              timers.delete(cancel)
              task()
            })
            timers.add(cancel)
            return () => {
              timers.delete(cancel)
              cancel()
            }
          }
        : (millis: number, task: () => void): Cancel =>
            millis === Number.POSITIVE_INFINITY
              ? () => {}
              : track(runFork(clock.sleep(Duration.millis(Math.max(millis, 0)))), (exit) => {
                  if (Exit.isSuccess(exit)) task()
                })

    return {
      now: () => clock.unsafeCurrentTimeMillis(),
      schedule,
      run,
      shutdown: Effect.suspend(() => {
        closed = true
        for (const cancel of timers) cancel()
        timers.clear()
        return Fiber.interruptAll([...fibers])
      })
    }
  })

/**
 * A driver for the calling fiber.
 */
export const make: Effect.Effect<Driver> = makeWithin(undefined)

/**
 * A driver for the calling fiber whose effects run as children of `span`,
 * which need not be the fiber's own: a loop that keeps its span here
 * rather than in the waiting fiber's context spares that fiber the frames
 * of a context change for as long as it waits (~3 KB per waiting fiber).
 */
export const within = (span: Tracer.AnySpan): Effect.Effect<Driver> => makeWithin(span)
