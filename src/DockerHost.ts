/**
 * What the start of a local dockerd needs from the machine it runs on: the
 * settings it will really run with, the preflight checks, the socket's
 * directory, the mounts already there, the probes that tell when it is
 * ready and alive, the socket's mode once it is, and the clean-up after it
 * stops. `Dockerd.start` asks this service for all of it, so a test swaps
 * the machine for a scripted one (`TestDocker` in `sandbox-docker/test`)
 * and runs the whole start under `TestClock`.
 *
 * The probes are built from the `FileSystem` (the socket file and its
 * directory's watch) and the Engine and containerd connectors: `layer`
 * provides the live ones, `layerWith` takes them from the context.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { access } from "node:fs/promises"
import * as Path from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Containerd from "./Containerd.js"
import type { DockerdConfig } from "./DockerdConfig.js"
import * as DockerdSettings from "./DockerdSettings.js"
import * as DockerEngine from "./DockerEngine.js"
import { DirectoryNotWritable, type InvalidConfig, SocketModeNotApplied } from "./errors.js"
import { cgroupsOnlyOf, removeCgroups } from "./internal/cgroups.js"
import {
  awaitGone,
  type DaemonLookup,
  findDaemon,
  leftoverMounts,
  leftoversOf,
  type MountEntry,
  mountEntriesUnder,
  pidfileProcess,
  readPidfile
} from "./internal/processTree.js"
import * as Preflight from "./Preflight.js"
import * as Probe from "./Probe.js"
import { ProcessManager } from "./ProcessManager.js"

/**
 * The machine a local dockerd starts on, as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class DockerHost extends Context.Tag("sandbox-docker/DockerHost")<
  DockerHost,
  DockerHostShape
>() {}

/**
 * What {@link DockerHost} does for one local start, in the order of the
 * start.
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerHostShape {
  /**
   * The settings dockerd runs with for `config` (its flags, then its config
   * file, then its defaults: see `DockerdSettings`).
   */
  readonly settings: (
    config: DockerdConfig
  ) => Effect.Effect<DockerdSettings.DockerdSettings, InvalidConfig>
  /**
   * Before the spawn: the dockerd already running for these paths, if any
   * (by its pidfile, or its command line naming the socket, data-root or
   * exec-root); `Other` when the pidfile holds a live process that is not
   * one, which must never be touched. `by`: the paths a dockerd is looked
   * for by (by default all four).
   */
  readonly running: (
    config: DockerdConfig,
    settings: DockerdSettings.DockerdSettings,
    by?: ReadonlyArray<"pidfile" | "socket" | "data-root" | "exec-root">
  ) => Effect.Effect<DaemonLookup>
  /**
   * What a killed run of these settings left, when no dockerd of them runs
   * (see `prepare`), and its pidfile (its pid is dead). How many processes
   * and mounts.
   */
  readonly recover: (
    settings: DockerdSettings.DockerdSettings
  ) => Effect.Effect<{ readonly processes: number; readonly mounts: number }, never, ProcessManager>
  /**
   * Stops a dockerd this process did not start (found by `running`) the
   * way a stop of its own goes: SIGTERM (and SIGCONT), the configuration's
   * `stopGrace`, SIGKILL; then what it left (as after a killed run: see
   * `prepare`), its pidfile and its socket.
   */
  readonly stopRunning: (
    config: DockerdConfig,
    settings: DockerdSettings.DockerdSettings,
    pid: number
  ) => Effect.Effect<RunningStopped, never, ProcessManager>
  /**
   * Before the spawn: the preflight checks on the settings; what a killed
   * run of these paths left (its containerd, shims and containers'
   * processes, their cgroups, the mounts dockerd makes under its exec-root
   * and data-root; not with live-restore, where they are the running
   * containers); the socket's directory (dockerd makes every other
   * directory it needs, not that one); and the mounts there then.
   */
  readonly prepare: (
    config: DockerdConfig,
    settings: DockerdSettings.DockerdSettings
  ) => Effect.Effect<Ground, Preflight.PreflightError, ProcessManager>
  /**
   * The readiness probe (socket file, `/_ping` held while connecting to
   * containerd ahead, containerd's version with the Engine's `/info` as
   * fallback) and the liveness probe (`/_ping`, then containerd's version).
   * Their connections are closed with the scope.
   */
  readonly probes: (
    config: DockerdConfig,
    ground: Ground
  ) => Effect.Effect<DaemonProbes, never, Scope.Scope>
  /**
   * The storage driver the data-root's image store is kept for, for a
   * daemon whose log does not say it: `unknown` when it cannot tell.
   */
  readonly storageDriver: (ground: Ground) => Effect.Effect<string>
  /**
   * Once ready: gives the socket the configured mode if dockerd did not (it
   * creates it 0660), so a socket is never left wider open than asked.
   */
  readonly applySocketMode: (config: DockerdConfig) => Effect.Effect<void, SocketModeNotApplied>
  /**
   * Before the stop: the pid of the containerd the daemon started, if any
   * (a graceful stop removes its pidfile, a SIGKILLed one leaves a zombie
   * that a restart must wait for).
   */
  readonly containerdPid: (ground: Ground) => Effect.Effect<number | undefined>
  /**
   * After the stop: what a killed daemon could not remove (leftover
   * processes and their cgroups, the mounts it made but never the ones
   * there before it, its pidfile and socket).
   */
  readonly cleanUp: (
    config: DockerdConfig,
    ground: Ground,
    pid: number,
    containerd: number | undefined
  ) => Effect.Effect<void, never, ProcessManager>
}

