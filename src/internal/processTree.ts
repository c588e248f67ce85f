/**
 * What a local dockerd leaves behind, found through /proc: its containerd,
 * container shims, mounts.
 *
 * @internal
 */
import { readdir, readFile } from "node:fs/promises"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { isAlive } from "../Preflight.js"

/**
 * Whether `arg` mentions the path `path` itself or something below it:
 * `/run/d1` is in `--exec-root=/run/d1` and `/run/d1/containerd.sock`, not in
 * `/run/d10` (another daemon's).
 */
export const mentionsPath = (arg: string, path: string): boolean => {
  const root = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path
  for (let at = arg.indexOf(root); at !== -1; at = arg.indexOf(root, at + 1)) {
    const next = arg[at + root.length]
    if (next === undefined || next === "/") return true
  }
  return false
}

/** The parent pid in a `/proc/PID/stat` text (`PID (COMM) STATE PPID …`; COMM may hold spaces). */
const parentIn = (stat: string): number | undefined => {
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined
}

/** A process as /proc shows it: its parent and the arguments of its command line. */
interface ProcessEntry {
  readonly ppid: number | undefined
  readonly args: ReadonlyArray<string>
}

/** Every process now, in one pass over /proc. */
const processTable = async (): Promise<ReadonlyMap<number, ProcessEntry>> => {
  const entries = await readdir("/proc").catch(() => [] as Array<string>)
  const table = new Map<number, ProcessEntry>()
  await Promise.all(
    entries.map(async (entry) => {
      const pid = Number(entry)
      if (!Number.isInteger(pid)) return
      const [stat, cmdline] = await Promise.all([
        readFile(`/proc/${pid}/stat`, "utf8").catch(() => ""),
        readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
      ])
      table.set(pid, { ppid: parentIn(stat), args: cmdline.split("\0") })
    })
  )
  return table
}

/**
 * This process and its ancestors: never a daemon's leftovers, even when
 * their command line names its exec-root (`npx sandbox-docker up
 * --exec-root=…` runs under a parent whose arguments are the same).
 */
const selfAndAncestors = (table: ReadonlyMap<number, ProcessEntry>): ReadonlySet<number> => {
  const found = new Set<number>([process.pid])
  for (
    let pid: number | undefined = process.ppid;
    pid !== undefined && pid > 1 && !found.has(pid);
    pid = table.get(pid)?.ppid
  ) {
    found.add(pid)
  }
  return found
}

/** The pids in `table` whose command line mentions `needle`, but `ours`. */
const mentioning = (
  table: ReadonlyMap<number, ProcessEntry>,
  needle: string,
  ours: ReadonlySet<number>
): Array<number> =>
  [...table]
    .filter(([pid, entry]) => !ours.has(pid) && entry.args.some((arg) => mentionsPath(arg, needle)))
    .map(([pid]) => pid)

/** `roots` and every process below them in `table`, but `ours`. */
const below = (
  table: ReadonlyMap<number, ProcessEntry>,
  roots: ReadonlyArray<number>,
  ours: ReadonlySet<number>
): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const [pid, { ppid }] of table) {
    if (ppid === undefined) continue
    const siblings = children.get(ppid)
    if (siblings === undefined) children.set(ppid, [pid])
    else siblings.push(pid)
  }
  const found = new Set(roots.filter((pid) => !ours.has(pid)))
  const queue = [...found]
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    for (const child of children.get(pid) ?? []) {
      if (found.has(child) || ours.has(child)) continue
      found.add(child)
      queue.push(child)
    }
  }
  return [...found]
}

/**
 * Pids of processes whose command line mentions the path `needle` (or below
 * it), other than this process and its ancestors.
 */
export const pidsMentioning = (needle: string): Effect.Effect<ReadonlyArray<number>> =>
  Effect.promise(async () => {
    const table = await processTable()
    return mentioning(table, needle, selfAndAncestors(table))
  })

/**
 * What a stopped daemon may have left running, from one pass over /proc:
 * its side (`also`, and the processes naming the path `needle`: its
 * containerd, the shims) and, in `all`, those with every process below them
 * (the processes of containers still running: once their shim is killed
 * they are the init's, and nothing says whose they were). Never this
 * process or its ancestors.
 */
