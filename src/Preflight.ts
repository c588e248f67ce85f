/**
 * Checks made on the local machine before dockerd is spawned, so that the
 * common mistakes fail at once with a typed error instead of a crash log.
 *
 * @since 0.1.0
 */
import { constants } from "node:fs"
import { access, readFile, stat } from "node:fs/promises"
import { createConnection } from "node:net"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import { type DockerdConfig, flags } from "./DockerdConfig.js"
import { conflictOf, type DockerdSettings } from "./DockerdSettings.js"
import {
  DirectoryNotWritable,
  DockerNotInstalled,
  InvalidConfig,
  PidfileInUse,
  SocketInUse,
  SocketPathIsDirectory
} from "./errors.js"
import { resolveExecutable } from "./internal/executable.js"

/**
 * How to install Docker where it is missing.
 *
 * @since 0.1.0
 * @category constants
 */
export const INSTALL_HINT =
  "Install docker.io (`apt-get install docker.io` on Debian/Ubuntu), or set the dockerd path (`binary` in the DockerdConfig, `--dockerd` on the CLI)."

/**
 * Every preflight failure.
 *
 * @since 0.1.0
 * @category errors
 */
export type PreflightError =
  | DockerNotInstalled
  | InvalidConfig
  | PidfileInUse
  | SocketPathIsDirectory
  | SocketInUse
  | DirectoryNotWritable

const statOrUndefined = (path: string) => Effect.promise(() => stat(path).catch(() => undefined))

/** Whether `pid` names a live process (a zombie counts as gone). */
export const isAlive = (pid: number): Effect.Effect<boolean> =>
  Effect.promise(async () => {
    try {
      process.kill(pid, 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
    }
    const status = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")
    return !/^\d+ \(.*\) Z/.test(status)
  })

/** The binary resolves on PATH, or `DockerNotInstalled`. */
const checkBinary = (config: DockerdConfig) =>
  resolveExecutable(config.binary, process.env.PATH).pipe(
    Effect.mapError(
      (error) =>
        new DockerNotInstalled({
          binary: error.binary,
          searched: error.searched,
          hint: INSTALL_HINT
        })
    )
  )

/** The wrapper the network setting needs is installed, and a named netns exists. */
const checkNetworkTools = (config: DockerdConfig) => {
  const network = config.network
  const tool = network === "host" ? undefined : network === "private" ? "unshare" : "ip"
  const installed =
    tool === undefined
      ? Effect.void
      : resolveExecutable(tool, process.env.PATH).pipe(
          Effect.asVoid,
          Effect.mapError(
            () =>
              new InvalidConfig({
                field: "network",
                problem: `needs "${tool}", which is not installed (apt-get install util-linux iproute2)`
              })
          )
        )
  if (typeof network === "string") return installed
  // `ip netns exec` would fail after the spawn with "Cannot open network namespace".
  return Effect.zipRight(
    installed,
    Effect.flatMap(statOrUndefined(`/run/netns/${network.netns}`), (info) =>
      info === undefined
        ? new InvalidConfig({
            field: "network",
            problem: `the network namespace "${network.netns}" does not exist (ip netns list); create it with ip netns add ${network.netns}, or use private`
          })
        : Effect.void
    )
  )
}

/** A pidfile holding a live pid is refused; a dead pid or garbage is fine. */
const checkPidfile = (pidfile: string) =>
  Effect.gen(function* () {
    const text = yield* Effect.promise(() => readFile(pidfile, "utf8").catch(() => undefined))
    if (text === undefined) return
    const pid = Number.parseInt(text.trim(), 10)
    if (!Number.isSafeInteger(pid) || pid <= 0 || String(pid) !== text.trim()) return
    if (pid === process.pid) return
    if (yield* isAlive(pid)) return yield* new PidfileInUse({ pidfile, pid })
  })

/** Whether something accepts connections on the unix socket `path`. */
const socketAnswers = (path: string): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const connection = createConnection({ path })
    const done = (answer: boolean) => {
      connection.destroy()
      resume(Effect.succeed(answer))
    }
    connection.once("connect", () => done(true))
    connection.once("error", () => done(false))
    return Effect.sync(() => connection.destroy())
  }).pipe(Effect.timeoutTo({ duration: "1 second", onTimeout: () => true, onSuccess: (a) => a }))

