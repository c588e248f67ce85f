/**
 * Typed errors of the Docker commands in a sandbox that a real engine will
 * not make on demand, produced on a scripted `docker` (TestProcessManager,
 * TestClock): a nested network refused under gVisor before anything runs,
 * and output that does not read as what Docker answers.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import type { ExitStatus } from "../src/ProcessStatus.js"
import { ProcessManager } from "../src/ProcessManager.js"
import * as Probe from "../src/Probe.js"
import * as SandboxDocker from "../src/SandboxDocker.js"
import * as SandboxVolume from "../src/SandboxVolume.js"
import * as TestProcessManager from "../src/TestProcessManager.js"
import { processUntil, readyDaemon } from "./support/standIns.js"

/** A ready daemon stand-in, for the commands to run against. */
const ready = Effect.flatMap(Deferred.make<ExitStatus>(), (exited) =>
  readyDaemon(processUntil(exited), Probe.make("liveness", Effect.succeed("OK")))
)

describe("Docker commands in a sandbox: refusals and unreadable answers (TestClock)", () => {
  it.scoped(
    "run with a network other than host in a gVisor sandbox: NestedNetworkUnsupported naming it, nothing run",
    () =>
      Effect.gen(function* () {
        const manager = yield* ProcessManager
        const test = yield* TestProcessManager.TestProcessManager
        const docker = SandboxDocker.make(manager, ready, { runtime: "runsc" })
        const error = yield* Effect.flip(docker.run("busybox", [], { network: "bridge" }))
        expect(error).toMatchObject({ _tag: "NestedNetworkUnsupported", network: "bridge" })
        expect(error.message).toContain('Use network "host"')
        expect(yield* test.processes).toEqual([])
      }).pipe(Effect.provide(TestProcessManager.layer([])))
  )

  it.effect(
    "volume inspect whose output is not Docker's JSON: DockerOutputInvalid with the argv and the problem",
    () =>
      Effect.gen(function* () {
        const manager = yield* ProcessManager
        const volumes = SandboxVolume.make(manager, ready)
        const fiber = yield* Effect.fork(Effect.flip(volumes.inspect("data")))
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        expect(error).toMatchObject({
          _tag: "DockerOutputInvalid",
          argv: ["docker", "volume", "inspect", "data"],
          problem: expect.any(String)
        })
        expect(error.message).toContain("supported one")
      }).pipe(
        Effect.provide(
          TestProcessManager.layer([
            {
              match: "docker",
              script: {
                output: [{ at: "10 millis", text: "this is not json\n" }],
                exit: { at: "20 millis", code: 0 }
              }
            }
          ])
        )
      )
  )
})
