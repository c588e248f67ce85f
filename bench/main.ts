/**
 * `npm run bench`: readiness as a latency business, measured honestly and
 * side by side in one run on one machine.
 *
 *   tsx bench/main.ts [--quick] [--runs N] [--crash-runs N] [--hang-runs N]
 *                     [--hang-deadline MS] [--cost-seconds S] [--scale N]
 *                     [--scale-seconds S] [--scale-trials N] [--only SECTION,...]
 *                     [--load-runs N] [--sandbox-runs N] [--pool-claims N]
 *                     [--out DIR]
 *
 * Sections: ttr (time to ready), crash, hang, cost, scale, load (what
 * loading the library and the CLI costs), sandbox (the first docker command
 * in a sandbox beside its limits, and the warm pool's claim). Prints the tables
 * (markdown) and the goals, writes the raw results as JSON and the
 * time-to-ready chart as SVG into bench/results/ (or --out). Every real
 * dockerd is isolated like the tests' (own temp dir with socket, data-root,
 * exec-root, pidfile; own network namespace) and stopped before the next.
 */
import "./lib/asShipped.js"
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { timeToReadySvg } from "./lib/chart.js"
import { killHelpers, leaks, machineLoad } from "./lib/helpers.js"
import { fmt, round } from "./lib/stats.js"
import * as Cost from "./sections/cost.js"
import * as Crash from "./sections/crash.js"
import * as Hang from "./sections/hang.js"
import * as Load from "./sections/load.js"
import * as SandboxSection from "./sections/sandbox.js"
import * as Scale from "./sections/scale.js"
import * as TimeToReady from "./sections/timeToReady.js"

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runs: { type: "string" },
    "crash-runs": { type: "string" },
    "hang-runs": { type: "string" },
    "hang-deadline": { type: "string" },
    "cost-seconds": { type: "string" },
    scale: { type: "string" },
    "scale-seconds": { type: "string" },
    "scale-trials": { type: "string" },
    "load-runs": { type: "string" },
    "sandbox-runs": { type: "string" },
    "pool-claims": { type: "string" },
    only: { type: "string" },
    out: { type: "string" }
  }
})

const quick = flags.quick ?? false
const number = (value: string | undefined, full: number, fast: number) =>
  value === undefined ? (quick ? fast : full) : Number(value)
const options = {
  quick,
  runs: number(flags.runs, 20, 3),
  crashRuns: number(flags["crash-runs"], 10, 2),
  hangRuns: number(flags["hang-runs"], 5, 1),
  hangDeadlineMs: number(flags["hang-deadline"], 2000, 1000),
  costSeconds: number(flags["cost-seconds"], 30, 5),
  scale: number(flags.scale, 100, 100),
  scaleSeconds: number(flags["scale-seconds"], 8, 6),
  scaleTrials: number(flags["scale-trials"], 3, 1),
  loadRuns: number(flags["load-runs"], 10, 2),
  sandboxRuns: number(flags["sandbox-runs"], 5, 1),
  poolClaims: number(flags["pool-claims"], 10, 3)
}
const sections = new Set((flags.only ?? "ttr,crash,hang,cost,scale,load,sandbox").split(","))
const outDir = flags.out ?? fileURLToPath(new URL("./results/", import.meta.url))

process.on("SIGINT", () => {
  killHelpers()
  process.exit(130)
})
process.on("exit", killHelpers)

const log = (line: string) => console.log(line)
const versionOf = (argv: ReadonlyArray<string>) => {
  try {
    return execFileSync(argv[0] as string, argv.slice(1), { encoding: "utf8" }).trim()
  } catch {
    return "unknown"
  }
}

const meta = {
  startedAt: new Date().toISOString(),
  options,
  node: process.version,
  dockerd: versionOf(["dockerd", "--version"]),
  docker: versionOf(["docker", "--version"]),
  kernel: Os.release(),
  cpus: Os.cpus().length,
  loadBefore: machineLoad().load1,
  loadAfter: Number.NaN
}

