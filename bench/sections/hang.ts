/**
 * Section 3: the hang bound. A daemon that accepts connections and never
 * answers must end in `DaemonNotReady` at the configured deadline, not later.
 *
 * Two kinds of hung daemon, both started by `Dockerd.start` with the fast
 * policy and a deadline, isolated like the tests' daemons:
 * - `stand-in`: bench/fixtures/hanging-dockerd.mjs as the dockerd binary; it
 *   listens on the socket, accepts, reads, never answers.
 * - `real, SIGSTOP`: a real dockerd, stopped with SIGSTOP the moment its
 *   socket appears (dockerd creates its socket well before it serves), so the
 *   kernel accepts connections for it and nothing answers them.
 *
 * Measured: from the spawn to the typed error made (the wait's end),
 * against the deadline (the deadline counts from the spawn); then the stop
 * of the hung daemon, which `Dockerd.start` finishes before it returns; and
 * from the call of `Dockerd.start` to its return, preflight included.
 */
import { statSync } from "node:fs"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Dockerd from "../../src/Dockerd.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"
import { isolatedConfig } from "../../test/support/isolated.js"
import { now } from "../lib/clock.js"
import { fixture, runLocal, withIsolatedDir } from "../lib/helpers.js"
import { withWaitEnd } from "../lib/waitEnd.js"
import { round, summarize } from "../lib/stats.js"

/** One run. Times in ms. */
export interface HangRun {
  readonly kind: "stand-in" | "real-sigstop"
  readonly deadlineMs: number
  /** From the spawn to the error. */
  readonly spawnToErrorMs: number | null
  /** From the spawn to the typed error made (the wait's end), minus the deadline. */
  readonly overrunMs: number | null
  /** From the error made to its return: `Dockerd.start` stops the hung daemon first. */
  readonly stopMs: number | null
  /** From the call of Dockerd.start (preflight included) to the error. */
  readonly callToErrorMs: number
  readonly error: string
  readonly attempts: number | null
  readonly lastFailures: ReadonlyArray<string>
}

/** Stops `pid` with SIGSTOP as soon as `socket` exists (checked every ms). */
const stopWhenSocketAppears = (pid: number, socket: string): (() => void) => {
  const timer = setInterval(() => {
    try {
      if (statSync(socket).isSocket()) {
        clearInterval(timer)
        process.kill(pid, "SIGSTOP")
      }
    } catch {
      // not yet
    }
  }, 1)
  return () => clearInterval(timer)
}

const oneRun = (kind: HangRun["kind"], deadlineMs: number): Promise<HangRun> =>
  withIsolatedDir(async (dir) => {
    const config = isolatedConfig(
      dir,
      kind === "stand-in" ? { binary: fixture("hanging-dockerd.mjs") } : {}
    )
    const policy = ReadinessPolicy.fast.withDeadline(Duration.millis(deadlineMs))
    let spawnedAt = Number.NaN
    let waitFailedAt = Number.NaN
    let cancelWatch = () => {}
    const calledAt = now()
    const outcome = await runLocal(
      withWaitEnd(
        Dockerd.start(config, policy, {
          onEvent: (event) =>
            Effect.sync(() => {
              if (event._tag !== "Spawned") return
              spawnedAt = now()
              if (kind === "real-sigstop") {
                cancelWatch = stopWhenSocketAppears(event.pid, config.socket as string)
              }
            })
        }),
        (at) => (waitFailedAt = at)
      ).pipe(
        Effect.either,
        Effect.map((result) => ({ result, at: now() }))
      )
    )
    cancelWatch()
    const error = Either.isLeft(outcome.result) ? outcome.result.left : undefined
    const spawnToError = Number.isNaN(spawnedAt) ? null : round(outcome.at - spawnedAt, 2)
    return {
      kind,
      deadlineMs,
      spawnToErrorMs: spawnToError,
      overrunMs:
        Number.isNaN(spawnedAt) || Number.isNaN(waitFailedAt)
          ? null
          : round(waitFailedAt - spawnedAt - deadlineMs, 2),
      stopMs: Number.isNaN(waitFailedAt) ? null : round(outcome.at - waitFailedAt, 2),
      callToErrorMs: round(outcome.at - calledAt, 2),
      error: error?._tag ?? "ready (no hang)",
      attempts: error?._tag === "DaemonNotReady" ? error.attempts : null,
      lastFailures:
        error?._tag === "DaemonNotReady"
          ? error.lastFailures.map((failure) => `${failure._tag} ${failure.probe}`)
          : []
    }
  })

/** Runs `runs` hangs of each kind. */
export const run = async (runs: number, deadlineMs: number, log: (line: string) => void) => {
  const results: Array<HangRun> = []
  for (let i = 0; i < runs; i++) {
    for (const kind of ["stand-in", "real-sigstop"] as const) {
      const result = await oneRun(kind, deadlineMs)
      results.push(result)
      log(
        `  hang ${i + 1}/${runs} ${kind.padEnd(12)} ${result.error} after ${result.spawnToErrorMs ?? "—"} ms (deadline ${deadlineMs} ms, error made at overrun ${result.overrunMs ?? "—"} ms, then the stop ${result.stopMs ?? "—"} ms) ${result.lastFailures.join(", ")}`
      )
    }
  }
  const of = (kind: HangRun["kind"]) => {
    const mine = results.filter((r) => r.kind === kind && r.error === "DaemonNotReady")
    return {
      runs: mine.length,
      overrun: summarize(mine.flatMap((r) => (r.overrunMs === null ? [] : [r.overrunMs]))),
      stop: summarize(mine.flatMap((r) => (r.stopMs === null ? [] : [r.stopMs]))),
      callToError: summarize(mine.map((r) => r.callToErrorMs))
    }
  }
  const hung = results.filter((r) => r.error === "DaemonNotReady")
  return {
    deadlineMs,
    runs: results,
    summary: {
      standIn: of("stand-in"),
      realSigstop: of("real-sigstop"),
      all: { overrun: summarize(hung.flatMap((r) => (r.overrunMs === null ? [] : [r.overrunMs]))) }
    }
  }
}
