/**
 * Section 4: the cost of waiting. CPU time a supervisor spends waiting for a
 * daemon that never becomes ready, with Engine API probes and with
 * `docker info` probes, for the `fast` and `seed` policies, in two ways of
 * never being ready (no socket; a socket that accepts and never answers).
 * Each measurement runs in its own process (bench/costWorker.ts, bundled and
 * run with plain `node`, without V8's memory reducer: see there); they run
 * side by side, since CPU time is counted per process.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { bundle } from "../lib/bundle.js"
import { fixture, workerResult } from "../lib/helpers.js"
import { round } from "../lib/stats.js"

/** What one worker measured. */
export interface CostRun {
  readonly probe: "engine" | "docker-info" | "none"
  readonly scenario: "absent" | "hang"
  readonly policy: string
  readonly seconds: number
  readonly wallMs: number
  readonly selfMs: number
  readonly childrenMs: number
  readonly attempts: number
  /** Full GCs that ran inside the window, and their time on the main thread. */
  readonly fullGcs: number
  readonly fullGcMs: number
  readonly percentOfCore: number
}

/** The measurements made. */
export const CASES: ReadonlyArray<Pick<CostRun, "probe" | "scenario" | "policy">> = [
  { probe: "none", scenario: "absent", policy: "fast" },
  { probe: "engine", scenario: "absent", policy: "fast" },
  { probe: "engine", scenario: "hang", policy: "fast" },
  { probe: "docker-info", scenario: "absent", policy: "fast" },
  { probe: "docker-info", scenario: "hang", policy: "fast" },
  { probe: "engine", scenario: "absent", policy: "seed" },
  { probe: "docker-info", scenario: "absent", policy: "seed" },
  { probe: "docker-info", scenario: "hang", policy: "seed" }
]

const measure = (
  worker: string,
  one: Pick<CostRun, "probe" | "scenario" | "policy">,
  seconds: number
): Promise<CostRun> => {
  const dir = mkdtempSync("/tmp/sdb-cost-")
  return workerResult<CostRun>(
    [
      process.execPath,
      "--no-memory-reducer",
      worker,
      one.probe,
      one.scenario,
      one.policy,
      String(seconds),
      dir,
      fixture("hanging-dockerd.mjs")
    ],
    `cost worker ${JSON.stringify(one)}`
  ).finally(() => rmSync(dir, { recursive: true, force: true }))
}

/** Runs every case for `seconds`, side by side. */
export const run = async (seconds: number, log: (line: string) => void) => {
  const worker = await bundle("costWorker.ts", "costWorker.mjs")
  const runs = await Promise.all(CASES.map((one) => measure(worker, one, seconds)))
  for (const r of runs) {
    log(
      `  cost ${r.probe.padEnd(11)} ${r.scenario.padEnd(6)} ${r.policy.padEnd(4)} ${round(r.percentOfCore, 2)}% of a core (self ${round(r.selfMs)} ms, probes ${round(r.childrenMs)} ms, ${r.attempts} attempts in ${round(r.wallMs / 1000, 1)} s, ${r.fullGcs} full GCs)`
    )
  }
  return { seconds, runs }
}
