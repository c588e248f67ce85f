/**
 * The heap one daemon holds while it is waited for or supervised, for
 * `npm run bench:micro`, in a process of its own (run with `--expose-gc`) so
 * that nothing else this process did is in the count.
 *
 *   node --expose-gc heldWorker.mjs MODE ENGINE_STUB_PATH [N]
 *
 * (bench/micro.ts bundles it with esbuild and runs it so: as shipped, not
 * through the TypeScript loader, whose `keepNames` makes every closure
 * bigger.)
 *
 * Forks N fibers (default 100), each as the scale section makes one (its
 * scope and Engine client), that then:
 *
 * - `base`: waits forever (what the fiber, scope and client alone hold);
 * - `wait`: waits in `waitUntilReady` for a socket that never appears;
 * - `supervise`: is supervised (`Supervisor.supervise`, a `/_ping` a
 *   second) on an Engine stand-in that answers.
 *
 * Prints the heap held per fiber: after a full GC with all of them parked,
 * less the same before they were forked, in KB.
 */
import "./lib/asShipped.js"
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import * as Path from "node:path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Probe from "../src/Probe.js"
import { ReadinessReport, waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { scratchRoot } from "./lib/helpers.js"
import { forever } from "./lib/standIns.js"

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with --expose-gc")
/** The heap after a full GC (twice: what the first frees may hold more). */
const heldNow = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const mode = process.argv[2] ?? "wait"
const engineStub = process.argv[3] ?? ""
const count = Number(process.argv[4] ?? 100)
const root = mkdtempSync(Path.join(scratchRoot(), "sdb-held-"))
const stubSocket = Path.join(root, "engine.sock")
const stub = spawn(process.execPath, [engineStub, stubSocket], {
  stdio: ["ignore", "pipe", "inherit"]
})
// The stand-in and the directory go whatever happens.
process.on("exit", () => {
  stub.kill()
  rmSync(root, { recursive: true, force: true })
})
await new Promise((resolve, reject) => {
  stub.stdout.once("data", resolve)
  stub.once("exit", (code) => reject(new Error(`the Engine stand-in exited ${code}`)))
})

const dirs = Array.from({ length: count }, (_, i) => {
  const dir = Path.join(root, String(i))
  mkdirSync(dir)
  return dir
})
const policy = ReadinessPolicy.fast.withDeadline(Duration.minutes(1))

const one = (i: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const socket = mode === "supervise" ? stubSocket : Path.join(dirs[i] as string, "docker.sock")
      const engine = yield* DockerEngine.make(socket)
      if (mode === "base") return yield* Effect.never
      if (mode === "wait") {
        const probe = Probe.all([
          yield* Probe.socketFile(socket),
          Probe.enginePing(engine),
          Probe.engineInfo(engine)
        ])
        return yield* waitUntilReady(forever, probe, policy)
      }
      const config = yield* DockerdConfig.decode({ socket })
      const daemon = Dockerd.makeDaemon({
        pid: forever.pid,
        socket,
        config,
        serverVersion: "stub-1.0",
        apiVersion: "1.41",
        storageDriver: "vfs",
        timeToReadyMs: 0,
        report: new ReadinessReport(
          { pid: forever.pid, policy: "fast", attempts: 1, elapsedMs: 0, results: [] },
          true
        ),
        process: forever,
        awaitExit: forever.awaitExit,
        liveness: Probe.enginePing(engine, { name: "liveness" }),
        location: "local"
      })
      return yield* Supervisor.supervise(daemon)
    })
  )

await Effect.runPromise(
  Effect.gen(function* () {
    yield* Effect.sleep("300 millis")
    const before = heldNow()
    const fibers = yield* Effect.forEach(dirs, (_, i) => Effect.fork(one(i)))
    // Every one parked: its first attempt or check made, its timers set.
    yield* Effect.sleep("1500 millis")
    const parked = heldNow()
    process.stdout.write(
      JSON.stringify({ mode, kbPerFiber: (parked - before) / count / 1024 }) + "\n"
    )
    yield* Fiber.interruptAll(fibers)
  }).pipe(Effect.provide(NodeFileSystem.layer), Logger.withMinimumLogLevel(LogLevel.None))
)
process.exit(0)
