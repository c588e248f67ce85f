/**
 * A user's test, as the README shows it: their own workflow over a Docker
 * daemon, tested in virtual time with a scripted dockerd. In a user's
 * project the imports are `sandbox-docker` and `sandbox-docker/test`.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { Dockerd } from "../src/index.js"
import { TestDocker } from "../src/testing.js"

/** The user's code: needs a ready Docker daemon, says where it listens. */
const dockerHost = Effect.map(Dockerd.Docker, (daemon) => `unix://${daemon.socket}`)

it.scoped("my workflow gets a Docker daemon that is ready after 3 s", () =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(
      dockerHost.pipe(Effect.provide(Dockerd.layer({ socket: "/run/app/docker.sock" })))
    )
    yield* TestClock.adjust("3 seconds")
    assert.strictEqual(yield* Fiber.join(fiber), "unix:///run/app/docker.sock")
  }).pipe(Effect.provide(TestDocker.layer({ readyAfter: "3 seconds" })))
)

it.scoped("my workflow reports a daemon that crashes at start", () =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(
      Effect.flip(
        dockerHost.pipe(Effect.provide(Dockerd.layer({ socket: "/run/app/docker.sock" })))
      )
    )
    yield* TestClock.adjust("1 second")
    const error = yield* Fiber.join(fiber)
    assert.strictEqual(error._tag, "DaemonCrashed")
    if (error._tag === "DaemonCrashed") assert.strictEqual(error.diagnosis?.cause, "unknown-flag")
  }).pipe(
    Effect.provide(
      TestDocker.layer({
        output: [{ at: "100 millis", text: "unknown flag: --bogus\n" }],
        exit: { at: "150 millis", code: 1 }
      })
    )
  )
)
