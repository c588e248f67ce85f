/**
 * What the TestProcessManager (exported for users' tests) does with signals
 * and scripted exits, case by case under TestClock, each at its exact
 * virtual time: the kernel's rules a scripted dockerd must follow for the
 * readiness and stop tests on it to mean anything.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import type * as Duration from "effect/Duration"
import { ProcessManager, type SignalName } from "../src/ProcessManager.js"
import { describe as describeStatus } from "../src/ProcessStatus.js"
import * as TestProcessManager from "../src/TestProcessManager.js"

/**
 * Starts a scripted process, sends `signals` at their times, and returns how
 * it ended and when (in milliseconds after its start; within a minute).
 */
const life = (
  script: TestProcessManager.ProcessScript,
  signals: ReadonlyArray<readonly [number, SignalName]>
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const manager = yield* ProcessManager
      const started = yield* Clock.currentTimeMillis
      const handle = yield* manager.exec(["dockerd"])
      const ended = yield* Effect.fork(
        Effect.zip(
          Effect.map(handle.awaitExit, describeStatus),
          Effect.map(Clock.currentTimeMillis, (now) => now - started)
        )
      )
      for (const [at, signal] of signals) {
        yield* handle.signal(signal).pipe(Effect.delay(`${at} millis`), Effect.forkScoped)
      }
      yield* TestClock.adjust("1 minute")
      const [status, at] = yield* Fiber.join(ended)
      return { status, at }
    })
  ).pipe(Effect.provide(TestProcessManager.layer([{ match: "dockerd", script }])))

const onTerm = (reaction: Duration.DurationInput | "ignore"): TestProcessManager.ProcessScript => ({
  onTerm: reaction
})

describe("TestProcessManager: scripted exits and signals (TestClock)", () => {
  it.effect("a scripted exit happens at its time, with its code or signal", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* life({ exit: { at: "150 millis", code: 3 } }, []), {
        status: "exit code 3",
        at: 150
      })
      const killed = yield* life({ exit: { at: "70 millis", signal: "SIGSEGV" } }, [])
      assert.strictEqual(killed.at, 70)
      assert.include(killed.status, "SIGSEGV")
    })
  )

  it.effect("SIGTERM ends it after its reaction time, as Signaled SIGTERM", () =>
    Effect.gen(function* () {
      const ended = yield* life(onTerm("40 millis"), [[100, "SIGTERM"]])
      assert.strictEqual(ended.at, 140)
      assert.include(ended.status, "SIGTERM")
    })
  )

  it.effect("a process that ignores SIGTERM lives on; SIGKILL ends it at once", () =>
    Effect.gen(function* () {
      const ended = yield* life(onTerm("ignore"), [
        [100, "SIGTERM"],
        [300, "SIGKILL"]
      ])
      assert.strictEqual(ended.at, 300)
      assert.include(ended.status, "SIGKILL")
    })
  )

  it.effect(
    "SIGTERM to a stopped process waits for SIGCONT, then takes its reaction time; SIGKILL does not wait",
    () =>
      Effect.gen(function* () {
        const held = yield* life(onTerm("20 millis"), [
          [100, "SIGSTOP"],
          [200, "SIGTERM"],
          [500, "SIGCONT"]
        ])
        assert.strictEqual(held.at, 520)
        assert.include(held.status, "SIGTERM")
        const killed = yield* life(onTerm("20 millis"), [
          [100, "SIGSTOP"],
          [200, "SIGKILL"]
        ])
        assert.strictEqual(killed.at, 200)
        assert.include(killed.status, "SIGKILL")
      })
  )

  it.effect("SIGUSR1, SIGSTOP and SIGCONT alone do not end it; its scripted exit still comes", () =>
    Effect.gen(function* () {
      const ended = yield* life({ exit: { at: "900 millis", code: 0 } }, [
        [100, "SIGUSR1"],
        [200, "SIGSTOP"],
        [300, "SIGCONT"]
      ])
      assert.deepStrictEqual(ended, { status: "exit code 0", at: 900 })
    })
  )

  it.effect(
    "closing its scope: SIGTERM, then SIGKILL after killGrace for one that ignores it",
    () =>
      Effect.gen(function* () {
        const test = yield* TestProcessManager.TestProcessManager
        const manager = yield* ProcessManager
        const closing = yield* Effect.fork(
          Effect.scoped(manager.exec(["dockerd"], { killGrace: "250 millis" }))
        )
        yield* TestClock.adjust("249 millis")
        assert.strictEqual((yield* test.running).length, 1)
        yield* TestClock.adjust("1 millis")
        const handle = yield* Fiber.join(closing)
        assert.include(describeStatus(yield* handle.awaitExit), "SIGKILL")
        assert.deepStrictEqual(yield* test.running, [])
      }).pipe(
        Effect.provide(TestProcessManager.layer([{ match: "dockerd", script: onTerm("ignore") }]))
      )
  )
})