/** No directory at the socket path, and no live socket there. */
const checkSocket = (socket: string) =>
  Effect.gen(function* () {
    const info = yield* statOrUndefined(socket)
    if (info === undefined) return
    if (info.isDirectory()) return yield* new SocketPathIsDirectory({ socket })
    if (info.isSocket() && (yield* socketAnswers(socket))) return yield* new SocketInUse({ socket })
  })

/** The directory, or its nearest existing ancestor, is a writable directory. */
const checkWritable = (field: string, path: string) =>
  Effect.gen(function* () {
    let current = path
    for (;;) {
      const info = yield* statOrUndefined(current)
      if (info !== undefined) {
        if (!info.isDirectory()) {
          return yield* new DirectoryNotWritable({
            field,
            path,
            reason: `${current} is not a directory`
          })
        }
        const error = yield* Effect.promise(() =>
          access(current, constants.W_OK | constants.X_OK).then(
            () => undefined,
            (cause: NodeJS.ErrnoException) => cause.code ?? "EACCES"
          )
        )
        if (error !== undefined) {
          return yield* new DirectoryNotWritable({
            field,
            path,
            reason: current === path ? error : `${error} on ${current}`
          })
        }
        return
      }
      const parent = Path.dirname(current)
      if (parent === current) return
      current = parent
    }
  })

/**
 * The socket's group exists (dockerd would exit on a group it cannot find,
 * with nothing but a log line to say so). A numeric gid is taken as it is.
 */
const checkSocketGroup = (group: string | undefined) =>
  group === undefined || /^\d+$/.test(group)
    ? Effect.void
    : Effect.flatMap(
        Effect.promise(() => readFile("/etc/group", "utf8").catch(() => "")),
        (groups) =>
          groups.split("\n").some((line) => line.split(":")[0] === group)
            ? Effect.void
            : new InvalidConfig({
                field: "socketGroup",
                problem: `there is no group "${group}" on this machine (see /etc/group); create it (groupadd ${group}) or choose another`
              })
      )

/**
 * No setting is given both as a flag and in dockerd's config file: dockerd
 * refuses to start then, whatever the values. A machine's own
 * `/etc/docker/daemon.json` (its `hosts`, `iptables`, `storage-driver`…)
 * meets the flags every configuration passes.
 */
const checkConfigFile = (config: DockerdConfig, settings: DockerdSettings) => {
  const conflict = conflictOf(flags(config), settings)
  return conflict === undefined
    ? Effect.void
    : new InvalidConfig({
        field: `"${conflict.setting}" in ${settings.configFile}`,
        problem: `dockerd refuses a setting given both in its config file and as a flag, and this one is also given as ${conflict.flag}; remove it from that file, or give dockerd a config file of its own with --config-file=PATH among the extra flags (CLI: --arg=--config-file=PATH; a file holding {} is enough)`
      })
}

/** The TLS files of a TCP listener are there and readable. */
const checkTlsFiles = (config: DockerdConfig) =>
  Effect.forEach(
    Object.entries(config.tcp?.tls ?? {}) as ReadonlyArray<[string, string]>,
    ([name, file]) =>
      Effect.flatMap(
        Effect.promise(() =>
          access(file, constants.R_OK).then(
            () => undefined,
            (cause: NodeJS.ErrnoException) => cause.code ?? "EACCES"
          )
        ),
        (error) =>
          error === undefined
            ? Effect.void
            : new InvalidConfig({
                field: `tcp.tls.${name}`,
                problem: `cannot read ${file} (${error})`
              })
      ),
    { discard: true }
  )

/**
 * Runs every preflight check for a local start, on the directories and the
 * pidfile dockerd will really use (`settings`, from its flags and its
 * config file).
 *
 * @since 0.1.0
 * @category preflight
 */
export const run = Effect.fn("Preflight.run")(function* (
  config: DockerdConfig,
  settings: DockerdSettings
) {
  yield* checkBinary(config)
  yield* checkNetworkTools(config)
  yield* checkSocketGroup(config.socketGroup)
  yield* checkTlsFiles(config)
  yield* checkConfigFile(config, settings)
  yield* checkPidfile(settings.pidfile)
  yield* checkSocket(config.socket)
  yield* checkWritable("socket directory", Path.dirname(config.socket))
  yield* checkWritable("data-root", settings.dataRoot)
  yield* checkWritable("exec-root", settings.execRoot)
  yield* checkWritable("pidfile directory", Path.dirname(settings.pidfile))
})
