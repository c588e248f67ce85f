/**
 * Per-operation CPU cost of the readiness hot path, beside a baseline: what
 * one Engine request, one probe run and one whole wait (ready at its first
 * attempt, or ended by an exit) cost this process, against a bare
 * `node:http` request on the same socket. The scale section's
 * numbers are these costs times a hundred daemons; this is where to look
 * when they move.
 *
 *   npm run bench:micro [-- N]     (N operations each, default 2000)
 *
 * The Engine is a stand-in in a process of its own (bench/fixtures/
 * engine-stub.mjs: answers `/_ping` and `/info` at once), so the CPU counted
 * is the client's alone (`process.cpuUsage()` over N sequential operations,
 * after 300 of warm-up, in 10 batches). Printed: CPU µs per operation, the
 * median batch and the best one (this machine has slow moments that land in
 * a few batches), and wall µs per operation (median batch). Then a probe
 * that starts a process (`docker info` with no daemon there, N/20 runs, at
 * most 100) through the local ProcessManager, beside a bare
 * `child_process.spawn` of the same command and `@effect/platform`'s
 * `Command.start` (what that manager was built on before). Then 100
 * waits started at once on sockets that never appear (each as the scale
 * section makes one: its fiber, scope, Engine client and wait): the CPU each
 * costs until its first attempt, the heap grown by then, and the heap each
 * holds while it waits (measured after a full GC).
 */
import "./lib/asShipped.js"
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import * as Command from "@effect/platform/Command"
import * as NodeCommandExecutor from "@effect/platform-node/NodeCommandExecutor"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Stream from "effect/Stream"
import * as DockerEngine from "../src/DockerEngine.js"
import { resolveExecutable } from "../src/internal/executable.js"
import * as LocalProcessManager from "../src/LocalProcessManager.js"
import * as Probe from "../src/Probe.js"
import { type ProcessHandle, ProcessManager } from "../src/ProcessManager.js"
import { Exited } from "../src/ProcessStatus.js"
import * as Readiness from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import { bundle } from "./lib/bundle.js"
import { fixture, scratchRoot, workerResult } from "./lib/helpers.js"
import { forever } from "./lib/standIns.js"

const N = Number(process.argv[2] ?? 2000)
const root = mkdtempSync(Path.join(scratchRoot(), "sdb-micro-"))
const socket = Path.join(root, "engine.sock")
const stub = spawn(process.execPath, [fixture("engine-stub.mjs"), socket], {
  stdio: ["ignore", "pipe", "inherit"]
})
await new Promise((resolve) => stub.stdout.once("data", resolve))

/** Batches per measurement: the machine's slow moments land in a few of them. */
const BATCHES = 10

const measure = async (
  name: string,
  once: () => Promise<unknown>,
  counts: { readonly warmUp: number; readonly ops: number } = { warmUp: 300, ops: N }
) => {
  for (let i = 0; i < counts.warmUp; i++) await once()
  const perBatch = Math.max(1, Math.floor(counts.ops / BATCHES))
  const cpuPerOp: Array<number> = []
  const wallPerOp: Array<number> = []
  for (let batch = 0; batch < BATCHES; batch++) {
    const cpu0 = process.cpuUsage()
    const wall0 = performance.now()
    for (let i = 0; i < perBatch; i++) await once()
    const cpu = process.cpuUsage(cpu0)
    cpuPerOp.push((cpu.user + cpu.system) / perBatch)
    wallPerOp.push(((performance.now() - wall0) * 1000) / perBatch)
  }
  const median = (values: Array<number>) =>
    Math.round([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN)
  const best = (values: Array<number>) => Math.round(Math.min(...values))
  console.log(
    `  ${name.padEnd(44)} CPU ${String(median(cpuPerOp)).padStart(5)} µs/op (best ${String(best(cpuPerOp)).padStart(5)})   wall ${String(median(wallPerOp)).padStart(5)} µs/op`
  )
}

const keepAlive = new Http.Agent({ keepAlive: true, maxSockets: 1 })
const bare = (agent: Http.Agent | false) => () =>
  new Promise<void>((resolve, reject) => {
    const request = Http.request({ socketPath: socket, path: "/_ping", agent }, (response) => {
      response.resume()
      response.on("end", resolve)
    })
    request.on("error", reject)
    request.end()
  })

/**
 * A process that has already exited (code 1) when the wait starts: the
 * wait's way from an exit to its typed error (`ExitedBeforeReady`), with no
 * probe in the way.
 */
const exited: ProcessHandle = {
  ...forever,
  status: Effect.succeed(new Exited({ code: 1 })),
  awaitExit: Effect.succeed(new Exited({ code: 1 }))
}

const quiet = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.either(effect).pipe(Logger.withMinimumLogLevel(LogLevel.None)))