/**
 * What {@link DockerHostShape.prepare} found and made ready on the machine
 * for one start, which the stop cleans up after.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ground {
  readonly settings: DockerdSettings.DockerdSettings
  /** Mounts there before the daemon started (a disk at the data-root): never undone. */
  readonly premounted: ReadonlySet<number>
}

/**
 * How {@link DockerHostShape.stopRunning} went.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunningStopped {
  readonly pid: number
  /** Whether it needed SIGKILL (it ignored SIGTERM for the grace). */
  readonly killed: boolean
  /** Whether it is still there after SIGKILL (then nothing else was removed). */
  readonly survived: boolean
  /** How many leftover processes went with it, and how many mounts. */
  readonly leftoverProcesses: number
  readonly leftoverMounts: number
  readonly elapsedMs: number
}

/**
 * The probes of a daemon: when it is ready, and whether it is still alive.
 *
 * @since 0.1.0
 * @category models
 */
export interface DaemonProbes {
  readonly readiness: Probe.Probe
  readonly liveness: Probe.Probe
}

/**
 * When a waiting ping tries to connect to containerd ahead: 10 ms apart at
 * first, when dockerd starts its containerd, then less and less often (at
 * most every 250 ms) for a daemon that holds its pings for long: each try
 * costs a connection attempt and its error.
 */
const warmSpacing = Schedule.exponential("10 millis", 1.5).pipe(
  Schedule.union(Schedule.spaced("250 millis"))
)

/**
 * `ping`, which meanwhile connects to containerd ahead of the check after
 * it: dockerd holds the ping until it serves, and starts its containerd in
 * the meantime. A try that finds nobody accepting yet is repeated until one
 * connects or the ping ends.
 */
const pingWarming = (ping: Probe.Check, containerd: Containerd.ContainerdClient): Probe.Check => {
  const warming = containerd.warm.pipe(
    Effect.repeat({ schedule: warmSpacing, until: (connected) => connected }),
    Effect.zipRight(Effect.never)
  )
  return Probe.make(ping.name, Effect.raceFirst(ping.run, warming), {
    timeout: Option.getOrUndefined(ping.timeout)
  })
}

/** A platform error's short reason: the errno code when there is one. */
const reasonOf = (error: unknown): string => {
  const cause = (error as { cause?: { code?: unknown } }).cause
  if (typeof cause?.code === "string") return cause.code
  const reason = (error as { reason?: unknown }).reason
  return typeof reason === "string" ? reason : String(error)
}

/** The probes, over the file system and connectors in the context. */
const probesWith = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const engines = yield* DockerEngine.DockerEngineConnector
  const containerds = yield* Containerd.ContainerdConnector
  return (config: DockerdConfig, ground: Ground) =>
    Effect.gen(function* () {
      const engine = yield* engines.connect(config.socket)
      const address = yield* Effect.provideService(
        DockerdSettings.containerdAddress(ground.settings),
        FileSystem.FileSystem,
        fs
      )
      const containerd = yield* containerds.connect(address)
      const socket = yield* Effect.provideService(
        Probe.socketFile(config.socket),
        FileSystem.FileSystem,
        fs
      )
      return {
        // The API answers (`/_ping`), then its containerd does: what `/info`
        // proves, without the time dockerd spends on `/info` as it starts.
        // `/info` is asked instead when containerd is not where dockerd's
        // rules put it.
        readiness: Probe.all([
          socket,
          pingWarming(Probe.enginePing(engine), containerd),
          Probe.containerdVersion(containerd, { fallback: engine })
        ]),
        // Not `/_ping` alone: a daemon whose containerd is gone or stopped
        // still answers it, but can serve nothing. Not `/info` either: it
        // costs dockerd far more CPU (it runs `runc` and `docker-init`).
        liveness: Probe.all([
          Probe.enginePing(engine),
          Probe.containerdVersion(containerd, { fallback: engine })
        ])
      } satisfies DaemonProbes
    })
})

