/**
 * The scale measurement, run as a process of its own (sections/scale.ts
 * bundles this file with esbuild and runs it with plain `node`, so the
 * memory measured is the library's, not the TypeScript loader's).
 *
 *   node scaleWorker.mjs COUNT SECONDS FAKE_HOST_PATH [library|hand-written]
 *
 * Prints one JSON line: the summary.
 *
 * 100 daemons supervised at once by this one process.
 *
 * The daemons are fakes hosted by a helper process
 * (bench/fixtures/fake-host.mjs), so that they neither share this process's
 * event loop nor count in its memory. Each fake behaves like dockerd as
 * measured: its socket appears at a random moment in the first 2 s, it holds
 * the connections it accepts for 80 ms to 1 s, then serves. 10% die while
 * starting, 20% die 0.5-3 s after they serve; the rest live to the end.
 *
 * Here each fake gets what a real daemon gets: its own Engine client, the
 * probes `Dockerd.start` uses (socket file, `/_ping`, then `/info` where
 * `Dockerd.start` asks containerd's own socket: the fakes have no
 * containerd, and `/info` is what that check falls back to) under
 * `waitUntilReady` with the fast policy, then `Supervisor.supervise` with
 * the default liveness policy (one check a second, here a `/_ping`). The
 * ProcessHandle of a fake is minimal: this process plays the process
 * manager, and a fake's "die" line from its host is its exit.
 *
 * `hand-written` watches the same fakes with bench/lib/handWritten.ts
 * instead: the same work in plain callbacks, no library, no Effect. It is
 * the floor of what this machine can do, run beside the library.
 *
 * Measured: RSS and heap (sampled every 50 ms, peak), readiness overhead
 * (detected − the moment the fake started serving, on one clock), death
 * detection (typed error − the moment the fake died), events per second,
 * and the load put on the fakes (connections and requests per daemon, as
 * the host counts them).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Probe from "../src/Probe.js"
import type { ProcessHandle } from "../src/ProcessManager.js"
import { type ExitStatus, type ProcessStatus, Running, Signaled } from "../src/ProcessStatus.js"
import * as Readiness from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { now, sleep } from "./lib/clock.js"
import { watchDaemon } from "./lib/handWritten.js"
import { killHelpers, onLines, scratchRoot, startHelper, uniform } from "./lib/helpers.js"
import { round, summarize } from "./lib/stats.js"

interface Plan {
  readonly socket: string
  readonly listenAt: number
  readonly serveAt: number
  readonly dieAt: number | null
}

/**
 * A ProcessHandle for a fake: this process learns of its exit from its host
 * and completes `exit` with it. A fake prints nothing.
 */
const fakeHandle = (pid: number, exit: Deferred.Deferred<ExitStatus>): ProcessHandle => ({
  pid,
  argv: ["fake-dockerd", String(pid)],
  status: Effect.flatMap(
    Deferred.poll(exit),
    Option.match({
      onNone: (): Effect.Effect<ProcessStatus> => Effect.succeed(new Running()),
      onSome: (exited) => exited
    })
  ),
  awaitExit: Deferred.await(exit),
  output: Stream.empty,
  logTail: Effect.succeed([]),
  signal: () => Effect.succeed(false)
})

/** What happened to one fake. */
interface Outcome {
  readonly readyAt: number | null
  readonly servedAt: number | null
  readonly diedAt: number | null
  readonly detectedDeathAt: number | null
  readonly error: string | null
}

/** Who watches the fakes: the library, or the hand-written floor. */
type Mode = "library" | "hand-written"

