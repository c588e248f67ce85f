/**
 * One measurement of the cost of waiting, in a process of its own so that
 * its CPU accounting holds nothing else (run by sections/cost.ts).
 *
 *   tsx bench/costWorker.ts PROBE SCENARIO POLICY SECONDS DIR
 *
 * - PROBE: `engine` (socket file, `GET /_ping`, `GET /info`: what
 *   `Dockerd.start` probes locally) or `docker-info` (`docker info` run
 *   through the ProcessManager: what `Dockerd.start` probes with
 *   `location: "remote"`), or `none` (no wait at all: the idle cost of this
 *   process, for reference).
 * - SCENARIO: `absent` (the daemon never creates its socket) or `hang` (it
 *   accepts connections and never answers).
 * - POLICY: a preset name (`fast`, `seed`).
 *
 * The daemon is bench/fixtures/hanging-dockerd.mjs, started through the
 * local ProcessManager like dockerd is. Before the window the probe runs
 * once against a path that does not exist (so loading and compiling its code
 * is not counted as waiting) and the process rests for a second. Measured over the wait (SECONDS, the
 * policy's deadline): this process's CPU time (`process.cpuUsage()`) plus the
 * CPU time of its reaped children, which are the probe processes (`docker`
 * and whatever it ran); the daemon is still running at the end of the
 * window, so its own CPU is not counted. Prints one JSON line.
 */
import "./lib/asShipped.js"
import * as Path from "node:path"
import { statSync } from "node:fs"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as DockerEngine from "../src/DockerEngine.js"
import * as LocalProcessManager from "../src/LocalProcessManager.js"
import * as Probe from "../src/Probe.js"
import { ProcessManager } from "../src/ProcessManager.js"
import * as Readiness from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import { childrenCpuMs, fixture, selfCpuMs } from "./lib/helpers.js"

const [
  probeKind = "engine",
  scenario = "absent",
  policyName = "fast",
  secondsArg = "30",
  dir = "/tmp"
] = process.argv.slice(2)
const seconds = Number(secondsArg)
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
    [
      fixture("hanging-dockerd.mjs"),
      `--host=unix://${socket}`,
      ...(scenario === "absent" ? ["--no-listen"] : [])
    ],
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
          Probe.socketFile(socket),
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
          Probe.socketFile(warmSocket),
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
    percentOfCore: ((selfMs + childrenMs) / wallMs) * 100
  }
})

const result = await Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(LocalProcessManager.layer),
    Logger.withMinimumLogLevel(LogLevel.None)
  )
)
process.stdout.write(JSON.stringify(result) + "\n")
