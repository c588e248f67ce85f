/**
 * Section 5: scale. 100 daemons supervised at once in one process: see
 * bench/scaleWorker.ts for what is measured and how. The worker is bundled
 * with esbuild (the one tsx itself uses) and run with plain `node`: the
 * memory measured is then the library's and Effect's, not that of the
 * TypeScript loader, whose own thread alone holds some 80 MB.
 *
 * Each trial runs twice, back to back: the library, and the hand-written
 * floor (bench/lib/handWritten.ts: the same work in plain callbacks), so
 * that the library's figures read beside what the machine does at all.
 */
import { bundle } from "../lib/bundle.js"
import { fixture, workerResult } from "../lib/helpers.js"
import { round, type Summary } from "../lib/stats.js"

/** What the worker measured. */
export interface ScaleSummary {
  /** Who watched the fakes: the library, or the hand-written floor. */
  readonly mode: "library" | "hand-written"
  readonly daemons: number
  readonly seconds: number
  readonly ready: number
  /** Fakes that started serving: the most that could be seen ready. */
  readonly served: number
  readonly diedBeforeReady: number
  readonly diedAfterReady: number
  readonly errors: Readonly<Record<string, number>>
  readonly baselineRssMb: number
  readonly peakRssMb: number
  readonly peakHeapMb: number
  readonly overheadMs: Summary
  readonly hostLateMs: Summary
  readonly deathDetectionMs: Summary
  /** The load put on the fakes, per daemon (null if a host did not report it). */
  readonly hostLoad: {
    readonly connectionsPerDaemon: number
    readonly requestsPerDaemon: number
  } | null
  readonly events: number
  readonly eventsPerSecond: number
  readonly cpuPercentOfCore: number
  /** A fixed CPU loop timed at the worker's start, in ms: how fast this process runs. */
  readonly speedMs: number
}

/**
 * Runs `count` fake daemons for `seconds` s under one supervising process,
 * `trials` times in a row, each with the library and then the hand-written
 * floor. Every trial is printed and kept; the summary of each is the trial
 * with the median p99 readiness overhead. (On the machines this was
 * measured on, a process sometimes runs several times slower from its start,
 * for reasons outside it: each trial prints `speed`, a fixed loop timed at
 * the worker's start, so such a trial shows as one.)
 */
export const run = async (
  count: number,
  seconds: number,
  log: (line: string) => void,
  trials = 1
) => {
  const outfile = await bundle("scaleWorker.ts", "scaleWorker.mjs")
  const all: Array<ScaleSummary> = []
  for (let trial = 1; trial <= trials; trial++) {
    for (const mode of ["library", "hand-written"] as const) {
      const summary = await workerResult<ScaleSummary>(
        [process.execPath, outfile, String(count), String(seconds), fixture("fake-host.mjs"), mode],
        "scale worker"
      )
      all.push(summary)
      log(
        `  scale trial ${trial}/${trials}, ${mode}, ${summary.daemons} daemons: ${summary.ready} ready, peak RSS ${summary.peakRssMb} MB (baseline ${summary.baselineRssMb} MB), heap ${summary.peakHeapMb} MB, overhead p50 ${round(summary.overheadMs.p50)} p99 ${round(summary.overheadMs.p99)} ms, deaths seen after p50 ${round(summary.deathDetectionMs.p50)} p99 ${round(summary.deathDetectionMs.p99)} ms, ${summary.eventsPerSecond} events/s, CPU ${summary.cpuPercentOfCore}% of a core, fakes late p99 ${round(summary.hostLateMs.p99)} ms, load per daemon ${summary.hostLoad === null ? "?" : `${summary.hostLoad.connectionsPerDaemon} connections ${summary.hostLoad.requestsPerDaemon} requests`}, speed ${summary.speedMs} ms`
      )
    }
  }
  const median = (mode: ScaleSummary["mode"]) => {
    const byP99 = all
      .filter((one) => one.mode === mode)
      .sort((a, b) => (a.overheadMs.p99 ?? Infinity) - (b.overheadMs.p99 ?? Infinity))
    return byP99[Math.floor((byP99.length - 1) / 2)] as ScaleSummary
  }
  return { summary: median("library"), floor: median("hand-written"), trials: all }
}
