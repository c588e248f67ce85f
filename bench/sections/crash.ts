/**
 * Section 2: crash detection on a real dockerd.
 *
 * Each run starts an isolated dockerd with `Dockerd.start` (fast policy) and
 * SIGKILLs it at a random moment: in "before ready" runs 10-300 ms after the
 * spawn (while it starts: the typed error is `DaemonCrashed` from
 * `Dockerd.start`), in "after ready" runs 50-1500 ms after it became ready
 * (under `Supervisor.supervise`: the typed error is `DaemonDied`). A kill
 * that lands on the other side of ready than intended is counted where it
 * landed. The time measured is from the kill to the typed error: made (the
 * wait's span ends with it) and returned (before ready, `Dockerd.start`
 * first stops what it started).
 *
 * In the same run the seed's way is simulated: a loop that asks the
 * process's status every 1 s from the spawn on (the seed polled its process
 * manager's `Status(pid)` every second). The simulation reads the true
 * status; the seed's own process manager reported a signal death as `-1`,
 * "still running", so the seed itself never saw a SIGKILL at all.
 */
import { readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Dockerd from "../../src/Dockerd.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"
import * as Supervisor from "../../src/Supervisor.js"
import { isolatedConfig } from "../../test/support/isolated.js"
import { now } from "../lib/clock.js"
import { withWaitEnd } from "../lib/waitEnd.js"
import { runLocal, startExitOracle, uniform, withIsolatedDir } from "../lib/helpers.js"
import { round, summarize } from "../lib/stats.js"

/** One run. Times in ms. */
export interface CrashRun {
  readonly intended: "before-ready" | "after-ready"
  /** Where the kill landed. */
  readonly phase: "before-ready" | "after-ready" | "none"
  /** The kill, after the spawn. */
  readonly killAfterSpawnMs: number | null
  /** From the kill to the typed error. */
  readonly detectMs: number | null
  /** From the kill to the exit oracle seeing the process dead (the kernel's part). */
  readonly killToDeadMs: number | null
  /** From the process dead (exit oracle) to the typed error made: the supervisor's own delay. */
  readonly deadToErrorMs: number | null
  /** From the error made to its return (before ready: `Dockerd.start` stops what it started first). */
  readonly errorToReturnMs: number | null
  readonly error: string | null
  /** From the kill to the 1 s status poll seeing it. */
  readonly seedPollMs: number | null
}

const SEED_POLL_MS = 1000

/** Whether `pid` is alive: /proc has it and it is not a zombie. */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

/**
 * The seed's detection: every second from the spawn, ask whether the process
 * still runs. Resolves with the time it first sees it gone.
 */
const seedPoller = (
  pid: number
): { readonly saw: Promise<number>; readonly cancel: () => void } => {
  let timer: NodeJS.Timeout | undefined
  let cancel = () => {}
  const saw = new Promise<number>((resolve, reject) => {
    cancel = () => {
      clearInterval(timer)
      reject(new Error("cancelled"))
    }
    timer = setInterval(() => {
      if (!alive(pid)) {
        clearInterval(timer)
        resolve(now())
      }
    }, SEED_POLL_MS)
  })
  saw.catch(() => {})
  return { saw, cancel }
}

const oneRun = (intended: CrashRun["intended"]): Promise<CrashRun> =>
  withIsolatedDir(async (dir) => {
    const config = isolatedConfig(dir)
    const exitOracle = await startExitOracle()
    let spawnedAt = Number.NaN
    let killAt = Number.NaN
    let readyAt = Number.NaN
    let waitFailedAt = Number.NaN
    let seed: ReturnType<typeof seedPoller> | undefined
    let killTimer: NodeJS.Timeout | undefined
    const killAfter = (pid: number, ms: number) => {
      killTimer = setTimeout(() => {
        killAt = now()
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // already gone
        }
      }, ms)
    }
    const result = await runLocal(
      Effect.gen(function* () {
        const started = yield* withWaitEnd(
          Dockerd.start(config, ReadinessPolicy.fast, {
            onEvent: (event) =>
              Effect.sync(() => {
                if (event._tag !== "Spawned") return
                spawnedAt = now()
                exitOracle.watch(event.pid)
                seed = seedPoller(event.pid)
                if (intended === "before-ready") killAfter(event.pid, uniform(10, 300))
              })
          }),
          (at) => (waitFailedAt = at)
        ).pipe(Effect.either)
        if (Either.isLeft(started)) {
          return { error: started.left._tag, madeAt: waitFailedAt, at: now() }
        }
        const daemon = started.right
        readyAt = now()
        // The kill meant for before ready came too late: it lands after.
        if (Number.isNaN(killAt)) {
          clearTimeout(killTimer)
          killAfter(daemon.pid, uniform(50, 1500))
        }
        const supervised = yield* Supervisor.supervise(daemon).pipe(Effect.either)
        const at = now()
        return { error: Either.isLeft(supervised) ? supervised.left._tag : "none", madeAt: at, at }
      })
    )
    clearTimeout(killTimer)
    const killed = !Number.isNaN(killAt)
    const seedAt = killed && seed !== undefined ? await seed.saw : undefined
    seed?.cancel()
    const goneAt = killed ? await exitOracle.result : null
    exitOracle.stop()
    return {
      intended,
      phase: !killed
        ? "none"
        : Number.isNaN(readyAt) || killAt < readyAt
          ? "before-ready"
          : "after-ready",
      killAfterSpawnMs: killed ? round(killAt - spawnedAt, 1) : null,
      detectMs: killed ? round(result.at - killAt, 2) : null,
      killToDeadMs: goneAt === null ? null : round(goneAt - killAt, 2),
      deadToErrorMs: goneAt === null ? null : round(result.madeAt - goneAt, 2),
      errorToReturnMs: killed ? round(result.at - result.madeAt, 2) : null,
      error: result.error,
      seedPollMs: seedAt === undefined ? null : round(seedAt - killAt, 1)
    }
  })