log(
  `sandbox-docker bench${quick ? " (quick)" : ""}: ${meta.cpus} CPUs, load ${meta.loadBefore}, ${meta.dockerd}, node ${meta.node}`
)

const results: Record<string, unknown> = { meta }
let ttr: Awaited<ReturnType<typeof TimeToReady.run>> | undefined
let crash: Awaited<ReturnType<typeof Crash.run>> | undefined
let hang: Awaited<ReturnType<typeof Hang.run>> | undefined
let cost: Awaited<ReturnType<typeof Cost.run>> | undefined
let scale: Awaited<ReturnType<typeof Scale.run>> | undefined
let load: Awaited<ReturnType<typeof Load.run>> | undefined
let sandbox: Awaited<ReturnType<typeof SandboxSection.run>> | undefined

if (sections.has("ttr")) {
  log(`\n1. time to ready: ${options.runs} runs of each policy, each beside the oracle`)
  ttr = results.timeToReady = await TimeToReady.run(options.runs, log)
}
if (sections.has("crash")) {
  log(
    `\n2. crash detection: ${options.crashRuns} kills before and ${options.crashRuns} after ready`
  )
  crash = results.crash = await Crash.run(options.crashRuns, log)
}
if (sections.has("hang")) {
  log(`\n3. hang bound: deadline ${options.hangDeadlineMs} ms`)
  hang = results.hang = await Hang.run(options.hangRuns, options.hangDeadlineMs, log)
}
if (sections.has("cost")) {
  log(`\n4. cost of waiting: ${options.costSeconds} s waits, side by side`)
  cost = results.cost = await Cost.run(options.costSeconds, log)
}
if (sections.has("scale")) {
  log(`\n5. scale: ${options.scale} daemons for ${options.scaleSeconds} s`)
  scale = results.scale = await Scale.run(
    options.scale,
    options.scaleSeconds,
    log,
    options.scaleTrials
  )
}
if (sections.has("load")) {
  log(`\n6. loading: ${options.loadRuns} fresh processes per case`)
  load = results.load = await Load.run(options.loadRuns, log)
}
if (sections.has("sandbox")) {
  log(
    `\n7. sandboxes: ${options.sandboxRuns} rounds (runc; each way in, then the limits), ${options.poolClaims} pool claims`
  )
  sandbox = results.sandbox = await SandboxSection.run(options.sandboxRuns, options.poolClaims, log)
}
meta.loadAfter = machineLoad().load1

// ---------------------------------------------------------------- tables

const lines: Array<string> = []
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  lines.push(`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`)
  for (const row of rows) lines.push(`| ${row.join(" | ")} |`)
  lines.push("")
}
const ms = (value: number) => fmt(value, 1)
const signed = (value: number) =>
  Number.isFinite(value) ? `${value >= 0 ? "+" : ""}${value.toFixed(1)}` : "—"
const goals: Array<{ goal: string; measured: string; met: boolean }> = []
/** `value <= limit`, and false for a missing value (NaN turns into null in JSON). */
const within = (value: number | null, limit: number) =>
  typeof value === "number" && Number.isFinite(value) && value <= limit

