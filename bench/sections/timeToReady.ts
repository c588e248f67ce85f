/**
 * Section 1: time to ready on a real dockerd.
 *
 * Each run spawns one isolated dockerd (its own temp dir and network
 * namespace) through `Dockerd.start` with the policy under test, while the
 * oracle, a separate process polling `GET /_ping` every 2 ms, watches the
 * same daemon. Both are timed on one clock from the spawn: the policy's
 * detection (when `Dockerd.start` returns) and the oracle's first `OK`. The
 * rounds interleave the policies in a random order so that the machine's
 * load drifts across all of them alike.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Dockerd from "../../src/Dockerd.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"
import { isolatedConfig } from "../../test/support/isolated.js"
import { now } from "../lib/clock.js"
import { runLocal, shuffled, startOracle, withIsolatedDir } from "../lib/helpers.js"
import { median, quantile, round, type Summary, summarize } from "../lib/stats.js"

/**
 * A fixed 1 s between attempts from the spawn on, with no wake-ups, like the
 * platform's later version (which also gave `docker info` 2 s).
 */
export const fixed1s = new ReadinessPolicy.ReadinessPolicy({
  ...ReadinessPolicy.fast,
  name: "fixed-1s",
  initialDelay: Duration.zero,
  retry: new ReadinessPolicy.FixedInterval({ interval: Duration.seconds(1) }),
  commandRetry: new ReadinessPolicy.FixedInterval({ interval: Duration.seconds(1) }),
  wakeOnOutput: undefined,
  wakeOnProbeEvents: false,
  probeTimeout: Duration.seconds(2)
})

/** The policies compared, in table order. */
export const POLICIES: ReadonlyArray<ReadinessPolicy.ReadinessPolicy> = [
  ReadinessPolicy.fast,
  fixed1s,
  ReadinessPolicy.seed
]

/** One run: times in ms from the spawn. */
export interface TimeToReadyRun {
  readonly round: number
  readonly policy: string
  /** The oracle's first `/_ping` OK. */
  readonly oracleMs: number | null
  /** The oracle's `/info`, sent at its first ping OK, answered. */
  readonly oracleInfoMs: number | null
  /** The oracle's first accepted connection: the socket exists and listens. */
  readonly oracleConnectedMs: number | null
  /** Each probe's first success, as the policy saw it. */
  readonly socketMs: number | null
  readonly pingMs: number | null
  /**
   * The check after the ping: containerd's version service (or `/info`, when
   * the probe fell back to it).
   */
  readonly containerdMs: number | null
  /** `Dockerd.start` returned the ready daemon. */
  readonly readyMs: number | null
  readonly attempts: number | null
  readonly error: string | null
}

const oneRun = (
  roundIndex: number,
  policy: ReadinessPolicy.ReadinessPolicy
): Promise<TimeToReadyRun> =>
  withIsolatedDir(async (dir) => {
    const config = isolatedConfig(dir)
    const socket = config.socket as string
    const oracle = await startOracle(socket, 60_000)
    let spawnedAt = Number.NaN
    const firstSuccess = new Map<string, number>()
    const outcome = await runLocal(
      Effect.gen(function* () {
        const daemon = yield* Dockerd.start(config, policy, {
          onEvent: (event) =>
            Effect.sync(() => {
              const at = now()
              if (event._tag === "Spawned") spawnedAt = at
              if (
                event._tag === "Probe" &&
                event.outcome._tag === "ProbeSucceeded" &&
                !firstSuccess.has(event.outcome.probe)
              ) {
                firstSuccess.set(event.outcome.probe, at)
              }
            })
        })
        // Taken before the scope closes, so the stop is not counted.
        return { readyAt: now(), attempts: daemon.report.attempts, error: null }
      }).pipe(
        Effect.catchAll((error) =>
          Effect.succeed({ readyAt: Number.NaN, attempts: null, error: error._tag })
        )
      )
    )
    const seen = await oracle.result
    oracle.stop()
    const since = (at: number | null | undefined) =>
      at === null || at === undefined || !Number.isFinite(at) ? null : round(at - spawnedAt, 2)
    return {
      round: roundIndex,
      policy: policy.name,
      oracleMs: since(seen.okAt),
      oracleInfoMs: since(seen.infoAt),
      oracleConnectedMs: since(seen.connectedAt),
      socketMs: since(firstSuccess.get("socket")),
      pingMs: since(firstSuccess.get("ping")),
      containerdMs: since(firstSuccess.get("containerd")),
      readyMs: since(outcome.readyAt),
      attempts: outcome.attempts,
      error: outcome.error
    }
  })