/** The storage driver a data-root's image store is kept for (`<data-root>/image/overlay2`). */
const storageDriverOn =
  (fs: FileSystem.FileSystem) =>
  (ground: Ground): Effect.Effect<string> => {
    const images = Path.join(ground.settings.dataRoot, "image")
    return fs.readDirectory(images).pipe(
      Effect.flatMap((names) =>
        Effect.filter(names, (name) =>
          Effect.map(fs.stat(Path.join(images, name)), (info) => info.type === "Directory")
        )
      ),
      Effect.map((stores) => (stores.length === 1 ? stores[0]! : "unknown")),
      Effect.orElseSucceed(() => "unknown")
    )
  }

/** The ids of the mounts under the daemon's exec-root and data-root now. */
const mountIdsOf = (settings: DockerdSettings.DockerdSettings) =>
  Effect.map(
    Effect.all([mountEntriesUnder(settings.execRoot), mountEntriesUnder(settings.dataRoot)]),
    (lists): ReadonlySet<number> => new Set(lists.flat().map((entry) => entry.id))
  )

/**
 * A stopped daemon's processes: its containerd (`also`), and, unless its
 * containers live on (live-restore), the shims naming the exec-root and
 * what runs below them (the processes of containers still running: a
 * SIGKILLed daemon stops none of them) with the cgroups runc made for
 * those. SIGKILL for what is still there after `killAfter`. How many there
 * were.
 */
const endLeftoverProcesses = (
  settings: DockerdSettings.DockerdSettings,
  also: ReadonlyArray<number>,
  killAfter: Duration.DurationInput
): Effect.Effect<number> =>
  Effect.gen(function* () {
    if (settings.liveRestore) {
      return also.length - (yield* awaitGone(also, killAfter, "10 seconds")).length
    }
    const { all, daemonSide } = yield* leftoversOf(settings.execRoot, also)
    const containerCgroups = yield* cgroupsOnlyOf(
      all.filter((pid) => !daemonSide.includes(pid)),
      daemonSide
    )
    const survivors = yield* awaitGone(all, killAfter, "10 seconds")
    if (survivors.length > 0) {
      // Nothing else reports it: the stop itself has no error.
      yield* Effect.logWarning("processes of the daemon are still there after SIGKILL").pipe(
        Effect.annotateLogs({ pids: survivors.join(",") })
      )
    } else {
      yield* removeCgroups(containerCgroups)
    }
    return all.length
  })

/** `umount --lazy` of each of `mounts`, in order, through the ProcessManager. */
const unmountAll = (mounts: ReadonlyArray<MountEntry>) =>
  Effect.flatMap(ProcessManager, (manager) =>
    Effect.forEach(
      mounts,
      ({ point }) =>
        Effect.scoped(
          Effect.flatMap(
            manager.exec(["umount", "--lazy", point], { killGrace: "1 second" }),
            (handle) => handle.awaitExit
          )
        ).pipe(Effect.ignore),
      { discard: true }
    )
  )

/** The pidfile, if it still holds `pid`, and the socket, if it is one. */
const removeFilesOf =
  (fs: FileSystem.FileSystem) =>
  (config: DockerdConfig, settings: DockerdSettings.DockerdSettings, pid: number) =>
    Effect.gen(function* () {
      if ((yield* readPidfile(settings.pidfile)) === pid) {
        yield* Effect.ignore(fs.remove(settings.pidfile, { force: true }))
      }
      const socket = yield* Effect.option(fs.stat(config.socket))
      if (Option.isSome(socket) && socket.value.type === "Socket") {
        yield* Effect.ignore(fs.remove(config.socket, { force: true }))
      }
    })

/**
 * What a killed run of these settings left, when no dockerd of them runs:
 * its processes and the mounts dockerd makes (see `leftoverMounts`), but
 * nothing of live-restore's running containers. How many of each.
 */
