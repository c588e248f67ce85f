/**
 * `Probe.run`, the Effect form of one probe run, under TestClock: `all` in
 * order up to the first failure, `firstOf` up to the first success (else
 * the last failure), every outcome reported in order, each check under its
 * own timeout, and nothing left behind when it ends or is interrupted. It is
 * the runner the readiness and liveness loops use, so these are their rules
 * too.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { ProbeFailed, ProbeNotYet, ProbeTimedOut } from "../src/errors.js"
import * as Probe from "../src/Probe.js"
import { fiberTracker } from "./support/fibers.js"

const options = { timeoutFor: () => Duration.seconds(1) }

/** A check that answers `result` (`undefined`: never), counting its starts and cancels. */
const countedCheck = (
  name: string,
  result: Either.Either<unknown, ProbeNotYet | ProbeFailed> | undefined,
  state = { started: 0, cancelled: 0 }
) => ({
  state,
  check: Probe.make(
    name,
    Effect.suspend(() => {
      state.started += 1
      if (result !== undefined) return result
      return Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => (state.cancelled += 1))))
    })
  )
})

const notYet = (probe: string) => new ProbeNotYet({ probe, reason: "not yet" })

describe("Probe.run", () => {
  it.effect(
    "runs all checks in order, reporting each outcome, and stops at the first failure",
    () =>
      Effect.gen(function* () {
        const seen: Array<string> = []
        const first = Probe.make("first", Effect.succeed(1))
        const second = countedCheck("second", Either.left(notYet("second")))
        const third = countedCheck("third", Either.right(3))
        const exit = yield* Effect.exit(
          Probe.run(Probe.all([first, second.check, third.check]), {
            ...options,
            onOutcome: (outcome) => Effect.sync(() => seen.push(`${outcome.probe}:${outcome._tag}`))
          })
        )
        expect(exit).toStrictEqual(Exit.fail(notYet("second")))
        expect(seen).toEqual(["first:ProbeSucceeded", "second:ProbeNotYet"])
        expect(third.state.started).toBe(0)
      })
  )

  it.effect("succeeds with every success of all, in order", () =>
    Effect.gen(function* () {
      const results = yield* Probe.run(
        Probe.all([
          Probe.make("a", Effect.succeed("A")),
          countedCheck("b", Either.right("B")).check
        ]),
        options
      )
      expect(results.map((result) => [result.probe, result.value])).toEqual([
        ["a", "A"],
        ["b", "B"]
      ])
    })
  )

  it.effect("firstOf takes the first success, else fails with the last failure", () =>
    Effect.gen(function* () {
      const later = countedCheck("later", Either.right("late"))
      const won = yield* Probe.run(
        Probe.firstOf([
          Probe.make("no", Effect.fail(new ProbeFailed({ probe: "no", reason: "broken" }))),
          Probe.make("yes", Effect.succeed("first")),
          later.check
        ]),
        options
      )
      expect(won.map((result) => result.value)).toEqual(["first"])
      expect(later.state.started).toBe(0)
      const lost = yield* Effect.flip(
        Probe.run(
          Probe.firstOf([
            Probe.make("no", Effect.fail(new ProbeFailed({ probe: "no", reason: "broken" }))),
            countedCheck("nor", Either.left(notYet("nor"))).check
          ]),
          options
        )
      )
      expect(lost).toStrictEqual(notYet("nor"))
    })
  )

  it.effect("a check that never answers times out at its own timeout, then at the policy's", () =>
    Effect.gen(function* () {
      const hanging = countedCheck("hangs", undefined)
      const own = Probe.make("own", Effect.never, { timeout: "250 millis" })
      const fiber = yield* Effect.fork(
        Effect.either(Probe.run(Probe.firstOf([own, hanging.check]), options))
      )
      yield* TestClock.adjust("249 millis")
      expect(hanging.state.started).toBe(0)
      yield* TestClock.adjust("1 millis")
      expect(hanging.state.started).toBe(1)
      yield* TestClock.adjust("999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(fiber)
      expect(result).toStrictEqual(
        Either.left(new ProbeTimedOut({ probe: "hangs", timeoutMs: 1000 }))
      )
      // The timed-out check was cancelled: its request would be destroyed.
      expect(hanging.state.cancelled).toBe(1)
    })
  )

  it.effect("interrupted, it cancels the check in flight and leaves no fiber", () =>
    Effect.gen(function* () {
      const hanging = countedCheck("hangs", undefined)
      let effectCheckEnded = false
      const slow = Probe.make(
        "slow",
        Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => (effectCheckEnded = true))))
      )
      const fibers = yield* fiberTracker
      const callbackRun = yield* Effect.fork(fibers.supervise(Probe.run(hanging.check, options)))
      const effectRun = yield* Effect.fork(fibers.supervise(Probe.run(slow, options)))
      yield* TestClock.adjust("100 millis")
      // The two runs, and what they forked to run their checks under a timeout.
      expect(yield* fibers.alive).toBeGreaterThanOrEqual(2)
      yield* Fiber.interrupt(callbackRun)
      yield* Fiber.interrupt(effectRun)
      expect(hanging.state.cancelled).toBe(1)
      // Interrupting the run waited for the check's own fiber to end.
      expect(effectCheckEnded).toBe(true)
      expect(yield* fibers.alive).toBe(0)
    })
  )

  it.effect("a check that interrupts itself ends the run interrupted instead of hanging it", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Probe.run(Probe.make("quits", Effect.interrupt), options))
      expect(Exit.isInterrupted(exit)).toBe(true)
    })
  )
})
