/**
 * What a local dockerd leaves behind, found through /proc: its containerd,
 * container shims, mounts.
 *
 * @internal
 */
import { readdir, readFile, readlink } from "node:fs/promises"
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
 * its name (`/proc/PID/comm`, which a zombie keeps) is `name`; with
 * `naming`, a live one only if its command line names that path.
 */
export const pidfileProcess = (
  path: string,
  name: string,
  naming?: string
): Effect.Effect<number | undefined> =>
  Effect.flatMap(readPidfile(path), (pid) =>
    pid === undefined
      ? Effect.succeed(undefined)
      : Effect.promise(async () => {
          const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => undefined)
          if (comm?.trim() !== name) return undefined
          if (naming === undefined) return pid
          const live = await liveProcess(pid)
          return live === undefined || live.args.some((arg) => mentionsPath(arg, naming))
            ? pid
            : undefined
        })
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

/** What `/proc/PID` says of a live process: its name and arguments (none for a zombie or a gone one). */
const liveProcess = async (
  pid: number
): Promise<{ readonly comm: string; readonly args: ReadonlyArray<string> } | undefined> => {
  const [stat, cmdline] = await Promise.all([
    readFile(`/proc/${pid}/stat`, "utf8").catch(() => ""),
    readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
  ])
  const open = stat.indexOf("(")
  const close = stat.lastIndexOf(")")
  if (open === -1 || close === -1 || stat[close + 2] === "Z") return undefined
  return { comm: stat.slice(open + 1, close), args: cmdline.split("\0") }
}

/**
 * The paths that make a dockerd one of ours: the pidfile it writes, the
 * socket it listens on, its data-root and exec-root.
 */
export interface DaemonPaths {
  /** The pidfile to look at first (none: not looked at). */
  readonly pidfile: string | undefined
  /** The paths a dockerd is also looked for by, in all of /proc (none: the pidfile only). */
  readonly socket: string | undefined
  readonly dataRoot: string | undefined
  readonly execRoot: string | undefined
}

/**
 * What runs for a daemon's paths: nothing; a dockerd (found by the pid in
 * its pidfile, or by its command line naming the socket, data-root or
 * exec-root); or, in the pidfile, the pid of a live process that is no
 * dockerd of these paths, which must never be touched.
 */
export type DaemonLookup =
  | { readonly _tag: "None" }
  | {
      readonly _tag: "Dockerd"
      readonly pid: number
      readonly foundBy: "pidfile" | "socket" | "data-root" | "exec-root"
    }
  | { readonly _tag: "Other"; readonly pid: number }

/** Which of `paths` the arguments name, in the order they prove it ours. */
const namedIn = (
  args: ReadonlyArray<string>,
  paths: DaemonPaths
): "socket" | "data-root" | "exec-root" | "pidfile" | undefined => {
  const names = (path: string | undefined) =>
    path !== undefined && args.some((arg) => mentionsPath(arg, path))
  if (names(paths.socket)) return "socket"
  if (names(paths.dataRoot)) return "data-root"
  if (names(paths.execRoot)) return "exec-root"
  if (names(paths.pidfile)) return "pidfile"
  return undefined
}

/**
 * Finds the dockerd of `paths` that runs now: first by the pidfile (taken
 * only when its process is named dockerd and its command line names one
 * of the paths), then by a pass over /proc for a dockerd naming the
 * socket, data-root or exec-root. Never this process.
 */