const recoverLeftovers = (
  settings: DockerdSettings.DockerdSettings,
  containerd: number | undefined,
  killAfter: Duration.DurationInput
) =>
  Effect.gen(function* () {
    // A killed dockerd leaves its pidfile (a stop removes it), and its
    // containerd's: without either, no process of a killed run is looked
    // for (a pass over /proc costs tens of milliseconds).
    const killed =
      containerd !== undefined ||
      (yield* Effect.promise(() =>
        Promise.all(
          [settings.pidfile, settings.containerdPidfile].map((path) =>
            access(path).then(
              () => true,
              () => false
            )
          )
        )
      )).some((found) => found)
    const processes = killed
      ? yield* endLeftoverProcesses(
          settings,
          containerd === undefined ? [] : [containerd],
          killAfter
        )
      : 0
    if (settings.liveRestore) return { processes, mounts: 0 }
    const mounts = yield* leftoverMounts(settings.dataRoot, settings.execRoot)
    yield* unmountAll(mounts)
    if (processes + mounts.length > 0) {
      yield* Effect.logWarning("removed what a killed dockerd left").pipe(
        Effect.annotateLogs({
          processes,
          mounts: mounts.map((mount) => mount.point).join(","),
          execRoot: settings.execRoot
        })
      )
    }
    return { processes, mounts: mounts.length }
  })

/**
 * Removes what a killed daemon could not: leftover processes, the mounts it
 * made (never the ones there before it started, such as a disk mounted at
 * the data-root; none with live-restore, whose containers keep running),
 * files.
 */
const cleanUpLocal =
  (fs: FileSystem.FileSystem) =>
  (config: DockerdConfig, ground: Ground, pid: number, containerd: number | undefined) =>
    Effect.gen(function* () {
      const { settings, premounted } = ground
      yield* endLeftoverProcesses(
        settings,
        containerd === undefined ? [] : [containerd],
        "2 seconds"
      )
      if (!settings.liveRestore) {
        for (const root of [settings.execRoot, settings.dataRoot]) {
          const made = (yield* mountEntriesUnder(root)).filter(({ id }) => !premounted.has(id))
          yield* unmountAll(made)
        }
      }
      yield* removeFilesOf(fs)(config, settings, pid)
    })

/**
 * The containerd a dockerd of these settings started, by its pidfile: a
 * process named containerd that names the exec-root, or a zombie (a
 * SIGKILLed dockerd's containerd stays one for a while, and a new dockerd
 * on the same exec-root hangs until it is gone). A pid reused by another
 * containerd names another exec-root, or none.
 */
const leftContainerd = (settings: DockerdSettings.DockerdSettings) =>
  pidfileProcess(settings.containerdPidfile, "containerd", settings.execRoot)

/** A signal to a process that may be gone already. */
const send = (pid: number, signal: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(pid, signal)
    } catch {
      // ESRCH: gone already.
    }
  })

/** Stops a dockerd this process did not start (see `DockerHostShape.stopRunning`). */
const stopRunningLocal =
  (fs: FileSystem.FileSystem) =>
  (config: DockerdConfig, settings: DockerdSettings.DockerdSettings, pid: number) =>
    Effect.gen(function* () {
      const started = yield* Clock.currentTimeMillis
      const containerd = yield* leftContainerd(settings)
      yield* send(pid, "SIGTERM")
      yield* send(pid, "SIGCONT")
      const afterGrace = yield* awaitGone([pid], Duration.infinity, config.stopGrace)
      const killed = afterGrace.length > 0
      if (killed) {
        yield* Effect.logWarning("dockerd ignored SIGTERM; sending SIGKILL").pipe(
          Effect.annotateLogs({ pid, graceMs: Duration.toMillis(config.stopGrace) })
        )
      }
      const survived = killed && (yield* awaitGone([pid], "0 millis", "10 seconds")).length > 0
      const left = survived
        ? { processes: 0, mounts: 0 }
        : yield* recoverLeftovers(settings, containerd, "2 seconds")
      if (!survived) yield* removeFilesOf(fs)(config, settings, pid)
      return {
        pid,
        killed,
        survived,
        leftoverProcesses: left.processes,
        leftoverMounts: left.mounts,
        elapsedMs: (yield* Clock.currentTimeMillis) - started
      } satisfies RunningStopped
    }).pipe(Effect.annotateLogs({ pid, socket: config.socket }))