if (ttr !== undefined) {
  const s = ttr.summary
  lines.push(`### Time to ready (real dockerd, ${ttr.rounds} runs per policy)`, "")
  table(
    [
      "policy",
      "runs",
      "p50 ms",
      "p90 ms",
      "p50 − oracle",
      "p90 − oracle",
      "p50 ÷ oracle",
      "p90 ÷ oracle"
    ],
    [
      [
        "oracle: `/_ping` every 2 ms",
        String(s.oracle.n),
        ms(s.oracle.p50),
        ms(s.oracle.p90),
        "0",
        "0",
        "1.00",
        "1.00"
      ],
      ...s.policies.map((p) => [
        p.policy === "fast" ? "**fast** (default)" : p.policy,
        `${p.runs}${p.failures > 0 ? ` (${p.failures} failed)` : ""}`,
        ms(p.ready.p50),
        ms(p.ready.p90),
        signed(p.minusOracle.p50),
        signed(p.minusOracle.p90),
        fmt(p.ratioP50, 2),
        fmt(p.ratioP90, 2)
      ])
    ]
  )
  const fast = s.policies.find((p) => p.policy === "fast")
  if (fast !== undefined) {
    lines.push(
      `Where fast's time goes, run by run (p50 / p90 ms): its own \`/_ping\` answered ${signed(fast.pingMinusOracle.p50)} / ${signed(fast.pingMinusOracle.p90)} after the oracle's; containerd's version service then answered in ${ms(fast.containerdAfterPing.p50)} / ${ms(fast.containerdAfterPing.p90)}. The oracle's \`/info\`, sent at its first ping OK (the check before containerd was asked directly), took ${ms(s.oracleInfoAfterPing.p50)} / ${ms(s.oracleInfoAfterPing.p90)}; ready comes ${signed(fast.minusOracleInfo.p50)} / ${signed(fast.minusOracleInfo.p90)} after that \`/info\` answer.`,
      ""
    )
    goals.push({
      goal: "time to ready p50 within 5 ms of the `/_ping` oracle",
      measured: `${signed(fast.minusOracle.p50)} ms`,
      met: within(fast.minusOracle.p50, 5)
    })
  }
}

if (crash !== undefined) {
  const s = crash.summary
  lines.push("### Crash detection (real dockerd, SIGKILL at a random moment)", "")
  const row = (label: string, p: typeof s.beforeReady) => [
    label,
    String(p.runs),
    ms(p.detect.p50),
    ms(p.detect.p90),
    ms(p.detect.max),
    ms(p.killToDead.p50),
    ms(p.deadToError.p50),
    ms(p.errorToReturn.p50),
    ms(p.seedPoll.p50),
    ms(p.seedPoll.p90)
  ]
  table(
    [
      "killed",
      "runs",
      "kill → typed error p50",
      "p90",
      "max",
      "kill → dead (kernel) p50",
      "dead → error made p50",
      "made → returned p50 (the stop)",
      "1 s polling p50",
      "1 s polling p90"
    ],
    [
      row(`before ready → \`${s.beforeReady.errors.join(", ")}\``, s.beforeReady),
      row(`after ready → \`${s.afterReady.errors.join(", ")}\``, s.afterReady)
    ]
  )
  goals.push({
    goal: "crash: from the kernel's dead to the typed error made at most 3 ms (p50)",
    measured: `${ms(s.all.deadToError.p50)} ms (p90 ${ms(s.all.deadToError.p90)}; kill → typed error p50 ${ms(s.all.detect.p50)})`,
    met: within(s.all.deadToError.p50, 3)
  })
}

if (hang !== undefined) {
  const s = hang.summary
  lines.push(
    `### Hang bound (accepts connections, never answers; deadline ${hang.deadlineMs} ms)`,
    ""
  )
  const row = (label: string, p: typeof s.standIn) => [
    label,
    String(p.runs),
    ms(p.overrun.p50),
    ms(p.overrun.max),
    ms(p.stop.p50),
    ms(p.callToError.p50)
  ]
  table(
    [
      "daemon",
      "runs",
      "overrun p50 ms",
      "overrun max ms",
      "then the stop p50 ms",
      "call → returned p50 ms (with preflight and stop)"
    ],
    [
      row("stand-in that never answers", s.standIn),
      row("real dockerd, SIGSTOPped at its socket", s.realSigstop)
    ]
  )
  goals.push({
    goal: "deadline overrun at most 50 ms (max)",
    measured: `${ms(s.all.overrun.max)} ms`,
    met: within(s.all.overrun.max, 50)
  })
}

