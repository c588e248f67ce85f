/**
 * Soak: start and stop a real, isolated dockerd many times in one process and
 * check that nothing grows: this process's open file descriptors, its child
 * processes, processes and mounts under the soak directory, network
 * namespaces held by what it started, and its heap.
 *
 *   npx tsx scripts/soak.ts --cycles 200          (npm run soak -- --cycles 200)
 *   npx tsx scripts/soak.ts --cycles 10           (the short version CI runs)
 *
 * Options: --cycles N (default 200), --every N (sample every N cycles,
 * default cycles/10), --warmup N (cycles before the baseline of fds and heap,
 * default min(10, cycles/5)), --fresh-dirs (a new directory per cycle instead
 * of one reused), --target dockerd|sandbox (default dockerd), --help.
 *
 * --target sandbox sets up one host environment for the whole soak
 * (scripts/seedScenario.ts: a host engine in its own network namespace, the
 * images, a local registry) and then, each cycle, creates a Docker-enabled
 * sandbox on it, waits for Docker inside, runs one
 * `docker run --rm busybox true` in it and removes the sandbox. Besides the
 * measurements above (with the host environment's directory as the soak
 * directory) it checks the containers on the host engine and the processes
 * mentioning any sandbox's id:
 *
 *   npx tsx scripts/soak.ts --target sandbox --cycles 5
 *
 * --target killed-up runs `sandbox-docker up` (bin/sandbox-docker.ts under
 * tsx) on the soak directory each cycle, waits for its ready event and
 * SIGKILLs it (the OOM killer, a deploy): dockerd and its containerd must
 * die with it (the time until both are dead is the cycle's "stop" time),
 * and what the kill left (the data-root dockerd bound onto itself, the
 * pidfile) is removed as the next start would, through
 * `DockerHost.recover`; then the usual checks (nothing mentions the soak
 * directory, nothing mounted under it):
 *
 *   npx tsx scripts/soak.ts --target killed-up --cycles 10
 *
 * Exit 0 when nothing grew beyond its tolerance, 1 otherwise (or when a cycle
 * failed). Runs as root, like the daemon.
 */
import { execFileSync, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as DockerHost from "../src/DockerHost.js"
import { isAlive } from "../src/Preflight.js"
import { mentionsPath } from "../src/internal/processTree.js"
import * as Sandbox from "../src/Sandbox.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "./seedScenario.js"

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

const argv = process.argv.slice(2)
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(
    [
      "usage: npx tsx scripts/soak.ts [--cycles N] [--every N] [--warmup N] [--fresh-dirs] [--target dockerd|sandbox|killed-up]",
      "",
      "  --cycles N         start/stop cycles (default 200)",
      "  --every N          sample every N cycles (default cycles/10)",
      "  --warmup N         cycles before the baseline of fds and heap (default min(10, cycles/5))",
      "  --fresh-dirs       dockerd: a new directory per cycle instead of one reused",
      "  --target dockerd   start and stop an isolated dockerd (default)",
      "  --target sandbox   one host environment (host engine, images, registry); per cycle a",
      "                     Docker-enabled sandbox, one `docker run --rm` inside, then removed",
      "  --target killed-up `sandbox-docker up` SIGKILLed once ready: dockerd and containerd must",
      "                     die with it; the stop time is the time until both are dead",
      "",
      "Exit 0 when nothing grew beyond its tolerance, 1 otherwise. Needs root."
    ].join("\n")
  )
  process.exit(0)
}
const option = (name: string): string | undefined => {
  const at = argv.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`))
  if (at === -1) return undefined
  const arg = argv[at] ?? ""
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[at + 1]
}
const count = (name: string, fallback: number): number => {
  const text = option(name)
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0) {
    console.error(`soak: --${name} must be a whole number, not ${JSON.stringify(text)}`)
    process.exit(2)
  }
  return n
}

const cycles = count("cycles", 200)
const every = Math.max(1, count("every", Math.max(1, Math.round(cycles / 10))))
const warmup = Math.min(cycles, count("warmup", Math.min(10, Math.floor(cycles / 5))))
const freshDirs = argv.includes("--fresh-dirs")
const target = option("target") ?? "dockerd"
if (target !== "dockerd" && target !== "sandbox" && target !== "killed-up") {
  console.error(`soak: unknown --target ${target}; "dockerd", "sandbox" or "killed-up"`)
  process.exit(2)
}
if (process.getuid?.() !== 0) {
  console.error("soak: dockerd needs root")
  process.exit(2)
}

/** Growth allowed from the baseline to the end. */
const TOLERANCE = {
  fds: 5,
  children: 0,
  processes: 0,
  mounts: 0,
  netns: 0,
  heapMB: 20,
  containers: 0,
  sandboxProcs: 0
} as const

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

/** `global.gc`, made available when node was not started with --expose-gc. */
const gc: () => void = (() => {
  const existing = (globalThis as { gc?: () => void }).gc
  if (existing !== undefined) return existing
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc") as () => void
})()

interface ProcInfo {
  readonly pid: number
  readonly ppid: number
}

const procs = (): Array<ProcInfo> => {
  const out: Array<ProcInfo> = []
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid)) continue
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      // "pid (comm) state ppid …": comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      out.push({ pid, ppid: Number(fields[1]) })
    } catch {
      // gone meanwhile
    }
  }
  return out
}

const cmdlineMentions = (pid: number, dir: string): boolean => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .some((arg) => mentionsPath(arg, dir))
  } catch {
    return false
  }
}

const netnsOf = (pid: number): string | undefined => {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`)
  } catch {
    return undefined
  }
}

