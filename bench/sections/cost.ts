/**
 * Section 4: the cost of waiting. CPU time a supervisor spends waiting for a
 * daemon that never becomes ready, with Engine API probes and with
 * `docker info` probes, for the `fast` and `seed` policies, in two ways of
 * never being ready (no socket; a socket that accepts and never answers).
 * Each measurement runs in its own process (bench/costWorker.ts); they run
 * side by side, since CPU time is counted per process.
 */
import { fileURLToPath } from "node:url"
import { mkdtempSync, rmSync } from "node:fs"
import { workerResult } from "../lib/helpers.js"
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
  readonly percentOfCore: number
}

const WORKER = fileURLToPath(new URL("../costWorker.ts", import.meta.url))
const TSX = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url))

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
  one: Pick<CostRun, "probe" | "scenario" | "policy">,
  seconds: number
): Promise<CostRun> => {
  const dir = mkdtempSync("/tmp/sdb-cost-")
  return workerResult<CostRun>(
    [TSX, WORKER, one.probe, one.scenario, one.policy, String(seconds), dir],
    `cost worker ${JSON.stringify(one)}`
  ).finally(() => rmSync(dir, { recursive: true, force: true }))
}

/** Runs every case for `seconds`, side by side. */
export const run = async (seconds: number, log: (line: string) => void) => {
  const runs = await Promise.all(CASES.map((one) => measure(one, seconds)))
  for (const r of runs) {
    log(
      `  cost ${r.probe.padEnd(11)} ${r.scenario.padEnd(6)} ${r.policy.padEnd(4)} ${round(r.percentOfCore, 2)}% of a core (self ${round(r.selfMs)} ms, probes ${round(r.childrenMs)} ms, ${r.attempts} attempts in ${round(r.wallMs / 1000, 1)} s)`
    )
  }
  return { seconds, runs }
}
