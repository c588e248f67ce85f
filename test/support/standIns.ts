/**
 * Stand-ins for the clock tests: a process that lives until told to die,
 * and a daemon as `Dockerd.start` returns it once ready.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Dockerd from "../../src/Dockerd.js"
import * as DockerdConfig from "../../src/DockerdConfig.js"
import type * as Probe from "../../src/Probe.js"
import type { ProcessHandle } from "../../src/ProcessManager.js"
import { type ExitStatus, Running, Signaled } from "../../src/ProcessStatus.js"
import { ReadinessReport } from "../../src/Readiness.js"

/** A process that lives until `exited` is completed (then it reads as SIGKILLed). */
export const processUntil = (exited: Deferred.Deferred<ExitStatus>): ProcessHandle => ({
  pid: 4242,
  argv: ["stand-in"],
  status: Effect.map(Deferred.poll(exited), (done) =>
    done._tag === "None" ? new Running() : new Signaled({ signal: "SIGKILL" })
  ),
  awaitExit: Deferred.await(exited),
  output: Stream.empty,
  logTail: Effect.succeed([]),
  signal: () => Effect.succeed(false)
})

/** A daemon as `Dockerd.start` returns it once ready, on `process`. */
export const readyDaemon = (process: ProcessHandle, liveness: Probe.Probe) =>
  Effect.map(
    DockerdConfig.decode({ socket: "/nowhere/docker.sock" }),
    (config): Dockerd.DockerDaemon => ({
      pid: process.pid,
      socket: config.socket,
      config,
      serverVersion: "test",
      apiVersion: "1.41",
      storageDriver: "vfs",
      timeToReadyMs: 0,
      report: new ReadinessReport({
        pid: process.pid,
        policy: "test",
        attempts: 1,
        elapsedMs: 0,
        results: []
      }),
      process,
      awaitExit: process.awaitExit,
      liveness,
      location: "local"
    })
  )