/**
 * The host of this machine, with the file system and connectors taken from
 * the context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  DockerHostShape,
  never,
  FileSystem.FileSystem | DockerEngine.DockerEngineConnector | Containerd.ContainerdConnector
> = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const probes = yield* probesWith
  return DockerHost.of({
    settings: DockerdSettings.resolve,
    running: (config, settings, by = ["pidfile", "socket", "data-root", "exec-root"]) =>
      findDaemon({
        pidfile: by.includes("pidfile") ? settings.pidfile : undefined,
        socket: by.includes("socket") ? config.socket : undefined,
        dataRoot: by.includes("data-root") ? settings.dataRoot : undefined,
        execRoot: by.includes("exec-root") ? settings.execRoot : undefined
      }),
    recover: (settings) =>
      Effect.gen(function* () {
        const left = yield* recoverLeftovers(settings, yield* leftContainerd(settings), "0 millis")
        const pid = yield* readPidfile(settings.pidfile)
        if (pid !== undefined && !(yield* Preflight.isAlive(pid))) {
          yield* Effect.ignore(fs.remove(settings.pidfile, { force: true }))
        }
        return left
      }),
    stopRunning: stopRunningLocal(fs),
    prepare: Effect.fn("DockerHost.prepare")(function* (
      config: DockerdConfig,
      settings: DockerdSettings.DockerdSettings
    ) {
      yield* Preflight.run(config, settings)
      // No dockerd of these paths runs (the preflight saw to the pidfile
      // and the socket; `running` was asked before): whatever still names
      // them was left by one that was killed.
      yield* recoverLeftovers(settings, yield* leftContainerd(settings), "0 millis")
      const socketDir = Path.dirname(config.socket)
      yield* fs.makeDirectory(socketDir, { recursive: true, mode: 0o755 }).pipe(
        Effect.mapError(
          (error) =>
            new DirectoryNotWritable({
              field: "socket directory",
              path: socketDir,
              reason: reasonOf(error)
            })
        )
      )
      return { settings, premounted: yield* mountIdsOf(settings) }
    }),
    probes,
    storageDriver: storageDriverOn(fs),
    applySocketMode: (config) =>
      fs.stat(config.socket).pipe(
        Effect.flatMap((info) =>
          (info.mode & 0o777) === config.socketMode
            ? Effect.void
            : fs.chmod(config.socket, config.socketMode)
        ),
        Effect.mapError(
          (error) =>
            new SocketModeNotApplied({
              socket: config.socket,
              mode: `0${config.socketMode.toString(8)}`,
              reason: reasonOf(error)
            })
        )
      ),
    containerdPid: (ground) =>
      // Only a process named containerd is taken (a pid reused by another is not).
      pidfileProcess(ground.settings.containerdPidfile, "containerd"),
    cleanUp: cleanUpLocal(fs)
  })
})

/**
 * A host that touches nothing of the machine: the settings come from the
 * configuration and the config file as the `FileSystem` reads it, there is no
 * preflight, no directory is made, the socket's mode is left, nothing is
 * cleaned up. The probes are the real ones, over the file system and
 * connectors in the context: give it test layers of those (`TestDocker`
 * does).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTest: Effect.Effect<
  DockerHostShape,
  never,
  FileSystem.FileSystem | DockerEngine.DockerEngineConnector | Containerd.ContainerdConnector
> = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const probes = yield* probesWith
  return DockerHost.of({
    settings: (config) =>
      Effect.flatMap(
        Effect.option(fs.readFileString(DockerdSettings.configFileOf(config))),
        (text) => DockerdSettings.fromConfigFile(config, Option.getOrUndefined(text))
      ),
    running: () => Effect.succeed({ _tag: "None" }),
    recover: () => Effect.succeed({ processes: 0, mounts: 0 }),
    stopRunning: (_config, _settings, pid) =>
      Effect.succeed({
        pid,
        killed: false,
        survived: false,
        leftoverProcesses: 0,
        leftoverMounts: 0,
        elapsedMs: 0
      }),
    prepare: (_config, settings) => Effect.succeed({ settings, premounted: new Set() }),
    probes,
    storageDriver: storageDriverOn(fs),
    applySocketMode: () => Effect.void,
    containerdPid: () => Effect.succeed(undefined),
    cleanUp: () => Effect.void
  })
})

/**
 * The host of this machine, its file system and Engine and containerd
 * connectors taken from the context (to swap any of them).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWith: Layer.Layer<
  DockerHost,
  never,
  FileSystem.FileSystem | DockerEngine.DockerEngineConnector | Containerd.ContainerdConnector
> = Layer.effect(DockerHost, make)

/**
 * The host of this machine: Node's file system, the live Engine and
 * containerd connectors.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DockerHost> = layerWith.pipe(
  Layer.provide(
    Layer.mergeAll(NodeFileSystem.layer, DockerEngine.layerConnector, Containerd.layerConnector)
  )
)

/**
 * A host that skips the machine's preflight and clean-up ({@link makeTest}),
 * over the file system and connectors in the context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest: Layer.Layer<
  DockerHost,
  never,
  FileSystem.FileSystem | DockerEngine.DockerEngineConnector | Containerd.ContainerdConnector
> = Layer.effect(DockerHost, makeTest)
