/**
 * The restart policy of `Supervisor.run` end to end under `TestClock`, on a
 * scripted local dockerd (`TestDocker`): restarts until `maxRestarts`, then
 * the last failure; the backoff doubling from `backoff` and capped at 30 s;
 * no restart after a first start that failed. Every time is virtual and
 * exact. (The same against a real dockerd, through the CLI: test/cli.test.ts.)
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import type { DaemonEvent } from "../src/DaemonEvent.js"
import { Supervisor } from "../src/index.js"
import { TestDocker, TestProcessManager } from "../src/testing.js"

const config = { socket: "/run/test/docker.sock" }

interface Seen {
  readonly at: number
  readonly event: DaemonEvent
}

/** Runs `Supervisor.run` for `forAtMost` of virtual time; what it did, and when. */
const supervised = (restart: Supervisor.RestartPolicy, forAtMost: Duration.DurationInput) =>
  Effect.gen(function* () {
    const seen: Array<Seen> = []
    const state = yield* SubscriptionRef.make<Supervisor.DaemonState>(
      Supervisor.DaemonState.Starting({ restarts: 0 })
    )
    const fiber = yield* Effect.fork(
      Effect.flip(
        Supervisor.run(config, {
          restart,
          state,
          onEvent: (event) =>
            Effect.map(Clock.currentTimeMillis, (at) => void seen.push({ at, event }))
        })
      ).pipe(Effect.zip(Clock.currentTimeMillis))
    )
    yield* TestClock.adjust(forAtMost)
    const ended = yield* Fiber.poll(fiber)
    const test = yield* TestProcessManager.TestProcessManager
    const of = <T extends DaemonEvent["_tag"]>(tag: T) =>
      seen.flatMap(({ at, event }) =>
        event._tag === tag ? [{ at, event: event as Extract<DaemonEvent, { _tag: T }> }] : []
      )
    return {
      ended: Option.map(ended, (exit) => {
        if (exit._tag === "Failure") throw new Error("the supervision died or was interrupted")
        const [error, at] = exit.value
        return { error, at }
      }),
      spawnedAt: of("Spawned").map(({ at }) => at),
      readyAt: of("Ready").map(({ at }) => at),
      restarting: of("Restarting").map(({ at, event }) => ({
        at,
        restart: event.restart,
        maxRestarts: event.maxRestarts,
        delayMs: event.delayMs
      })),
      state: yield* SubscriptionRef.get(state),
      spawned: (yield* test.processes).length,
      running: (yield* test.running).length
    }
  })

/** Ready 1 s after its start, dead (exit 1) 1 s later. */
const diesAfterReady: TestDocker.DockerdScript = {
  readyAfter: "1 second",
  exit: { at: "2 seconds", code: 1 }
}

/** Exits 1 at 150 ms with an unknown flag: never ready. */
const crashesAtStart: TestDocker.DockerdScript = {
  output: [{ at: "100 millis", text: "unknown flag: --bogus\n" }],
  exit: { at: "150 millis", code: 1 }
}

