/**
 * What a local dockerd leaves behind, found through /proc: its containerd,
 * container shims, mounts.
 *
 * @internal
 */
import { readdir, readFile } from "node:fs/promises"
import { Effect } from "effect"
import { isAlive } from "../Preflight.js"

/** Pids of processes whose command line mentions `needle`. */
export const pidsMentioning = (needle: string): Effect.Effect<ReadonlyArray<number>> =>
  Effect.promise(async () => {
    const entries = await readdir("/proc").catch(() => [] as Array<string>)
    const found: Array<number> = []
    await Promise.all(
      entries.map(async (entry) => {
        const pid = Number(entry)
        if (!Number.isInteger(pid) || pid === process.pid) return
        const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
        if (cmdline.split("\0").some((arg) => arg.includes(needle))) found.push(pid)
      })
    )
    return found
  })

/** Reads a pid from a pidfile, if it holds one. */
export const readPidfile = (path: string): Effect.Effect<number | undefined> =>
  Effect.promise(async () => {
    const text = (await readFile(path, "utf8").catch(() => "")).trim()
    const pid = Number.parseInt(text, 10)
    return Number.isSafeInteger(pid) && pid > 0 && String(pid) === text ? pid : undefined
  })

/** Mount points at or below `root`, deepest first. */
export const mountsUnder = (root: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "")
    const prefix = root.endsWith("/") ? root : root + "/"
    return table
      .split("\n")
      .map((line) => line.split(" ")[4] ?? "")
      .map((point) => point.replace(/\\040/g, " "))
      .filter((point) => point === root || point.startsWith(prefix))
      .sort((a, b) => b.length - a.length)
  })

/**
 * Waits until none of `pids` is alive (zombies count as gone only once
 * reaped), sending SIGKILL to the survivors after `killAfterMs`.
 */
export const awaitGone = (
  pids: ReadonlyArray<number>,
  killAfterMs: number,
  giveUpAfterMs: number
): Effect.Effect<ReadonlyArray<number>> =>
  Effect.gen(function* () {
    const started = Date.now()
    let killed = false
    let left = pids
    for (;;) {
      left = yield* Effect.filter(left, (pid) =>
        Effect.promise(() =>
          readFile(`/proc/${pid}/stat`, "utf8").then(
            () => true,
            () => false
          )
        )
      )
      if (left.length === 0) return left
      const waited = Date.now() - started
      if (waited >= giveUpAfterMs) return left
      if (!killed && waited >= killAfterMs) {
        killed = true
        for (const pid of left) {
          if (yield* isAlive(pid)) {
            try {
              process.kill(pid, "SIGKILL")
            } catch {
              // gone meanwhile
            }
          }
        }
      }
      yield* Effect.sleep("20 millis")
    }
  })