console.log(`micro: ${N} operations each, one at a time`)
await measure("baseline: node:http GET /_ping, new connection", bare(false))
await measure("baseline: node:http GET /_ping, kept alive", bare(keepAlive))
await quiet(
  Effect.scoped(
    Effect.gen(function* () {
      const engine = yield* DockerEngine.make(socket)
      const probe = Probe.all([
        yield* Probe.socketFile(socket),
        Probe.enginePing(engine),
        Probe.engineInfo(engine)
      ])
      const options = { timeoutFor: () => Duration.seconds(2) }
      const missing = yield* Probe.socketFile(Path.join(root, "missing.sock"))
      const op = (name: string, effect: Effect.Effect<unknown, unknown>) =>
        Effect.promise(() => measure(name, () => quiet(effect)))
      yield* op("DockerEngine ping", engine.ping)
      yield* op("DockerEngine info (decoded)", engine.info)
      yield* op("probe: socket file, not there", Probe.run(missing, options))
      yield* op("probe: socket, /_ping, /info", Probe.run(probe, options))
      yield* op(
        "waitUntilReady, ready at the first attempt",
        Readiness.waitUntilReady(forever, probe)
      )
      yield* op(
        "waitUntilReady, exited: ExitedBeforeReady",
        Readiness.waitUntilReady(exited, probe)
      )
    })
  ).pipe(Effect.provide(NodeFileSystem.layer))
)