if (cost !== undefined) {
  lines.push(`### Cost of waiting (${cost.seconds} s for a daemon that never gets ready)`, "")
  table(
    [
      "probes",
      "never ready because",
      "policy",
      "% of one core",
      "supervisor CPU ms",
      "probe processes CPU ms",
      "attempts",
      "full GCs in the window"
    ],
    cost.runs.map((r) => [
      r.probe === "none"
        ? "none (idle process)"
        : r.probe === "engine"
          ? "Engine API"
          : "`docker info`",
      r.scenario === "absent" ? "no socket" : "socket never answers",
      r.policy,
      fmt(r.percentOfCore, 2),
      fmt(r.selfMs, 0),
      fmt(r.childrenMs, 0),
      String(r.attempts),
      String(r.fullGcs)
    ])
  )
  const worst = (probe: string) =>
    Math.max(
      ...cost!.runs
        .filter((r) => r.probe === probe && r.policy === "fast")
        .map((r) => r.percentOfCore)
    )
  goals.push({
    goal: "waiting costs at most 1% of one core (fast, Engine probes, worst case)",
    measured: `${fmt(worst("engine"), 2)}%`,
    met: within(worst("engine"), 1)
  })
  goals.push({
    goal: "… with `docker info` probes",
    measured: `${fmt(worst("docker-info"), 2)}%`,
    met: within(worst("docker-info"), 1)
  })
}

if (scale !== undefined) {
  const s = scale.summary
  lines.push(`### Scale (${s.daemons} fake daemons, one supervising process, ${s.seconds} s)`, "")
  table(
    [
      "watched by",
      "daemons",
      "ready",
      "died before / after ready",
      "peak RSS MB",
      "RSS before MB",
      "peak heap MB",
      "overhead p50 ms",
      "overhead p99 ms",
      "death seen p50 / p99 ms",
      "CPU",
      "events/s"
    ],
    [s, scale.floor].map((row) => [
      row.mode === "library" ? "sandbox-docker" : "hand-written floor (no library)",
      String(row.daemons),
      String(row.ready),
      `${row.diedBeforeReady} / ${row.diedAfterReady}`,
      fmt(row.peakRssMb),
      fmt(row.baselineRssMb),
      fmt(row.peakHeapMb),
      ms(row.overheadMs.p50),
      ms(row.overheadMs.p99),
      `${ms(row.deathDetectionMs.p50)} / ${ms(row.deathDetectionMs.p99)}`,
      `${fmt(row.cpuPercentOfCore)}%`,
      row.mode === "library" ? String(row.eventsPerSecond) : "–"
    ])
  )
  goals.push({
    goal: `${s.daemons} supervised daemons in at most 150 MB RSS (peak)`,
    measured: `${fmt(s.peakRssMb)} MB (hand-written floor: ${fmt(scale.floor.peakRssMb)})`,
    met: within(s.peakRssMb, 150)
  })
  goals.push({
    goal: "… with p99 readiness overhead at most 25 ms",
    measured: `${ms(s.overheadMs.p99)} ms (hand-written floor: ${ms(scale.floor.overheadMs.p99)})`,
    met: within(s.overheadMs.p99, 25)
  })
}

if (load !== undefined) {
  lines.push(`### Loading (a fresh \`node\` per run, ${load[0]?.runs ?? 0} runs each)`, "")
  table(
    ["what is loaded", "CPU p50 ms", "wall p50 ms (from Node's start)", "RSS p50 MB"],
    load.map((one) => [one.name, ms(one.cpuMs.p50), ms(one.wallMs.p50), fmt(one.rssMb.p50)])
  )
}