/** The summary of one policy over its runs. */
export interface PolicySummary {
  readonly policy: string
  readonly runs: number
  readonly failures: number
  readonly ready: Summary
  /** The oracle over the same runs (the same daemon starts). */
  readonly oracle: Summary
  /** ready − oracle, run by run. */
  readonly minusOracle: Summary
  /** ready − oracle's /info answer, run by run. */
  readonly minusOracleInfo: Summary
  /** The policy's own ping − oracle's ping, run by run: the polling delay alone. */
  readonly pingMinusOracle: Summary
  /** containerd − ping as the policy saw it: the check after the ping. */
  readonly containerdAfterPing: Summary
  /** Median ready / median oracle. */
  readonly ratioP50: number
  /** p90 ready / p90 oracle. */
  readonly ratioP90: number
}

const defined = (values: ReadonlyArray<number | null>): Array<number> =>
  values.filter((v): v is number => v !== null)

const diff = (
  runs: ReadonlyArray<TimeToReadyRun>,
  a: (run: TimeToReadyRun) => number | null,
  b: (run: TimeToReadyRun) => number | null
) =>
  defined(
    runs.map((run) => {
      const x = a(run)
      const y = b(run)
      return x === null || y === null ? null : x - y
    })
  )

/** Summaries per policy, and the oracle over every run. */
export const summarizeRuns = (runs: ReadonlyArray<TimeToReadyRun>) => {
  const policies: Array<PolicySummary> = POLICIES.map((policy) => {
    const mine = runs.filter((run) => run.policy === policy.name)
    const ready = summarize(defined(mine.map((run) => run.readyMs)))
    const oracle = summarize(defined(mine.map((run) => run.oracleMs)))
    return {
      policy: policy.name,
      runs: mine.length,
      failures: mine.filter((run) => run.error !== null).length,
      ready,
      oracle,
      minusOracle: summarize(
        diff(
          mine,
          (r) => r.readyMs,
          (r) => r.oracleMs
        )
      ),
      minusOracleInfo: summarize(
        diff(
          mine,
          (r) => r.readyMs,
          (r) => r.oracleInfoMs
        )
      ),
      pingMinusOracle: summarize(
        diff(
          mine,
          (r) => r.pingMs,
          (r) => r.oracleMs
        )
      ),
      containerdAfterPing: summarize(
        diff(
          mine,
          (r) => r.containerdMs,
          (r) => r.pingMs
        )
      ),
      ratioP50: round(ready.p50 / oracle.p50, 2),
      ratioP90: round(ready.p90 / oracle.p90, 2)
    }
  })
  const oracleAll = defined(runs.map((run) => run.oracleMs))
  const oracleInfoAll = defined(runs.map((run) => run.oracleInfoMs))
  return {
    oracle: summarize(oracleAll),
    oracleInfo: summarize(oracleInfoAll),
    oracleInfoAfterPing: summarize(
      diff(
        runs,
        (r) => r.oracleInfoMs,
        (r) => r.oracleMs
      )
    ),
    socketToServe: summarize(
      diff(
        runs,
        (r) => r.oracleMs,
        (r) => r.oracleConnectedMs
      )
    ),
    policies
  }
}

/** Runs `rounds` rounds of every policy. */
export const run = async (rounds: number, log: (line: string) => void) => {
  const runs: Array<TimeToReadyRun> = []
  for (let index = 0; index < rounds; index++) {
    for (const policy of shuffled(POLICIES)) {
      const result = await oneRun(index, policy)
      runs.push(result)
      log(
        `  time-to-ready ${index + 1}/${rounds} ${policy.name.padEnd(8)} ready ${result.readyMs?.toFixed(1) ?? result.error} ms, oracle ${result.oracleMs?.toFixed(1) ?? "—"} ms`
      )
    }
  }
  const summary = summarizeRuns(runs)
  return {
    rounds,
    runs,
    summary,
    medianOracle: median(defined(runs.map((r) => r.oracleMs))),
    p90Oracle: quantile(defined(runs.map((r) => r.oracleMs)), 0.9)
  }
}