// A probe that starts a process (`docker info`, as with `location: "remote"`),
// against a socket that is not there, beside a bare spawn of the same
// command and beside \`@effect/platform\`'s \`Command.start\`, which the local
// process manager was built on before it spawned by itself.
const PROCESS_OPS = { warmUp: 5, ops: Math.max(BATCHES, Math.min(100, Math.floor(N / 20))) }
const dockerArgv = [
  "docker",
  "--host",
  `unix://${Path.join(root, "missing.sock")}`,
  "info",
  "--format",
  "{{json .ServerVersion}}"
] as const
const dockerBinary = Effect.runSync(resolveExecutable("docker", process.env.PATH))
console.log(`processes: ${PROCESS_OPS.ops} runs each of \`docker info\` with no daemon there`)
await measure(
  "baseline: child_process.spawn, output read",
  () =>
    new Promise<void>((resolve) => {
      const child = spawn(dockerBinary, dockerArgv.slice(1), {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      child.stdout.setEncoding("utf8").resume()
      child.stderr.setEncoding("utf8").resume()
      child.on("close", () => resolve())
    }),
  PROCESS_OPS
)
await measure(
  "baseline: @effect/platform Command.start",
  () =>
    quiet(
      Effect.scoped(
        Effect.flatMap(Command.start(Command.make(dockerBinary, ...dockerArgv.slice(1))), (child) =>
          Effect.all(
            [
              Stream.runDrain(Stream.decodeText(child.stdout)),
              Stream.runDrain(Stream.decodeText(child.stderr)),
              child.exitCode
            ],
            { concurrency: 3 }
          )
        )
      ).pipe(Effect.provide(NodeCommandExecutor.layer), Effect.provide(NodeFileSystem.layer))
    ),
  PROCESS_OPS
)
await quiet(
  Effect.gen(function* () {
    const manager = yield* ProcessManager
    const probe = yield* Probe.command([...dockerArgv], { name: "docker info" })
    const options = { timeoutFor: () => Duration.seconds(5) }
    const op = (name: string, effect: Effect.Effect<unknown, unknown>) =>
      Effect.promise(() => measure(name, () => quiet(effect), PROCESS_OPS))
    yield* op(
      "LocalProcessManager.exec, exit, tail",
      Effect.scoped(
        Effect.flatMap(manager.exec([...dockerArgv], { killGrace: "100 millis" }), (handle) =>
          Effect.zip(handle.awaitExit, handle.logTail)
        )
      )
    )
    yield* op("probe: docker info (Probe.command)", Probe.run(probe, options))
  }).pipe(Effect.provide(LocalProcessManager.layer))
)

// 100 waits at once on sockets that never appear.
const WAITS = 100
let started = 0
let firstAttemptsAt = 0
let firstAttemptsCpu = 0
const cpu0 = process.cpuUsage()
const wall0 = performance.now()
const heap0 = process.memoryUsage().heapUsed
let heapAtFirst = 0
const policy = ReadinessPolicy.fast.withDeadline(Duration.seconds(2))
await quiet(
  Effect.forEach(
    Array.from({ length: WAITS }, (_, i) => i),
    (i) =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = Path.join(root, String(i))
          mkdirSync(dir)
          const path = Path.join(dir, "docker.sock")
          const engine = yield* DockerEngine.make(path)
          let seen = false
          yield* Effect.either(
            Readiness.waitUntilReady(
              forever,
              Probe.all([
                yield* Probe.socketFile(path),
                Probe.enginePing(engine),
                Probe.engineInfo(engine)
              ]),
              policy,
              {
                onEvent: () =>
                  Effect.sync(() => {
                    if (seen) return
                    seen = true
                    started += 1
                    if (started === WAITS) {
                      const cpu = process.cpuUsage(cpu0)
                      firstAttemptsCpu = (cpu.user + cpu.system) / 1000
                      firstAttemptsAt = performance.now() - wall0
                      heapAtFirst = process.memoryUsage().heapUsed - heap0
                    }
                  })
              }
            )
          )
        })
      ),
    { concurrency: "unbounded", discard: true }
  ).pipe(Effect.provide(NodeFileSystem.layer))
)
console.log(
  `  ${WAITS} waits at once, to their first attempt: ${Math.round(firstAttemptsAt)} ms wall, CPU ${Math.round((firstAttemptsCpu * 1000) / WAITS)} µs per wait, heap +${Math.round(heapAtFirst / 1024 / WAITS)} KB per wait`
)
stub.kill()
rmSync(root, { recursive: true, force: true })

// The heap a daemon holds while waited for or supervised: bench/heldWorker.ts,
// bundled as shipped (as the scale section's worker is) and run with plain
// `node`, a process per mode.
const heldWorker = await bundle("heldWorker.ts", "heldWorker.mjs")
const held = (mode: string) =>
  workerResult<{ kbPerFiber: number }>(
    [process.execPath, "--expose-gc", heldWorker, mode, fixture("engine-stub.mjs")],
    `heldWorker ${mode}`
  ).then((result) => result.kbPerFiber)
const [base, waiting, supervised] = [
  await held("base"),
  await held("wait"),
  await held("supervise")
]
console.log(
  `  heap held per daemon (after a full GC, 100 at once): its fiber, scope and Engine client ${base.toFixed(1)} KB; waited for ${waiting.toFixed(1)} KB; supervised ${supervised.toFixed(1)} KB`
)