describe("the restart policy (Supervisor.run, TestClock)", () => {
  it.scoped(
    "on-failure(3, 1 s): restarted 3 times, 1 s, 2 s, then 4 s after each death; the fourth death is DaemonDied with restarts 3",
    () =>
      Effect.gen(function* () {
        const run = yield* supervised(Supervisor.onFailure(3, "1 second"), "1 minute")
        // Spawned, ready 1 s later, dead 1 s after that, restarted after the backoff.
        assert.deepStrictEqual(run.spawnedAt, [0, 3_000, 7_000, 13_000])
        assert.deepStrictEqual(run.readyAt, [1_000, 4_000, 8_000, 14_000])
        assert.deepStrictEqual(run.restarting, [
          { at: 2_000, restart: 1, maxRestarts: 3, delayMs: 1_000 },
          { at: 5_000, restart: 2, maxRestarts: 3, delayMs: 2_000 },
          { at: 9_000, restart: 3, maxRestarts: 3, delayMs: 4_000 }
        ])
        const { error, at } = Option.getOrThrow(run.ended)
        assert.strictEqual(at, 15_000)
        assert.strictEqual(error._tag, "DaemonDied")
        if (error._tag !== "DaemonDied") return
        assert.strictEqual(error.restarts, 3)
        assert.strictEqual(error.exitCode, 1)
        assert.strictEqual(run.state._tag, "Failed")
        assert.strictEqual(run.spawned, 4)
        assert.strictEqual(run.running, 0)
      }).pipe(Effect.provide(TestDocker.layer(diesAfterReady)))
  )

  it.scoped("the backoff doubles from 10 s and is capped at 30 s: 10, 20, 30, 30, 30 s", () =>
    Effect.gen(function* () {
      const run = yield* supervised(Supervisor.onFailure(5, "10 seconds"), "5 minutes")
      assert.deepStrictEqual(
        run.restarting.map(({ delayMs }) => delayMs),
        [10_000, 20_000, 30_000, 30_000, 30_000]
      )
      // Each restart is spawned exactly its delay after the death it follows.
      assert.deepStrictEqual(
        run.spawnedAt.slice(1),
        run.restarting.map(({ at, delayMs }) => at + delayMs)
      )
      const { error } = Option.getOrThrow(run.ended)
      assert.deepInclude(error, { _tag: "DaemonDied", restarts: 5 })
      assert.strictEqual(run.running, 0)
    }).pipe(Effect.provide(TestDocker.layer(diesAfterReady)))
  )

  it.scoped(
    "a first start that fails is not restarted, whatever the policy: DaemonCrashed at once, one dockerd spawned",
    () =>
      Effect.gen(function* () {
        const run = yield* supervised(Supervisor.onFailure(3, "1 second"), "1 minute")
        const { error, at } = Option.getOrThrow(run.ended)
        assert.strictEqual(at, 150)
        assert.deepInclude(error, { _tag: "DaemonCrashed", exitCode: 1 })
        assert.strictEqual(error._tag === "DaemonCrashed" && error.diagnosis?.cause, "unknown-flag")
        assert.deepStrictEqual(run.restarting, [])
        assert.strictEqual(run.spawned, 1)
        assert.strictEqual(run.running, 0)
        assert.strictEqual(run.state._tag, "Failed")
      }).pipe(Effect.provide(TestDocker.layer(crashesAtStart)))
  )

  it.scoped(
    "once a daemon was ready, a restart that fails to start is retried too, and counts: on-failure(2) ends with the second crash",
    () =>
      Effect.gen(function* () {
        const run = yield* supervised(Supervisor.onFailure(2, "1 second"), "1 minute")
        // Dies at 2 s; restarted at 3 s, crashes at 3.15 s; again at 5.15 s, crashes at 5.3 s.
        assert.deepStrictEqual(run.spawnedAt, [0, 3_000, 5_150])
        assert.deepStrictEqual(
          run.restarting.map(({ restart, delayMs }) => [restart, delayMs]),
          [
            [1, 1_000],
            [2, 2_000]
          ]
        )
        const { error, at } = Option.getOrThrow(run.ended)
        assert.strictEqual(at, 5_300)
        assert.strictEqual(error._tag, "DaemonCrashed")
        assert.strictEqual(run.running, 0)
      }).pipe(
        Effect.provide(
          TestDocker.layer(({ previous }) => (previous === 0 ? diesAfterReady : crashesAtStart))
        )
      )
  )

  it.scoped("never: the first death after ready ends it, DaemonDied with restarts 0", () =>
    Effect.gen(function* () {
      const run = yield* supervised(Supervisor.never, "1 minute")
      const { error, at } = Option.getOrThrow(run.ended)
      assert.strictEqual(at, 2_000)
      assert.deepInclude(error, { _tag: "DaemonDied", restarts: 0, exitCode: 1 })
      assert.deepStrictEqual(run.restarting, [])
      assert.strictEqual(run.spawned, 1)
    }).pipe(Effect.provide(TestDocker.layer(diesAfterReady)))
  )
})