interface Sample {
  readonly cycle: number
  /** Open file descriptors of this process. */
  readonly fds: number
  /** Processes whose parent is this process (zombies included). */
  readonly children: number
  /** Processes (other than this one) whose command line mentions the soak directory. */
  readonly processes: number
  /** Mounts under the soak directory. */
  readonly mounts: number
  /** Every mount this process sees (others' work changes it: shown, not checked). */
  readonly mountsAll: number
  /** Network namespaces other than ours held by our descendants or by processes mentioning the soak directory. */
  readonly netns: number
  /** Distinct network namespaces on the host (others' work changes it: shown, not checked). */
  readonly netnsHost: number
  readonly heapMB: number
  readonly rssMB: number
  /** Sandbox target: containers on the host engine (stopped ones included). */
  readonly containers?: number
  /** Sandbox target: processes whose command line mentions any sandbox's id. */
  readonly sandboxProcs?: number
}

const sample = (cycle: number, dir: string): Sample => {
  gc()
  gc()
  const all = procs()
  const children = all.filter((p) => p.ppid === process.pid).length
  const descendants = new Set<number>([process.pid])
  for (let grew = true; grew;) {
    grew = false
    for (const p of all) {
      if (!descendants.has(p.pid) && descendants.has(p.ppid)) {
        descendants.add(p.pid)
        grew = true
      }
    }
  }
  descendants.delete(process.pid)
  const mentioning = all.filter((p) => p.pid !== process.pid && cmdlineMentions(p.pid, dir))
  const own = netnsOf(process.pid)
  const ours = new Set<string>()
  for (const pid of new Set([...descendants, ...mentioning.map((p) => p.pid)])) {
    const ns = netnsOf(pid)
    if (ns !== undefined && ns !== own) ours.add(ns)
  }
  const host = new Set(all.map((p) => netnsOf(p.pid)).filter((ns) => ns !== undefined))
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((line) => line !== "")
  const under = mountinfo
    .map((line) => (line.split(" ")[4] ?? "").replace(/\\040/g, " "))
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
  const memory = process.memoryUsage()
  return {
    cycle,
    fds: readdirSync("/proc/self/fd").length,
    children,
    processes: mentioning.length,
    mounts: under.length,
    mountsAll: mountinfo.length,
    netns: ours.size,
    netnsHost: host.size,
    heapMB: memory.heapUsed / 2 ** 20,
    rssMB: memory.rss / 2 ** 20
  }
}

const BASE_COLUMNS: ReadonlyArray<[keyof Sample, string]> = [
  ["cycle", "cycle"],
  ["fds", "fds"],
  ["children", "children"],
  ["processes", "procs(dir)"],
  ["mounts", "mounts(dir)"],
  ["mountsAll", "mounts(all)"],
  ["netns", "netns(ours)"],
  ["netnsHost", "netns(host)"],
  ["heapMB", "heap MB"],
  ["rssMB", "rss MB"]
]
const COLUMNS: ReadonlyArray<[keyof Sample, string]> =
  target === "sandbox"
    ? [...BASE_COLUMNS, ["containers", "containers(host)"], ["sandboxProcs", "procs(sbx)"]]
    : BASE_COLUMNS