/** Runs `runs` kills of each kind, alternating. */
export const run = async (runs: number, log: (line: string) => void) => {
  const results: Array<CrashRun> = []
  for (let i = 0; i < runs; i++) {
    for (const intended of ["before-ready", "after-ready"] as const) {
      const result = await oneRun(intended)
      results.push(result)
      log(
        `  crash ${i + 1}/${runs} ${result.phase.padEnd(12)} killed at +${result.killAfterSpawnMs ?? "—"} ms: ${result.error} returned after ${result.detectMs ?? "—"} ms (dead after ${result.killToDeadMs ?? "—"} ms, error made ${result.deadToErrorMs ?? "—"} ms later; 1 s poll: ${result.seedPollMs ?? "—"} ms)`
      )
    }
  }
  const phase = (name: CrashRun["phase"]) => {
    const mine = results.filter((r) => r.phase === name)
    return {
      runs: mine.length,
      errors: [...new Set(mine.map((r) => r.error))],
      detect: summarize(mine.flatMap((r) => (r.detectMs === null ? [] : [r.detectMs]))),
      killToDead: summarize(mine.flatMap((r) => (r.killToDeadMs === null ? [] : [r.killToDeadMs]))),
      deadToError: summarize(
        mine.flatMap((r) => (r.deadToErrorMs === null ? [] : [r.deadToErrorMs]))
      ),
      errorToReturn: summarize(
        mine.flatMap((r) => (r.errorToReturnMs === null ? [] : [r.errorToReturnMs]))
      ),
      seedPoll: summarize(mine.flatMap((r) => (r.seedPollMs === null ? [] : [r.seedPollMs])))
    }
  }
  return {
    runs: results,
    summary: {
      beforeReady: phase("before-ready"),
      afterReady: phase("after-ready"),
      all: {
        detect: summarize(results.flatMap((r) => (r.detectMs === null ? [] : [r.detectMs]))),
        killToDead: summarize(
          results.flatMap((r) => (r.killToDeadMs === null ? [] : [r.killToDeadMs]))
        ),
        deadToError: summarize(
          results.flatMap((r) => (r.deadToErrorMs === null ? [] : [r.deadToErrorMs]))
        ),
        seedPoll: summarize(results.flatMap((r) => (r.seedPollMs === null ? [] : [r.seedPollMs])))
      }
    }
  }
}