if (sandbox !== undefined) {
  const s = sandbox.summary
  lines.push(`### Sandboxes: the first docker command (runc, ${sandbox.rounds} rounds)`, "")
  const row = (
    label: string,
    p: { readonly n: number; readonly p50: number; readonly p90: number }
  ) => [label, String(p.n), ms(p.p50), ms(p.p90)]
  table(
    ["what (ms)", "runs", "p50", "p90"],
    [
      ...s.vias.flatMap((v) => [
        row(`${v.via}: \`Sandbox.create\` returned`, v.created),
        row(`${v.via}: create → Docker ready inside`, v.ready),
        row(`${v.via}: first pull`, v.pull),
        row(`${v.via}: first run`, v.run)
      ]),
      row("limit: host engine create + start, no-op", s.hostCreateStart),
      row("limit: fresh dockerd here → first `/_ping`", s.dockerdPing),
      row("limit: that dockerd's pull, same registry", s.hostPull),
      row("pool: claim → `/_ping` answered inside", s.claim)
    ]
  )
  const fastest = s.vias.find((v) => v.via === "host-socket")
  const limit = s.hostCreateStart.p50 + s.dockerdPing.p50
  if (fastest !== undefined) {
    goals.push({
      goal: "sandbox create → Docker ready ≤ 1.3× (host create+start + dockerd to `/_ping`), p50",
      measured: `${ms(fastest.ready.p50)} ms = ${fmt(fastest.ready.p50 / limit, 2)}× ${ms(limit)}`,
      met: within(fastest.ready.p50, 1.3 * limit)
    })
    goals.push({
      goal: "first pull in a sandbox ≤ 1.5× the host engine's pull, p50",
      measured: `${ms(fastest.pull.p50)} ms = ${fmt(fastest.pull.p50 / s.hostPull.p50, 2)}× ${ms(s.hostPull.p50)}`,
      met: within(fastest.pull.p50, 1.5 * s.hostPull.p50)
    })
  }
  if (s.claim.n > 0) {
    goals.push({
      goal: "pool: claim → Docker answers ≤ 50 ms, p50",
      measured: `${ms(s.claim.p50)} ms`,
      met: within(s.claim.p50, 50)
    })
  }
}

if (goals.length > 0) {
  lines.push("### Goals", "")
  table(
    ["goal", "measured", "met"],
    goals.map((g) => [g.goal, g.measured, g.met ? "yes" : "**no**"])
  )
}
lines.push(
  `Machine: ${meta.cpus} CPUs, load average ${round(meta.loadBefore, 2)} before, ${round(meta.loadAfter, 2)} after; ${meta.dockerd}; node ${meta.node}; kernel ${meta.kernel}.`
)

log("\n" + lines.join("\n"))
results.goals = goals
results.table = lines.join("\n")
results.leaks = leaks

mkdirSync(outDir, { recursive: true })
const stamp = meta.startedAt.replace(/[:.]/g, "-")
const jsonFile = Path.join(outDir, `bench-${stamp}${quick ? "-quick" : ""}.json`)
writeFileSync(jsonFile, JSON.stringify(results, null, 2) + "\n")
writeFileSync(Path.join(outDir, "latest.json"), JSON.stringify(results, null, 2) + "\n")
log(`\nraw results: ${jsonFile}`)
if (ttr !== undefined) {
  const runs = ttr.runs
  const values = (pick: (run: TimeToReady.TimeToReadyRun) => number | null, policy?: string) =>
    runs
      .filter((run) => policy === undefined || run.policy === policy)
      .map(pick)
      .filter((v): v is number => v !== null)
  const svg = timeToReadySvg(
    [
      { label: "oracle (/_ping, 2 ms)", values: values((r) => r.oracleMs), color: "#555555" },
      { label: "fast (default)", values: values((r) => r.readyMs, "fast"), color: "#1f77b4" },
      { label: "fixed 1 s", values: values((r) => r.readyMs, "fixed-1s"), color: "#ff7f0e" },
      { label: "seed", values: values((r) => r.readyMs, "seed"), color: "#d62728" }
    ],
    "Time to ready: real dockerd 20.10, one run per dot",
    `${ttr.rounds} runs per policy, each beside the oracle; ${meta.cpus} CPUs, load ${round(meta.loadBefore, 1)}; ${meta.startedAt.slice(0, 10)}`
  )
  const svgFile = Path.join(outDir, "time-to-ready.svg")
  writeFileSync(svgFile, svg)
  log(`chart: ${svgFile}`)
}
if (leaks.length > 0) {
  log(`\nprocesses were left behind: ${JSON.stringify(leaks)}`)
  process.exitCode = 1
}