const cell = (value: number): string => (Number.isInteger(value) ? String(value) : value.toFixed(1))
const printRow = (cells: ReadonlyArray<string>) =>
  console.log(
    cells.map((text, i) => text.padStart(Math.max(6, COLUMNS[i]?.[1].length ?? 6))).join("  ")
  )

// ---------------------------------------------------------------------------
// Cycles
// ---------------------------------------------------------------------------

const soakRoot = mkdtempSync("/tmp/sdsoak-")
const cycleDir = (cycle: number) => (freshDirs ? `${soakRoot}/c${cycle}` : `${soakRoot}/d`)

/** One start and stop; the times to ready and to stopped, in ms. */
const cycleDockerd = (dir: string) =>
  Effect.gen(function* () {
    let stopMs = Number.NaN
    const daemon = yield* Effect.scoped(
      Dockerd.start(
        {
          socket: `${dir}/docker.sock`,
          dataRoot: `${dir}/data`,
          execRoot: `${dir}/exec`,
          pidfile: `${dir}/docker.pid`,
          network: "private"
        },
        undefined,
        {
          onEvent: (event) =>
            Effect.sync(() => {
              if (event._tag === "Stopped") stopMs = event.elapsedMs
            })
        }
      )
    )
    return { readyMs: daemon.timeToReadyMs, stopMs }
  })

/** `sandbox-docker up` ended before it was ready. */
class UpFailed extends Data.TaggedError("UpFailed")<{ readonly message: string }> {}

/** The CLI, run from its source (no build needed). */
const CLI = new URL("../bin/sandbox-docker.ts", import.meta.url).pathname

/**
 * One `sandbox-docker up`, SIGKILLed once ready: the time to ready (its
 * event), and the time from the SIGKILL until dockerd and its containerd
 * are both dead. Then what the kill left is removed, as the next start
 * would remove it.
 */
const cycleKilledUp = (dir: string) =>
  Effect.gen(function* () {
    const input = {
      socket: `${dir}/docker.sock`,
      dataRoot: `${dir}/data`,
      execRoot: `${dir}/exec`,
      pidfile: `${dir}/docker.pid`,
      network: "private" as const
    }
    const up = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        CLI,
        "up",
        `--socket=${input.socket}`,
        `--data-root=${input.dataRoot}`,
        `--exec-root=${input.execRoot}`,
        `--pidfile=${input.pidfile}`,
        "--network=private",
        "--json"
      ],
      { stdio: ["ignore", "pipe", "ignore"] }
    )
    const ready = yield* Effect.async<{ pid: number; elapsedMs: number }, Error>((resume) => {
      const lines = createInterface({ input: up.stdout! })
      lines.on("line", (line) => {
        const event = JSON.parse(line) as { event: string; pid: number; elapsedMs: number }
        if (event.event === "ready") resume(Effect.succeed(event))
        if (event.event === "error") resume(Effect.fail(new Error(line)))
      })
      up.once("exit", (code) => resume(Effect.fail(new Error(`up exited ${code} before ready`))))
    }).pipe(Effect.mapError((error) => new UpFailed({ message: error.message })))
    const containerd = Number(readFileSync(`${input.execRoot}/containerd/containerd.pid`, "utf8"))
    const killedAt = Date.now()
    up.kill("SIGKILL")
    const dead = (pid: number) => Effect.map(isAlive(pid), (alive) => !alive)
    yield* Effect.repeat(
      Effect.zipWith(dead(ready.pid), dead(containerd), (a, b) => a && b),
      { until: (gone) => gone, schedule: Schedule.spaced("10 millis") }
    )
    const goneMs = Date.now() - killedAt
    const host = yield* DockerHost.DockerHost
    const config = yield* DockerdConfig.decode(input)
    yield* host.recover(yield* host.settings(config))
    return { readyMs: ready.elapsedMs, stopMs: goneMs }
  })

