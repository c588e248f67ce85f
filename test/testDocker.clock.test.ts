/**
 * `Dockerd.start`, `Dockerd.layer` and `Supervisor.run` of a local daemon
 * under `TestClock`, through the public API only (`sandbox-docker` and
 * `sandbox-docker/test`): a scripted dockerd that gets ready, crashes, never
 * gets ready, dies after ready and is restarted.
 */
import { inspect } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { stringify } from "@vitest/utils"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import { Dockerd, Supervisor } from "../src/index.js"
import { TestDocker, TestProcessManager } from "../src/testing.js"

const config = { socket: "/run/test/docker.sock" }

/** The scripted dockerds still running. */
const running = Effect.flatMap(TestProcessManager.TestProcessManager, (test) => test.running)

describe("a scripted local dockerd under TestClock", () => {
  it.scoped("ready after 3 s: the start returns at 3 s, with what the daemon said", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(Dockerd.start(config))
      yield* TestClock.adjust("2999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      const daemon = yield* Fiber.join(fiber)
      assert.strictEqual(daemon.timeToReadyMs, 3000)
      assert.strictEqual(daemon.location, "local")
      assert.strictEqual(daemon.serverVersion, TestDocker.SERVER_VERSION)
      assert.strictEqual(daemon.apiVersion, TestDocker.API_VERSION)
      assert.strictEqual(daemon.storageDriver, TestDocker.STORAGE_DRIVER)
      // It prints small (a test runner's diff calls `toJSON`; `util.inspect` its own symbol).
      assert.isBelow(inspect(daemon).length, 400)
      assert.isBelow(stringify(daemon).length, 400)
      assert.deepStrictEqual(Object.keys(JSON.parse(JSON.stringify(daemon))), [
        "_id",
        "pid",
        "socket",
        "serverVersion",
        "apiVersion",
        "storageDriver",
        "timeToReadyMs",
        "location"
      ])
    }).pipe(Effect.provide(TestDocker.layer({ readyAfter: "3 seconds" })))
  )

  it.scoped("exit 1 with an unknown flag: DaemonCrashed at the exit, diagnosed", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(Effect.flip(Dockerd.start(config)))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "DaemonCrashed")
      if (error._tag !== "DaemonCrashed") return
      assert.strictEqual(error.exitCode, 1)
      assert.strictEqual(error.elapsedMs, 150)
      assert.strictEqual(error.diagnosis?.cause, "unknown-flag")
    }).pipe(
      Effect.provide(
        TestDocker.layer({
          output: [{ at: "100 millis", text: "unknown flag: --bogus\n" }],
          exit: { at: "150 millis", code: 1 }
        })
      )
    )
  )

  it.scoped("never ready: DaemonNotReady at exactly the deadline, and nothing left running", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(Effect.flip(Dockerd.start(config)))
      yield* TestClock.adjust("29999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      assert.strictEqual((yield* running).length, 1)
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "DaemonNotReady")
      if (error._tag !== "DaemonNotReady") return
      assert.strictEqual(error.elapsedMs, 30_000)
      // The failed start stopped its daemon before it returned, though the
      // test's scope is still open.
      assert.deepStrictEqual(yield* running, [])
    }).pipe(Effect.provide(TestDocker.layer({})))
  )

  it.scoped("an interrupted start stops its daemon at once", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(Dockerd.start(config))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* running).length, 1)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* running, [])
    }).pipe(Effect.provide(TestDocker.layer({ readyAfter: "3 seconds" })))
  )

  it.scoped("a death after ready, and its restart by Supervisor.run", () =>
    Effect.gen(function* () {
      const ready = yield* Ref.make<ReadonlyArray<Dockerd.DockerDaemon>>([])
      const fiber = yield* Effect.fork(
        Supervisor.run(config, {
          restart: Supervisor.onFailure(1, "500 millis"),
          onReady: (daemon) => Ref.update(ready, (all) => [...all, daemon])
        })
      )
      yield* TestClock.adjust("4 seconds")
      assert.strictEqual((yield* Ref.get(ready)).length, 1)
      // It dies at 5 s; the restart waits 500 ms; the new one is ready 1 s later.
      yield* TestClock.adjust("2499 millis")
      assert.strictEqual((yield* Ref.get(ready)).length, 1)
      yield* TestClock.adjust("1 millis")
      const [first, second] = yield* Ref.get(ready)
      assert.isDefined(second)
      assert.notStrictEqual(first!.pid, second!.pid)
      assert.strictEqual(second!.timeToReadyMs, 1000)
      const processes = yield* Effect.flatMap(
        TestProcessManager.TestProcessManager,
        (test) => test.processes
      )
      assert.deepStrictEqual(
        processes.map((process) => process.status._tag),
        ["Exited", "Running"]
      )
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* running, [])
    }).pipe(
      Effect.provide(
        TestDocker.layer(({ previous }) =>
          previous === 0
            ? { readyAfter: "1 second", exit: { at: "5 seconds", code: 1 } }
            : { readyAfter: "1 second" }
        )
      )
    )
  )

  it.scoped("Dockerd.layer: started with the layer, stopped with it", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(
        Effect.gen(function* () {
          const daemon = yield* Dockerd.Docker
          return { daemon, running: yield* running }
        }).pipe(Effect.provide(Dockerd.layer(config)))
      )
      yield* TestClock.adjust("3 seconds")
      const built = yield* Fiber.join(fiber)
      assert.strictEqual(built.daemon.timeToReadyMs, 3000)
      assert.deepStrictEqual(
        built.running.map((process) => process.pid),
        [built.daemon.pid]
      )
      assert.deepStrictEqual(yield* running, [])
    }).pipe(Effect.provide(TestDocker.layer({ readyAfter: "3 seconds" })))
  )
})