export const findDaemon = (paths: DaemonPaths): Effect.Effect<DaemonLookup> =>
  Effect.flatMap(
    paths.pidfile === undefined ? Effect.succeed(undefined) : readPidfile(paths.pidfile),
    (recorded) =>
      Effect.promise(async (): Promise<DaemonLookup> => {
        // Paths name files only within a mount namespace: a sandbox's inner
        // dockerd on the default paths is not the one these paths name.
        const ownMounts = await mountNamespace("self")
        const sameMounts = async (pid: number) => (await mountNamespace(pid)) === ownMounts
        if (recorded !== undefined && recorded !== process.pid) {
          const found = await liveProcess(recorded)
          if (found !== undefined) {
            return found.comm === "dockerd" &&
              namedIn(found.args, paths) !== undefined &&
              (await sameMounts(recorded))
              ? { _tag: "Dockerd", pid: recorded, foundBy: "pidfile" }
              : { _tag: "Other", pid: recorded }
          }
        }
        // Names first (one small read each), command lines of dockerds only.
        const entries = await readdir("/proc").catch(() => [] as Array<string>)
        const named = await Promise.all(
          entries.map(async (entry) => {
            const pid = Number(entry)
            if (!Number.isInteger(pid) || pid === process.pid) return undefined
            const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")
            return comm.trim() === "dockerd" ? pid : undefined
          })
        )
        for (const pid of named) {
          if (pid === undefined) continue
          const found = await liveProcess(pid)
          const by = found === undefined ? undefined : namedIn(found.args, paths)
          if (by !== undefined && by !== "pidfile" && (await sameMounts(pid)))
            return { _tag: "Dockerd", pid, foundBy: by }
        }
        return { _tag: "None" }
      })
  )

/** A process's mount namespace (`mnt:[inode]`), or "" when it cannot be read. */
const mountNamespace = (pid: number | "self"): Promise<string> =>
  readlink(`/proc/${pid}/ns/mnt`).catch(() => "")

/** A line of `/proc/self/mountinfo`: the fields a leftover is told by. */
interface MountLine {
  readonly id: number
  readonly parent: number
  readonly device: string
  /** The path inside its file system that is mounted (a bind mount's source). */
  readonly root: string
  readonly point: string
  readonly order: number
}

const mountLines = async (): Promise<ReadonlyArray<MountLine>> => {
  const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "")
  return table
    .split("\n")
    .map((line, order) => {
      const fields = line.split(" ")
      const unescape = (text: string | undefined) => (text ?? "").replace(/\\040/g, " ")
      return {
        id: Number(fields[0]),
        parent: Number(fields[1]),
        device: fields[2] ?? "",
        root: unescape(fields[3]),
        point: unescape(fields[4]),
        order
      }
    })
    .filter((entry) => entry.point !== "")
}

/**
 * The places under a data-root where dockerd mounts (and a killed one
 * leaves mounts): the storage drivers' layer directories, the containers'
 * own mounts (`shm`), plugins, and a local volume's `_data` mounted with
 * options. A disk a person mounts at the data-root or at `volumes` is none
 * of these.
 */
const DAEMON_MOUNTS_UNDER_DATA_ROOT =
  /^(?:(?:overlay2|overlay|fuse-overlayfs|aufs|btrfs|zfs|devicemapper|vfs|containers|plugins)\/.+|volumes\/[^/]+\/_data)$/

/**
 * Whether `mount` is `path` bound onto itself (`mount --bind path path`,
 * what dockerd does to make its data-root shared): on the device of the
 * mount below it, showing the very directory that mount has at `path`.
 * A disk mounted there, or a directory bound there from elsewhere, is not.
 */
const boundOntoItself = (mount: MountLine, below: MountLine | undefined): boolean => {
  if (below === undefined || below.device !== mount.device) return false
  const inside = mount.point.slice(below.point === "/" ? 0 : below.point.length)
  return mount.root === (below.root === "/" ? inside : below.root + inside)
}

/**
 * The mounts a killed dockerd of these roots left, to undo when no dockerd
 * of them runs: everything below its exec-root, the daemon's own places
 * under its data-root, and the data-root bound onto itself (dockerd does
 * that to make it shared, and undoes it only on a stop after a start that
 * made it). Deepest first, the top of a stack first.
 */
export const leftoverMounts = (
  dataRoot: string,
  execRoot: string
): Effect.Effect<ReadonlyArray<MountEntry>> =>
  Effect.promise(async () => {
    const lines = await mountLines()
    const byId = new Map(lines.map((line) => [line.id, line]))
    const below = (root: string, point: string) => point.startsWith(root + "/")
    return lines
      .filter((mount) => {
        if (below(execRoot, mount.point)) return true
        if (below(dataRoot, mount.point)) {
          return DAEMON_MOUNTS_UNDER_DATA_ROOT.test(mount.point.slice(dataRoot.length + 1))
        }
        return mount.point === dataRoot && boundOntoItself(mount, byId.get(mount.parent))
      })
      .sort((a, b) => b.point.length - a.point.length || b.order - a.order)
      .map(({ id, point }) => ({ id, point }))
  })