/**
 * One sandbox: created, Docker inside ready, one `docker run --rm` and its
 * exit, removed. The times from create to Docker ready and of the removal, in
 * ms. `ids` receives the sandbox's id as soon as it exists.
 */
const cycleSandbox = (host: HostEnvironment, ids: Array<string>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const t0 = Date.now()
      const sandbox = yield* Sandbox.create(
        { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host" },
        { engineSocket: host.socket, stopGrace: "3 seconds" }
      )
      ids.push(sandbox.id)
      yield* sandbox.daemon
      const readyMs = Date.now() - t0
      yield* Effect.scoped(
        Effect.flatMap(
          sandbox.docker.run(host.image, ["/bin/busybox", "true"], { remove: true }),
          (container) => container.wait
        )
      )
      const t1 = Date.now()
      yield* sandbox.remove
      return { readyMs, stopMs: Date.now() - t1 }
    })
  )

/** Processes (other than this one) whose command line mentions any of `ids`. */
const processesMentioningAny = (ids: ReadonlyArray<string>): number =>
  ids.length === 0
    ? 0
    : procs().filter((p) => {
        if (p.pid === process.pid) return false
        try {
          const cmdline = readFileSync(`/proc/${p.pid}/cmdline`, "utf8")
          return ids.some((id) => cmdline.includes(id))
        } catch {
          return false
        }
      }).length

const ContainerList = Schema.Array(Schema.Struct({ Id: Schema.String }))

/** The host environment's directory, once set up: cleaned up like the soak directory. */
let hostDir: string | undefined

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