/** Runs `count` fakes for `seconds` seconds. */
const run = async (count: number, seconds: number, fakeHost: string, mode: Mode) => {
  const root = mkdtempSync(Path.join(scratchRoot(), "sdb-scale-"))
  const dirs = Array.from({ length: count }, (_, i) => {
    const dir = Path.join(root, String(i))
    mkdirSync(dir)
    return dir
  })
  // The plan starts 1.5 s from now: the host starts and the watchers set
  // up in that time.
  const start = now() + 1500
  const plans: Array<Plan> = dirs.map((dir) => {
    const listenAt = start + uniform(0, 2000)
    const serveAt = listenAt + uniform(80, 1000)
    const fate = Math.random()
    const dieAt =
      fate < 0.1 ? uniform(start, serveAt) : fate < 0.3 ? serveAt + uniform(500, 3000) : null
    return { socket: Path.join(dir, "docker.sock"), listenAt, serveAt, dieAt }
  })

  // The host of every fake.
  const served = new Map<number, number>()
  const died = new Map<number, number>()
  // The load the watchers put on the fakes, as the host counts it at the end.
  const load: { counted?: { readonly connections: number; readonly requests: number } } = {}
  const exits = await Effect.runPromise(Effect.forEach(plans, () => Deferred.make<ExitStatus>()))
  // The hand-written floor learns of an exit by a plain callback.
  const exitCallbacks: Array<(() => void) | undefined> = []
  const planFile = Path.join(root, "plan.json")
  writeFileSync(planFile, JSON.stringify(plans))
  const host = startHelper([process.execPath, fakeHost, planFile], { stdin: "pipe" })
  await new Promise<void>((resolve) =>
    onLines(host, (line) => {
      if (line === '"started"') return resolve()
      const fact = JSON.parse(line) as
        | { i: number; e: "serve" | "die"; at: number }
        | { e: "load"; connections: number; requests: number }
      if (fact.e === "load") {
        load.counted = fact
        return
      }
      if (fact.e === "serve") served.set(fact.i, fact.at)
      else {
        died.set(fact.i, fact.at)
        exitCallbacks[fact.i]?.()
        const exit = exits[fact.i]
        if (exit !== undefined)
          Effect.runSync(Deferred.succeed(exit, new Signaled({ signal: "SIGKILL" })))
      }
    })
  )

  const readyTimes: Array<number | undefined> = []
  let events = 0
  const count1 = () =>
    Effect.sync(() => {
      events += 1
    })
  const policy = ReadinessPolicy.fast.withDeadline(Duration.seconds(seconds))

  const one = (i: number, plan: Plan) =>
    Effect.gen(function* () {
      const handle = fakeHandle(100_000 + i, exits[i] as Deferred.Deferred<ExitStatus>)
      const engine = yield* DockerEngine.make(plan.socket)
      const probe = Probe.all([
        yield* Probe.socketFile(plan.socket),
        Probe.enginePing(engine),
        Probe.engineInfo(engine)
      ])
      const ready = yield* Effect.either(
        Readiness.waitUntilReady(handle, probe, policy, { onEvent: count1 })
      )
      if (Either.isLeft(ready)) {
        return { readyAt: null, error: ready.left._tag, detectedDeathAt: now() }
      }
      const readyAt = now()
      readyTimes[i] = readyAt
      const config = yield* DockerdConfig.decode({ socket: plan.socket })
      const daemon = Dockerd.makeDaemon({
        pid: handle.pid,
        socket: plan.socket,
        config,
        serverVersion: "fake-1.0",
        apiVersion: "1.41",
        storageDriver: "vfs",
        timeToReadyMs: ready.right.elapsedMs,
        report: ready.right,
        process: handle,
        awaitExit: handle.awaitExit,
        liveness: Probe.enginePing(engine, { name: "liveness" }),
        location: "local"
      })
      const supervised = yield* Effect.either(
        Supervisor.supervise(daemon, Supervisor.defaultLiveness, { onEvent: count1 })
      )
      return {
        readyAt,
        error: Either.isLeft(supervised) ? supervised.left._tag : null,
        detectedDeathAt: now()
      }
    }).pipe(Effect.scoped)

  // Memory, sampled.
  const baseline = process.memoryUsage()
  let peakRss = baseline.rss
  let peakHeap = baseline.heapUsed
  const sampler = setInterval(() => {
    const usage = process.memoryUsage()
    peakRss = Math.max(peakRss, usage.rss)
    peakHeap = Math.max(peakHeap, usage.heapUsed)
  }, 50)

  const results: Array<{ readyAt: number | null; error: string | null; detectedDeathAt: number }> =
    []
  const began = now()
  const cpu0 = process.cpuUsage()
  const windowMs = start + seconds * 1000 - now()
  if (mode === "hand-written") {
    const watches = plans.map((plan, i) =>
      watchDaemon(plan.socket, (exited) => (exitCallbacks[i] = exited), now)
    )
    // The survivors are watched until the end of the window.
    const window = setTimeout(() => watches.forEach((one) => one.stop()), windowMs)
    const outcomes = await Promise.all(watches.map((one) => one.outcome))
    clearTimeout(window)
    outcomes.forEach((outcome, i) => {
      results[i] = outcome
      if (outcome.readyAt !== null) readyTimes[i] = outcome.readyAt
    })
  } else {
    await Effect.runPromise(
      Effect.forEach(
        plans,
        (plan, i) =>
          one(i, plan).pipe(
            Effect.orDie,
            Effect.tap((result) => Effect.sync(() => (results[i] = result)))
          ),
        { concurrency: "unbounded", discard: true }
      ).pipe(
        // The survivors are supervised until the end of the window.
        Effect.timeout(Duration.millis(windowMs)),
        Effect.ignore,
        Effect.provide(NodeFileSystem.layer),
        Logger.withMinimumLogLevel(LogLevel.None)
      )
    )
  }
  const wallMs = now() - began
  const cpu = process.cpuUsage(cpu0)
  clearInterval(sampler)
  host.kill("SIGTERM")
  // The host prints its load, then exits.
  for (let waited = 0; load.counted === undefined && waited < 2000; waited += 20) await sleep(20)
  rmSync(root, { recursive: true, force: true })

  const outcomes: Array<Outcome> = plans.map((_, i) => ({
    readyAt: readyTimes[i] ?? null,
    servedAt: served.get(i) ?? null,
    diedAt: died.get(i) ?? null,
    detectedDeathAt: results[i]?.detectedDeathAt ?? null,
    error: results[i]?.error ?? null
  }))
  const overhead = outcomes.flatMap((o) =>
    o.readyAt !== null && o.servedAt !== null ? [o.readyAt - o.servedAt] : []
  )
  const deathDetection = outcomes.flatMap((o) =>
    o.diedAt !== null && o.detectedDeathAt !== null && o.error !== null
      ? [o.detectedDeathAt - o.diedAt]
      : []
  )
  const mb = (bytes: number) => round(bytes / 1024 / 1024, 1)
  const summary = {
    mode,
    daemons: count,
    seconds,
    ready: overhead.length,
    /** Fakes that started serving: the most that could be seen ready. */
    served: served.size,
    diedBeforeReady: outcomes.filter((o) => o.readyAt === null && o.diedAt !== null).length,
    diedAfterReady: outcomes.filter((o) => o.readyAt !== null && o.diedAt !== null).length,
    errors: Object.fromEntries(
      [...new Set(outcomes.map((o) => o.error ?? "none"))].map((tag) => [
        tag,
        outcomes.filter((o) => (o.error ?? "none") === tag).length
      ])
    ),
    baselineRssMb: mb(baseline.rss),
    peakRssMb: mb(peakRss),
    peakHeapMb: mb(peakHeap),
    overheadMs: summarize(overhead),
    /** How late the host served, against the plan: its own load. */
    hostLateMs: summarize(
      plans.flatMap((plan, i) => {
        const at = served.get(i)
        return at === undefined ? [] : [at - plan.serveAt]
      })
    ),
    deathDetectionMs: summarize(deathDetection),
    /**
     * The load the watchers put on the fakes over the trial, per daemon:
     * connections the fakes accepted and requests they read (null if the
     * host did not report).
     */
    hostLoad:
      load.counted !== undefined
        ? {
            connectionsPerDaemon: round(load.counted.connections / count, 2),
            requestsPerDaemon: round(load.counted.requests / count, 2)
          }
        : null,
    events,
    eventsPerSecond: round(events / (wallMs / 1000), 0),
    cpuPercentOfCore: round(((cpu.user + cpu.system) / 1000 / wallMs) * 100, 1)
  }
  return { summary }
}

/** A fixed CPU loop, timed: how fast this process runs (see sections/scale.ts). */
const speedMs = (): number => {
  const start = now()
  let sum = 0
  for (let i = 0; i < 20_000_000; i++) sum += i % 7
  return sum > 0 ? round(now() - start, 1) : Number.NaN
}

const [countArg = "100", secondsArg = "8", fakeHost = "", modeArg = "library"] =
  process.argv.slice(2)
const speed = speedMs()
try {
  const { summary } = await run(
    Number(countArg),
    Number(secondsArg),
    fakeHost,
    modeArg === "hand-written" ? "hand-written" : "library"
  )
  process.stdout.write(JSON.stringify({ ...summary, speedMs: speed }) + "\n")
} finally {
  killHelpers()
}