export const leftoversOf = (
  needle: string,
  also: ReadonlyArray<number>
): Effect.Effect<{
  readonly daemonSide: ReadonlyArray<number>
  readonly all: ReadonlyArray<number>
}> =>
  Effect.promise(async () => {
    const table = await processTable()
    const ours = selfAndAncestors(table)
    const daemonSide = [
      ...new Set([...also.filter((pid) => !ours.has(pid)), ...mentioning(table, needle, ours)])
    ]
    return { daemonSide, all: below(table, daemonSide, ours) }
  })

/**
 * The pid a pidfile holds, if the process is there (alive or a zombie) and
 * its name (`/proc/PID/comm`, which a zombie keeps) is `name`.
 */
export const pidfileProcess = (path: string, name: string): Effect.Effect<number | undefined> =>
  Effect.flatMap(readPidfile(path), (pid) =>
    pid === undefined
      ? Effect.succeed(undefined)
      : Effect.promise(() =>
          readFile(`/proc/${pid}/comm`, "utf8").then(
            (comm) => (comm.trim() === name ? pid : undefined),
            () => undefined
          )
        )
  )

/** Reads a pid from a pidfile, if it holds one. */
export const readPidfile = (path: string): Effect.Effect<number | undefined> =>
  Effect.promise(async () => {
    const text = (await readFile(path, "utf8").catch(() => "")).trim()
    const pid = Number.parseInt(text, 10)
    return Number.isSafeInteger(pid) && pid > 0 && String(pid) === text ? pid : undefined
  })

/**
 * A mount in this process's mount namespace: its id (first field of
 * `/proc/self/mountinfo`, unique while it is mounted) and where it is.
 */
export interface MountEntry {
  readonly id: number
  readonly point: string
}

/**
 * Mounts at or below `root`, the ones to undo first first: deepest path
 * first, and of mounts stacked on one path the last one mounted (the top).
 */
export const mountEntriesUnder = (root: string): Effect.Effect<ReadonlyArray<MountEntry>> =>
  Effect.promise(async () => {
    const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "")
    const prefix = root.endsWith("/") ? root : root + "/"
    return table
      .split("\n")
      .map((line, order) => {
        const fields = line.split(" ")
        const point = (fields[4] ?? "").replace(/\\040/g, " ")
        return { id: Number(fields[0]), point, order }
      })
      .filter(({ point }) => point !== "" && (point === root || point.startsWith(prefix)))
      .sort((a, b) => b.point.length - a.point.length || b.order - a.order)
      .map(({ id, point }) => ({ id, point }))
  })

/** Whether `/proc/PID` still shows the process (a zombie until it is reaped). */
const present = (pid: number): Effect.Effect<boolean> =>
  Effect.promise(() =>
    readFile(`/proc/${pid}/stat`, "utf8").then(
      () => true,
      () => false
    )
  )

/**
 * Waits until none of `pids` is alive (zombies count as gone only once
 * reaped), sending SIGKILL to the survivors after `killAfter`; gives up
 * after `giveUpAfter` and returns the survivors.
 */
export const awaitGone = (
  pids: ReadonlyArray<number>,
  killAfter: Duration.DurationInput,
  giveUpAfter: Duration.DurationInput
): Effect.Effect<ReadonlyArray<number>> => {
  const killAfterMs = Duration.toMillis(killAfter)
  const giveUpAfterMs = Duration.toMillis(giveUpAfter)
  return Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    let killed = false
    let left = pids
    for (;;) {
      left = yield* Effect.filter(left, present)
      if (left.length === 0) return left
      const waited = (yield* Clock.currentTimeMillis) - started
      if (waited >= giveUpAfterMs) return left
      if (!killed && waited >= killAfterMs) {
        killed = true
        for (const pid of left) {
          if (yield* isAlive(pid)) {
            yield* Effect.try(() => process.kill(pid, "SIGKILL")).pipe(Effect.ignore)
          }
        }
      }
      yield* Effect.sleep("20 millis")
    }
  })
}