const main = Effect.gen(function* () {
  const host =
    target === "sandbox"
      ? yield* hostEnvironment((line) => console.log(`host: ${line}`)).pipe(
          Effect.tap((env) => Effect.sync(() => (hostDir = env.dir)))
        )
      : undefined
  const engine = host === undefined ? undefined : yield* DockerEngine.make(host.socket)
  const ids: Array<string> = []
  const dirOfSoak = host?.dir ?? soakRoot
  console.log(
    host === undefined
      ? `soak: ${cycles} start/stop cycles of ${target} in ${soakRoot} (${freshDirs ? "a new dir per cycle" : "one dir reused"}), sample every ${every}, warm-up ${warmup}`
      : target === "killed-up"
        ? `soak: ${cycles} cycles of \`sandbox-docker up\` SIGKILLed once ready, in ${soakRoot}; the stop time is from the SIGKILL until dockerd and containerd are dead`
        : `soak: ${cycles} create/remove cycles of a Docker-enabled sandbox on the host engine in ${host.dir}, sample every ${every}, warm-up ${warmup}`
  )
  printRow(COLUMNS.map(([, title]) => title))
  const samples: Array<Sample> = []
  const record = (cycle: number) =>
    Effect.gen(function* () {
      const base = sample(cycle, dirOfSoak)
      const s: Sample =
        engine === undefined
          ? base
          : {
              ...base,
              containers: (yield* engine.request("GET", "/containers/json?all=1", {
                schema: ContainerList
              })).length,
              sandboxProcs: processesMentioningAny(ids)
            }
      samples.push(s)
      printRow(COLUMNS.map(([key]) => cell(s[key] ?? Number.NaN)))
      return s
    })
  const before = yield* record(0)
  let baseline = warmup === 0 ? before : undefined
  const ready: Array<number> = []
  const stop: Array<number> = []
  const failures: Array<string> = []
  const started = Date.now()

  for (let cycle = 1; cycle <= cycles; cycle++) {
    const dir = cycleDir(cycle)
    const oneCycle: Effect.Effect<
      { readonly readyMs: number; readonly stopMs: number },
      { readonly _tag: string; readonly message: string },
      Effect.Effect.Context<ReturnType<typeof cycleKilledUp>>
    > = host !== undefined
      ? cycleSandbox(host, ids)
      : target === "killed-up"
        ? cycleKilledUp(dir)
        : cycleDockerd(dir)
    const outcome = yield* Effect.either(oneCycle)
    if (outcome._tag === "Right") {
      ready.push(outcome.right.readyMs)
      stop.push(outcome.right.stopMs)
    } else {
      failures.push(`cycle ${cycle}: ${outcome.left._tag}: ${outcome.left.message.split("\n")[0]}`)
      console.log(`  cycle ${cycle} failed: ${outcome.left.message.split("\n")[0]}`)
    }
    if (freshDirs) rmSync(dir, { recursive: true, force: true })
    if (cycle === warmup) baseline = yield* record(cycle)
    else if (cycle % every === 0 || cycle === cycles) yield* record(cycle)
  }

  const end = samples.at(-1) ?? before
  const base = baseline ?? before
  const checks: Array<[string, number, number]> = [
    ["fds (from the warm-up baseline)", end.fds - base.fds, TOLERANCE.fds],
    ["children", end.children - before.children, TOLERANCE.children],
    ["processes mentioning the soak dir", end.processes - before.processes, TOLERANCE.processes],
    host === undefined
      ? ["mounts under the soak dir", end.mounts - before.mounts, TOLERANCE.mounts]
      : // The host engine bind-mounts host-exec/netns/default once, at its first container.
        [
          "mounts under the soak dir (from the warm-up baseline)",
          end.mounts - base.mounts,
          TOLERANCE.mounts
        ],
    ["network namespaces held by what we started", end.netns - before.netns, TOLERANCE.netns],
    ["heap MB (from the warm-up baseline)", end.heapMB - base.heapMB, TOLERANCE.heapMB]
  ]
  if (host !== undefined) {
    checks.push(
      [
        "containers on the host engine",
        (end.containers ?? 0) - (before.containers ?? 0),
        TOLERANCE.containers
      ],
      [
        "processes mentioning a sandbox's id",
        (end.sandboxProcs ?? 0) - (before.sandboxProcs ?? 0),
        TOLERANCE.sandboxProcs
      ]
    )
  }
  const seconds = (Date.now() - started) / 1000
  console.log("")
  console.log(
    `cycles: ${cycles} in ${seconds.toFixed(0)} s, ${failures.length} failed; ready ms p50 ${cell(percentile(ready, 50))} p95 ${cell(percentile(ready, 95))} max ${cell(percentile(ready, 100))}; stop ms p50 ${cell(percentile(stop, 50))} p95 ${cell(percentile(stop, 95))} max ${cell(percentile(stop, 100))}`
  )
  console.log(
    `rss MB: ${cell(before.rssMB)} at the start, ${cell(base.rssMB)} after the warm-up, ${cell(end.rssMB)} at the end (shown, not checked: V8 keeps freed pages)`
  )
  let ok = failures.length === 0
  for (const [name, growth, tolerance] of checks) {
    const pass = growth <= tolerance
    ok &&= pass
    console.log(
      `${pass ? "ok  " : "FAIL"} ${name}: ${growth >= 0 ? "+" : ""}${cell(growth)} (allowed +${tolerance})`
    )
  }
  for (const failure of failures.slice(0, 10)) console.log(`FAIL ${failure}`)
  return ok
})

/** Whatever a failed soak left: its processes killed, its mounts undone, its directories removed. */
const cleanUp = () => {
  const roots = hostDir === undefined ? [soakRoot] : [soakRoot, hostDir]
  for (const p of procs()) {
    if (p.pid !== process.pid && roots.some((root) => cmdlineMentions(p.pid, root))) {
      try {
        process.kill(p.pid, "SIGKILL")
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const root of roots) {
    const points = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => (line.split(" ")[4] ?? "").replace(/\\040/g, " "))
      .filter((point) => point === root || point.startsWith(`${root}/`))
      .sort((a, b) => b.length - a.length)
    for (const point of points) {
      try {
        execFileSync("umount", ["--lazy", point], { stdio: "ignore" })
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true })
  }
  if (hostDir !== undefined) {
    // The host environment's network namespace (normally deleted when its scope closed).
    try {
      execFileSync("ip", ["netns", "delete", `sds-${hostDir.slice(-6)}`], { stdio: "ignore" })
    } catch {
      // already gone
    }
  }
}

const ok = await Effect.runPromise(
  main.pipe(
    Effect.scoped,
    Effect.provide(Dockerd.layerNode),
    Logger.withMinimumLogLevel(LogLevel.Error)
  )
).finally(cleanUp)
console.log(ok ? "soak: ok" : "soak: FAILED")
process.exitCode = ok ? 0 : 1
