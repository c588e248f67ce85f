/**
 * The cgroups of a local dockerd's containers, found through /proc: runc
 * makes one per container (`/sys/fs/cgroup/<controller>/docker/<id>` with
 * the cgroupfs driver), and a daemon killed before it stopped its
 * containers never removes them.
 *
 * @internal
 */
import { readFile, rmdir } from "node:fs/promises"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** A cgroup hierarchy mounted here: which controllers, where, from which root. */
interface Hierarchy {
  /** The controllers (v1: `memory`, `name=systemd`); none for cgroup2. */
  readonly controllers: ReadonlySet<string> | undefined
  readonly root: string
  readonly point: string
}

/** The cgroup hierarchies in this process's mount namespace. */
const hierarchies = async (): Promise<ReadonlyArray<Hierarchy>> => {
  const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "")
  const found: Array<Hierarchy> = []
  for (const line of table.split("\n")) {
    const [mount, fs] = line.split(" - ")
    if (mount === undefined || fs === undefined) continue
    const fields = mount.split(" ")
    const [type, , options = ""] = fs.split(" ")
    const root = (fields[3] ?? "").replace(/\\040/g, " ")
    const point = (fields[4] ?? "").replace(/\\040/g, " ")
    if (type === "cgroup2") found.push({ controllers: undefined, root, point })
    if (type === "cgroup") found.push({ controllers: new Set(options.split(",")), root, point })
  }
  return found
}

/** The directory of the cgroup `path` of a `/proc/PID/cgroup` line, where mounted. */
const directoryOf = (
  all: ReadonlyArray<Hierarchy>,
  controllers: string,
  path: string
): string | undefined => {
  const wanted = controllers === "" ? undefined : controllers.split(",")
  const hierarchy = all.find((h) =>
    wanted === undefined
      ? h.controllers === undefined
      : h.controllers !== undefined && wanted.every((c) => h.controllers!.has(c))
  )
  if (hierarchy === undefined) return undefined
  const root = hierarchy.root === "/" ? "" : hierarchy.root
  if (root !== "" && path !== root && !path.startsWith(`${root}/`)) return undefined
  const below = path.slice(root.length)
  // The hierarchy's own root is never one a daemon made.
  return below === "" || below === "/" ? undefined : `${hierarchy.point}${below}`
}

/** The cgroup directories `pid` is in (in every hierarchy mounted here). */
const directoriesOfPid = async (
  all: ReadonlyArray<Hierarchy>,
  pid: number
): Promise<ReadonlyArray<string>> => {
  const text = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "")
  return text.split("\n").flatMap((line) => {
    const match = /^\d+:([^:]*):(.*)$/.exec(line)
    const directory = match === null ? undefined : directoryOf(all, match[1]!, match[2]!)
    return directory === undefined ? [] : [directory]
  })
}

/**
 * A container's own cgroup, or one below it: a part of its path names a
 * container id (64 hex digits: `docker/<id>` with the cgroupfs driver,
 * `docker-<id>.scope` with systemd's). Nothing else is ever removed,
 * whatever a process moved into.
 */
const CONTAINER_CGROUP = /\/[^/]*(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])[^/]*(\/|$)/

/**
 * The containers' cgroup directories among those `pids` are in and
 * `others` are not (nor this process): not the daemon's or the caller's.
 */
export const cgroupsOnlyOf = (
  pids: ReadonlyArray<number>,
  others: ReadonlyArray<number>
): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const all = await hierarchies()
    const of = async (list: ReadonlyArray<number>) =>
      new Set((await Promise.all(list.map((pid) => directoriesOfPid(all, pid)))).flat())
    const theirs = await of(pids)
    const kept = await of([...others, process.pid])
    return [...theirs].filter(
      (directory) => !kept.has(directory) && CONTAINER_CGROUP.test(directory)
    )
  })

/**
 * Removes the cgroups `directories` once their processes are gone, deepest
 * first. One that still holds a process or a child cgroup stays (the
 * kernel refuses to remove it); a moment after its last process exits the
 * kernel may still count it busy, so a busy one is tried again for a while.
 */
export const removeCgroups = (directories: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.forEach(
    [...directories].sort((a, b) => b.length - a.length),
    (directory) =>
      Effect.promise(() =>
        rmdir(directory).then(
          () => undefined,
          (error: NodeJS.ErrnoException) => error.code
        )
      ).pipe(
        Effect.repeat({
          schedule: Schedule.spaced("20 millis"),
          times: 24,
          while: (code) => code === "EBUSY"
        })
      ),
    { discard: true }
  )
