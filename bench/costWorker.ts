/**
 * One measurement of the cost of waiting, in a process of its own so that
 * its CPU accounting holds nothing else (run by sections/cost.ts, bundled
 * and run with plain `node`: the library as shipped, not the TypeScript
 * loader).
 *
 *   node --no-memory-reducer costWorker.mjs PROBE SCENARIO POLICY SECONDS DIR STAND_IN
 *
 * - PROBE: `engine` (socket file, `GET /_ping`, `GET /info`: what
 *   `Dockerd.start` probes locally) or `docker-info` (`docker info` run
 *   through the ProcessManager: what `Dockerd.start` probes with
 *   `location: "remote"`), or `none` (no wait at all: the idle cost of this
 *   process, for reference).
 * - SCENARIO: `absent` (the daemon never creates its socket) or `hang` (it
 *   accepts connections and never answers).
 * - POLICY: a preset name (`fast`, `seed`).
 * - STAND_IN: the path of bench/fixtures/hanging-dockerd.mjs, the daemon,
 *   started through the local ProcessManager like dockerd is.
 *
 * Before the window the probe runs once against a path that does not exist
 * (so loading and compiling its code is not counted as waiting) and the
 * process rests for a second.
 *
 * Why `--no-memory-reducer`: in a fresh Node process V8's memory reducer
 * runs two or three full GCs some time after the start-up (8 s, 16 s, or
 * later: it waits for a low allocation rate) to give back the start-up's
 * garbage, ~100 ms of CPU with V8's helper threads (seen per thread in
 * `/proc`). That is a cost of starting the process, paid once whether or not
 * it waits; it fell inside the 30 s window in some runs and not in others
 * (~0.3% of a core). The full GCs that do run inside the window, caused by
 * what the wait allocates, are counted and reported.
 *
 * Measured over the wait (SECONDS, the policy's deadline): this process's
 * CPU time (`process.cpuUsage()`, every thread) plus the CPU time of its
 * reaped children, which are the probe processes (`docker` and whatever it
 * ran); the daemon is still running at the end of the window, so its own
 * CPU is not counted. Prints one JSON line.
 */
import "./lib/asShipped.js"
import { statSync } from "node:fs"
import * as Path from "node:path"
import { constants as perfConstants, PerformanceObserver } from "node:perf_hooks"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as DockerEngine from "../src/DockerEngine.js"
import * as LocalProcessManager from "../src/LocalProcessManager.js"
import * as Probe from "../src/Probe.js"
import { ProcessManager } from "../src/ProcessManager.js"
import * as Readiness from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import { childrenCpuMs, selfCpuMs } from "./lib/helpers.js"

const [
  probeKind = "engine",
  scenario = "absent",
  policyName = "fast",
  secondsArg = "30",
  dir = "/tmp",
  standIn = ""
] = process.argv.slice(2)
const seconds = Number(secondsArg)

/** Full (mark-compact) GCs since `count` was reset, and their time on the main thread. */
const fullGcs = { count: 0, ms: 0 }
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as { detail?: { kind?: number } }).detail?.kind
    if (kind !== perfConstants.NODE_PERFORMANCE_GC_MAJOR) continue
    fullGcs.count += 1
    fullGcs.ms += entry.duration
  }
})
gcObserver.observe({ entryTypes: ["gc"] })

const socket = Path.join(dir, "docker.sock")
const preset = ReadinessPolicy.presets[policyName as "fast" | "seed"]
if (preset === undefined) throw new Error(`unknown policy ${policyName}`)
const policy = preset.withDeadline(Duration.seconds(seconds))

/** The format Dockerd.start uses for its remote `docker info` probe. */
const INFO_FORMAT =
  '{"ServerVersion":{{json .ServerVersion}},"Driver":{{json .Driver}},"ApiVersion":""}'

const program = Effect.gen(function* () {
  const manager = yield* ProcessManager
  const daemon = yield* manager.exec(
    [standIn, `--host=unix://${socket}`, ...(scenario === "absent" ? ["--no-listen"] : [])],
    { killGrace: "2 seconds", tailLines: 50 }
  )
  if (scenario === "hang") {
    // Measure the wait only, not the stand-in's start.
    for (let i = 0; i < 5000; i++) {
      if (statSync(socket, { throwIfNoEntry: false })?.isSocket()) break
      yield* Effect.sleep("2 millis")
    }
  }
  const probe: Probe.Probe =
    probeKind === "engine"
      ? Probe.all([
          yield* Probe.socketFile(socket),
          Probe.enginePing(yield* DockerEngine.make(socket)),
          Probe.engineInfo(yield* DockerEngine.make(socket))
        ])
      : yield* Probe.command(
          ["docker", "--host", `unix://${socket}`, "info", "--format", INFO_FORMAT],
          {
            name: "docker info"
          }
        )
  // Warm up: run the probe once against a path that is not there, so that
  // loading and compiling its code is not counted as waiting; then let the
  // process settle.
  const warmSocket = Path.join(dir, "warm-up.sock")
  const warm: Probe.Probe =
    probeKind === "engine"
      ? Probe.all([
          yield* Probe.socketFile(warmSocket),
          Probe.enginePing(yield* DockerEngine.make(warmSocket))
        ])
      : yield* Probe.command(["docker", "--host", `unix://${warmSocket}`, "info"], {
          name: "warm-up"
        })
  if (probeKind !== "none") {
    yield* Effect.ignore(Probe.run(warm, { timeoutFor: () => Duration.seconds(5) }))
    yield* Effect.ignore(
      Probe.run(Probe.enginePing(yield* DockerEngine.make(warmSocket)), {
        timeoutFor: () => Duration.seconds(5)
      })
    )
  }
  yield* Effect.sleep("1 second")
  fullGcs.count = 0
  fullGcs.ms = 0
  const self0 = selfCpuMs()
  const children0 = childrenCpuMs()
  const wall0 = performance.now()
  let attempts = 0
  if (probeKind === "none") yield* Effect.sleep(Duration.seconds(seconds))
  else {
    const outcome = yield* Effect.either(Readiness.waitUntilReady(daemon, probe, policy))
    if (Either.isRight(outcome)) throw new Error("the stand-in was ready: it never should be")
    attempts = outcome.left.attempts
  }
  const wallMs = performance.now() - wall0
  const selfMs = selfCpuMs() - self0
  const childrenMs = childrenCpuMs() - children0
  return {
    probe: probeKind,
    scenario,
    policy: policyName,
    seconds,
    wallMs,
    selfMs,
    childrenMs,
    attempts,
    /** Full GCs that ran inside the window, and their time on the main thread. */
    fullGcs: fullGcs.count,
    fullGcMs: fullGcs.ms,
    percentOfCore: ((selfMs + childrenMs) / wallMs) * 100
  }
})

const result = await Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(Layer.merge(LocalProcessManager.layer, NodeFileSystem.layer)),
    Logger.withMinimumLogLevel(LogLevel.None)
  )
)
gcObserver.disconnect()
process.stdout.write(JSON.stringify(result) + "\n")
