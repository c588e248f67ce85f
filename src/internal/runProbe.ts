/**
 * Runs a probe once from callbacks (`Probe.run` is this as an Effect): each
 * check under its own timeout, `All` in order up to the first failure,
 * `FirstOf` up to the first success. A check with a callback form
 * (`Check.unsafeRun`) runs without a fiber, its timeout a timer of the
 * driver's clock; any other check runs as an effect on the caller's runtime
 * under `Effect.timeoutFail`. The readiness and liveness loops use this: one
 * attempt of theirs is then a few callbacks instead of several fibers.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { ProbeTimedOut, type ProbeFailure } from "../errors.js"
import type * as Probe from "../Probe.js"
import { type Cancel, type Driver, makeStep } from "./driver.js"
import { ProbeSucceeded } from "./probeSucceeded.js"
import { stackless } from "./stackless.js"

/**
 * How one run times and reports its checks.
 */
export interface RunOptions {
  /** The timeout of a check without its own, by the check's name. */
  readonly timeoutFor: (name: string) => Duration.Duration
  /**
   * Called with the outcome of every check that ran; when it returns an
   * effect, the run goes on once that effect has run (events stay in order).
   */
  readonly onOutcome?:
    ((outcome: Probe.ProbeOutcome) => Effect.Effect<void> | undefined) | undefined
}

/** What a run ends with: the successes that decided it, or the failure. */
export type RunResult = Exit.Exit<ReadonlyArray<ProbeSucceeded>, ProbeFailure>

/**
 * Runs `probe` once; `done` is called once with the result unless the
 * returned function cancels the run first (a check in flight is then
 * cancelled: its request destroyed, its fiber interrupted).
 */
export const runProbe = (
  probe: Probe.Probe,
  driver: Driver,
  options: RunOptions,
  done: (result: RunResult) => void
): Cancel => {
  const inFlight = makeStep()
  const step = inFlight.start
  let cancelled = false

  const report = (outcome: Probe.ProbeOutcome, then: () => void) => {
    const effect = options.onOutcome?.(outcome)
    if (effect === undefined) return then()
    step(() =>
      driver.run(effect, () => {
        if (!cancelled) then()
      })
    )
  }

  const check = (one: Probe.Check, finish: (result: RunResult) => void) => {
    const timeout = Option.getOrElse(one.timeout, () => options.timeoutFor(one.name))
    const started = driver.now()
    const settle = (result: Either.Either<unknown, ProbeFailure>) => {
      if (Either.isLeft(result)) {
        const failure = result.left
        return report(failure, () => finish(Exit.fail(failure)))
      }
      // (Fields typed by construction: no validation on this hot path.)
      const success = new ProbeSucceeded(
        { probe: one.name, elapsedMs: driver.now() - started, value: result.right },
        true
      )
      report(success, () => finish(Exit.succeed([success])))
    }
    const timedOut = () =>
      stackless(
        () => new ProbeTimedOut({ probe: one.name, timeoutMs: Duration.toMillis(timeout) }, true)
      )

    const callback = one.unsafeRun
    if (callback !== undefined) {
      return step(() => {
        let over = false
        let stopCheck: Cancel = () => {}
        let stopTimer: Cancel = () => {}
        const end = (result: Either.Either<unknown, ProbeFailure>) => {
          if (over) return
          over = true
          stopTimer()
          stopCheck()
          settle(result)
        }
        stopTimer = driver.schedule(Duration.toMillis(timeout), () => end(Either.left(timedOut())))
        stopCheck = callback(end)
        return () => {
          over = true
          stopTimer()
          stopCheck()
        }
      })
    }
    step(() =>
      driver.run(
        one.run.pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: timedOut }),
          Effect.either,
          // No call-site stack trace: it would be captured on every attempt.
          Effect.withSpan("Probe.check", {
            attributes: { probe: one.name },
            captureStackTrace: false
          })
        ),
        (exit) => {
          if (Exit.isSuccess(exit)) return settle(exit.value)
          // A defect of the check, or an interruption of its own (a cancel
          // by this run reports nothing, so it is never that), ends the run
          // as it is.
          finish(Exit.failCause(exit.cause))
        }
      )
    )
  }

  const go = (current: Probe.Probe, finish: (result: RunResult) => void): void => {
    switch (current._tag) {
      case "Check":
        return check(current, finish)
      case "All": {
        const successes: Array<ProbeSucceeded> = []
        const next = (index: number) => {
          const probe = current.probes[index]
          if (probe === undefined) return finish(Exit.succeed(successes))
          go(probe, (result) => {
            if (Exit.isFailure(result)) return finish(result)
            successes.push(...result.value)
            next(index + 1)
          })
        }
        return next(0)
      }
      case "FirstOf": {
        const next = (index: number, last: RunResult | undefined) => {
          const probe = current.probes[index]
          if (probe === undefined) {
            return finish(last ?? Exit.die(new Error("Probe.firstOf of no probes")))
          }
          go(probe, (result) => (Exit.isSuccess(result) ? finish(result) : next(index + 1, result)))
        }
        return next(0, undefined)
      }
    }
  }

  go(probe, (result) => {
    if (cancelled) return
    cancelled = true
    done(result)
  })
  return () => {
    if (cancelled) return
    cancelled = true
    inFlight.cancel()
  }
}
