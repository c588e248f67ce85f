/**
 * Start a real dockerd and know the moment it is ready.
 *
 * `start` is scoped: preflight, spawn through the ProcessManager, wait with
 * probes (socket, then `/_ping`, then `/info` when the socket is reachable
 * from here; `docker info` through the ProcessManager when it is not), and
 * return a handle. Closing the scope stops the daemon: SIGTERM, a grace,
 * SIGKILL; then its containerd and shims are waited for (or killed), and its
 * pidfile, socket and mounts are removed.
 *
 * @since 0.1.0
 */
import { chmod, mkdir, readdir, rm, stat } from "node:fs/promises"
import * as Path from "node:path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { DaemonEvent, type EventSink } from "./DaemonEvent.js"
import * as Containerd from "./Containerd.js"
import * as DockerdConfig from "./DockerdConfig.js"
import * as DockerdSettings from "./DockerdSettings.js"
import * as DockerEngine from "./DockerEngine.js"
import { diagnose } from "./Diagnosis.js"
import {
  DaemonCrashed,
  DaemonNotReady,
  DirectoryNotWritable,
  DockerNotInstalled,
  type ExitedBeforeReady,
  type NotReadyByDeadline,
  SocketModeNotApplied,
  type StartError
} from "./errors.js"
import { cgroupsOnlyOf, removeCgroups } from "./internal/cgroups.js"
import {
  awaitGone,
  leftoversOf,
  mountEntriesUnder,
  pidfileProcess,
  readPidfile
} from "./internal/processTree.js"
import * as Preflight from "./Preflight.js"
import * as Probe from "./Probe.js"
import { type ProcessHandle, ProcessManager } from "./ProcessManager.js"
import type { ExitStatus } from "./ProcessStatus.js"
import { ReadinessEvent, type ReadinessReport, waitUntilReady } from "./Readiness.js"
import { redactArgv, secretsOf } from "./Redaction.js"
import { fast, type ReadinessPolicy } from "./ReadinessPolicy.js"

/**
 * A ready daemon. Valid while the scope it was started in is open.
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerDaemon {
  readonly pid: number
  readonly socket: string
  readonly config: DockerdConfig.DockerdConfig
  readonly serverVersion: string
  readonly apiVersion: string
  readonly storageDriver: string
  /** Milliseconds from the spawn to ready. */
  readonly timeToReadyMs: number
  readonly report: ReadinessReport
  readonly process: ProcessHandle
  /** Waits until dockerd exits, however it exits. */
  readonly awaitExit: Effect.Effect<ExitStatus>
  /**
   * The probe a supervisor uses for liveness: `GET /_ping` then containerd's
   * version service (local), or `docker version` (remote).
   */
  readonly liveness: Probe.Probe
  /** Where it runs: `local` (this machine) or `remote` (through a process manager). */
  readonly location: Location
}

/**
 * Where the daemon runs relative to this process.
 *
 * - `local`: on this machine. Preflight checks run, the socket is probed
 *   directly and leftovers are cleaned through /proc.
 * - `remote`: behind the ProcessManager (a sandbox); probes are `docker`
 *   commands run through it.
 *
 * @since 0.1.0
 * @category models
 */
export type Location = "local" | "remote"

/**
 * Options of {@link start}.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  readonly location?: Location | undefined
  readonly onEvent?: EventSink | undefined
  /** Restarts before this start, for the `Ready` event. */
  readonly restarts?: number | undefined
}

/**
 * How to get Docker into a sandbox image that lacks it.
 *
 * @since 0.1.0
 * @category constants
 */
export const REMOTE_INSTALL_HINT =
  "The sandbox image has no Docker: use an image with docker.io installed (scripts/build-images.sh builds one)."

const InfoLine = Schema.parseJson(
  Schema.Struct({ ServerVersion: Schema.String, Driver: Schema.String, ApiVersion: Schema.String })
)

/**
 * The daemon-level error for a readiness failure: `DaemonCrashed` for an
 * exit, `DaemonNotReady` for the deadline, each with a diagnosis when the
 * log shows a known cause.
 *
 * @since 0.1.0
 * @category errors
 */
export const toStartError = (
  error: ExitedBeforeReady | NotReadyByDeadline,
  socket: string
): DaemonCrashed | DaemonNotReady => {
  const diagnosis = diagnose(error.logTail)
  // (Fields from an error already made: no validation again.)
  if (error._tag === "ExitedBeforeReady") {
    return new DaemonCrashed(
      {
        pid: error.pid,
        status: error.status,
        ...(error.status._tag === "Exited"
          ? { exitCode: error.status.code }
          : { signal: error.status.signal }),
        elapsedMs: error.elapsedMs,
        logTail: error.logTail,
        ...(diagnosis === undefined ? {} : { diagnosis })
      },
      true
    )
  }
  return new DaemonNotReady(
    {
      pid: error.pid,
      socket,
      deadlineMs: error.deadlineMs,
      elapsedMs: error.elapsedMs,
      attempts: error.attempts,
      lastFailures: error.lastFailures,
      logTail: error.logTail,
      ...(diagnosis === undefined ? {} : { diagnosis })
    },
    true
  )
}

/** The ids of the mounts under the daemon's exec-root and data-root now. */
const mountIdsOf = (settings: DockerdSettings.DockerdSettings) =>
  Effect.map(
    Effect.all([mountEntriesUnder(settings.execRoot), mountEntriesUnder(settings.dataRoot)]),
    (lists) => new Set(lists.flat().map((entry) => entry.id))
  )

/**
 * Removes what a killed daemon could not: leftover processes, the mounts it
 * made (never the ones there before it started, such as a disk mounted at
 * the data-root), files.
 */
const cleanUpLocal = (
  config: DockerdConfig.DockerdConfig,
  settings: DockerdSettings.DockerdSettings,
  pid: number,
  containerd: number | undefined,
  premounted: ReadonlySet<number>
) =>
  Effect.gen(function* () {
    const execRoot = settings.execRoot
    // Its containerd, the shims naming the exec-root, and what runs below
    // them: the processes of containers still running (a SIGKILLed daemon
    // stops none of them), and the cgroups runc made for those.
    const { daemonSide, all } = yield* leftoversOf(
      execRoot,
      containerd === undefined ? [] : [containerd]
    )
    const containerCgroups = yield* cgroupsOnlyOf(
      all.filter((pid) => !daemonSide.includes(pid)),
      daemonSide
    )
    const survivors = yield* awaitGone(all, 2_000, 10_000)
    if (survivors.length > 0) {
      yield* Effect.logWarning("processes of the daemon are still there after SIGKILL").pipe(
        Effect.annotateLogs({ pids: survivors.join(",") })
      )
    } else {
      yield* removeCgroups(containerCgroups)
    }
    const manager = yield* ProcessManager
    for (const root of [execRoot, settings.dataRoot]) {
      for (const { id, point } of yield* mountEntriesUnder(root)) {
        if (premounted.has(id)) continue
        yield* Effect.scoped(
          Effect.flatMap(
            manager.exec(["umount", "--lazy", point], { killGrace: "1 second" }),
            (handle) => handle.awaitExit
          )
        ).pipe(Effect.ignore)
      }
    }
    if ((yield* readPidfile(settings.pidfile)) === pid) {
      yield* Effect.promise(() => rm(settings.pidfile, { force: true }))
    }
    const socket = yield* Effect.promise(() => stat(config.socket).catch(() => undefined))
    if (socket?.isSocket()) yield* Effect.promise(() => rm(config.socket, { force: true }))
  })

/** What the stop of a local daemon cleans up after: where, and what to leave. */
interface LocalGround {
  readonly settings: DockerdSettings.DockerdSettings
  /** Mounts there before the daemon started (a disk at the data-root). */
  readonly premounted: ReadonlySet<number>
}

/**
 * Stops a daemon: SIGTERM, up to `grace`, SIGKILL; then (locally) waits for
 * its containerd and shims to be gone and removes its pidfile and socket.
 */
const stop = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  local: LocalGround | undefined,
  emit: EventSink
) =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    // Its containerd, read before dockerd stops (a graceful stop removes
    // the pidfile). A SIGKILLed daemon's containerd stays a zombie for a
    // while, which no command line names any more, and a restart on the
    // same exec-root must wait for it. Read now rather than at ready: a
    // containerd dockerd restarted meanwhile has a new pid, and only a
    // process named containerd is taken (a pid reused by another is not).
    const containerd =
      local === undefined
        ? undefined
        : yield* pidfileProcess(local.settings.containerdPidfile, "containerd")
    let status = yield* handle.status
    if (status._tag === "Running") {
      yield* emit(DaemonEvent.Stopping({ pid: handle.pid }))
      yield* handle.signal("SIGTERM")
      // A stopped (SIGSTOP) daemon would hold the SIGTERM until continued.
      yield* handle.signal("SIGCONT")
      const exited = yield* handle.awaitExit.pipe(
        Effect.interruptible,
        Effect.timeout(config.stopGrace),
        Effect.option
      )
      if (Option.isNone(exited)) {
        yield* Effect.logWarning("dockerd ignored SIGTERM; sending SIGKILL")
        yield* handle.signal("SIGKILL")
      }
      status = yield* handle.awaitExit.pipe(
        Effect.interruptible,
        Effect.timeout("10 seconds"),
        Effect.orDie
      )
    }
    if (local !== undefined) {
      yield* cleanUpLocal(config, local.settings, handle.pid, containerd, local.premounted)
    }
    const elapsedMs = (yield* Clock.currentTimeMillis) - started
    yield* Effect.logInfo("dockerd stopped").pipe(Effect.annotateLogs({ elapsedMs }))
    yield* emit(DaemonEvent.Stopped({ pid: handle.pid, status, elapsedMs }))
  }).pipe(Effect.annotateLogs({ pid: handle.pid, socket: config.socket }), Effect.ignore)

/**
 * Gives the socket the configured mode if dockerd did not (it creates it
 * 0660): a socket is never left wider open than asked.
 */
const applySocketMode = (config: DockerdConfig.DockerdConfig) =>
  Effect.tryPromise({
    try: async () => {
      const info = await stat(config.socket)
      if ((info.mode & 0o777) !== config.socketMode) await chmod(config.socket, config.socketMode)
    },
    catch: (error) =>
      new SocketModeNotApplied({
        socket: config.socket,
        mode: `0${config.socketMode.toString(8)}`,
        reason: (error as NodeJS.ErrnoException).code ?? String(error)
      })
  })

/** How often a waiting ping tries to connect to containerd ahead. */
const WARM_EVERY_MS = 10

/**
 * `ping`, which meanwhile connects to containerd ahead of the check after
 * it: dockerd holds the ping until it serves, and starts its containerd in
 * the meantime. Tried every {@link WARM_EVERY_MS} ms until connected or the
 * ping ends; a failed try is a `connect` that finds no socket.
 */
const pingWarming = (ping: Probe.Check, containerd: Containerd.ContainerdClient): Probe.Check =>
  Probe.fromCallback(
    ping.name,
    (done) => {
      let over = false
      let timer: ReturnType<typeof setTimeout> | undefined
      let stopWarm: () => void = () => {}
      const warm = () => {
        timer = undefined
        if (over) return
        stopWarm = containerd.unsafeWarm((connected) => {
          if (!connected && !over) timer = setTimeout(warm, WARM_EVERY_MS)
        })
      }
      const stop = () => {
        over = true
        if (timer !== undefined) clearTimeout(timer)
        stopWarm()
      }
      const cancel = ping.unsafeRun!((result) => {
        stop()
        done(result)
      })
      warm()
      return () => {
        stop()
        cancel()
      }
    },
    { timeout: Option.getOrUndefined(ping.timeout) }
  )

/**
 * The settings of a local daemon: the ones given (resolved at its start),
 * else resolved now.
 */
const settingsOf = (
  config: DockerdConfig.DockerdConfig,
  settings: DockerdSettings.DockerdSettings | undefined
) => (settings === undefined ? DockerdSettings.resolve(config) : Effect.succeed(settings))

/**
 * The readiness probe and the liveness probe for a location: for `remote`,
 * `docker info` and `docker version` run through the ProcessManager. For
 * `local`, `settings` are the daemon's as resolved at its start (resolved
 * here when not given): they say where its containerd listens.
 *
 * @since 0.1.0
 * @category probes
 */
export const probesFor = (
  config: DockerdConfig.DockerdConfig,
  location: Location,
  settings?: DockerdSettings.DockerdSettings
) =>
  Effect.gen(function* () {
    if (location === "local") {
      const engine = yield* DockerEngine.make(config.socket)
      const address = yield* DockerdSettings.containerdAddress(yield* settingsOf(config, settings))
      const containerd = yield* Containerd.make(address)
      return {
        // The API answers (`/_ping`), then its containerd does: what `/info`
        // proves, without the 10-100 ms dockerd spends on `/info` as it
        // starts. `/info` is asked instead when containerd is not where
        // dockerd's rules put it.
        readiness: Probe.all([
          Probe.socketFile(config.socket),
          pingWarming(Probe.enginePing(engine), containerd),
          Probe.containerdVersion(containerd, { fallback: engine })
        ]),
        // Not `/_ping` alone: a daemon whose containerd is gone or stopped
        // still answers it, but can serve nothing. Not `/info` either: each
        // costs dockerd ~7 ms of CPU (it runs `runc` and `docker-init`),
        // 0.7% of a core at one check a second, against ~0.4 ms for these.
        liveness: Probe.all([
          Probe.enginePing(engine),
          Probe.containerdVersion(containerd, { fallback: engine })
        ])
      }
    }
    const docker = [config.dockerCli, "--host", `unix://${config.socket}`] as const
    return {
      readiness: yield* Probe.command(
        [
          ...docker,
          "info",
          "--format",
          '{"ServerVersion":{{json .ServerVersion}},"Driver":{{json .Driver}},"ApiVersion":""}'
        ],
        { name: "docker info" }
      ),
      liveness: yield* Probe.command([...docker, "version", "--format", "{{.Server.Version}}"], {
        name: "liveness"
      })
    }
  })

/**
 * The storage driver a data-root's image store is kept for, when it holds
 * one (`<data-root>/image/overlay2`): dockerd makes it as it starts, before
 * it serves. For a daemon whose log level hides its `Docker daemon` line.
 */
const storageDriverIn = (dataRoot: string): Effect.Effect<string> =>
  Effect.promise(() =>
    readdir(Path.join(dataRoot, "image"), { withFileTypes: true }).then(
      (entries) => {
        const stores = entries.filter((entry) => entry.isDirectory())
        return stores.length === 1 ? stores[0]!.name : "unknown"
      },
      () => "unknown"
    )
  )

/**
 * What dockerd's `Docker daemon` line says (text or JSON log format; 20.10
 * writes `graphdriver(s)=`, later versions `storage-driver=`).
 */
const startupLine = (
  logTail: ReadonlyArray<string>
): { readonly storageDriver?: string; readonly serverVersion?: string } => {
  for (let i = logTail.length - 1; i >= 0; i--) {
    const line = logTail[i]!
    if (!line.includes("Docker daemon")) continue
    const driver = /(?:graphdriver\(s\)|storage-driver)"?[=:]\s*"?([\w.,-]+)/.exec(line)?.[1]
    const version = /\bversion"?[=:]\s*"?([\w.+~-]+)/.exec(line)?.[1]
    return {
      ...(driver === undefined ? {} : { storageDriver: driver }),
      ...(version === undefined ? {} : { serverVersion: version })
    }
  }
  return {}
}

/**
 * Server version, API version and storage driver from the readiness report
 * (and, for a local daemon, from the line dockerd logs as it finishes
 * starting: `msg="Docker daemon" … graphdriver(s)=overlay2 version=…`, since
 * its readiness check does not ask `/info`).
 *
 * @since 0.1.0
 * @category probes
 */
export const versionsOf = (
  report: ReadinessReport,
  location: Location,
  logTail: ReadonlyArray<string> = []
) => {
  if (location === "local") {
    const proof = report.resultOf("containerd")
    const info =
      proof instanceof DockerEngine.InfoAnswer
        ? proof
        : (report.resultOf("info") as DockerEngine.InfoAnswer | undefined)
    const ping = report.resultOf("ping") as DockerEngine.PingAnswer | undefined
    const logged = startupLine(logTail)
    return {
      serverVersion:
        ping?.serverVersion ?? info?.ServerVersion ?? logged.serverVersion ?? "unknown",
      apiVersion: ping?.apiVersion ?? "unknown",
      storageDriver: info?.Driver ?? logged.storageDriver ?? "unknown"
    }
  }
  const output =
    String(report.resultOf("docker info") ?? "")
      .split("\n")
      .at(-1) ?? ""
  const decoded = Schema.decodeUnknownOption(InfoLine)(output)
  return Option.match(decoded, {
    onNone: () => ({ serverVersion: "unknown", apiVersion: "unknown", storageDriver: "unknown" }),
    onSome: (info) => ({
      serverVersion: info.ServerVersion,
      apiVersion: info.ApiVersion || "unknown",
      storageDriver: info.Driver
    })
  })
}

/**
 * Waits until the dockerd of `handle` is ready, with the probes for its
 * location ({@link probesFor}): each probe's result goes to `emit` as a
 * `DaemonEvent.Probe`, a failed wait is a {@link StartError}. Succeeds with
 * the ready daemon. Used by {@link start}, and by callers that started
 * dockerd some other way (the CLI's detached dockerd in a sandbox). For a
 * `local` daemon, `settings` are the ones resolved at its start (resolved
 * here when not given).
 *
 * @since 0.1.0
 * @category waiting
 */
export const awaitReady = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  location: Location,
  policy: ReadinessPolicy,
  emit: EventSink = () => Effect.void,
  settings?: DockerdSettings.DockerdSettings
): Effect.Effect<DockerDaemon, StartError, ProcessManager | Scope.Scope> =>
  Effect.gen(function* () {
    const local = location === "local" ? yield* settingsOf(config, settings) : undefined
    const probes = yield* probesFor(config, location, local)
    const report = yield* waitUntilReady(handle, probes.readiness, policy, {
      onEvent: (event) =>
        ReadinessEvent.$is("ProbeResult")(event)
          ? emit(
              DaemonEvent.Probe({
                attempt: event.attempt,
                elapsedMs: event.elapsedMs,
                outcome: event.outcome
              })
            )
          : Effect.void
    }).pipe(Effect.mapError((error) => toStartError(error, config.socket)))
    const versions = versionsOf(report, location, location === "local" ? yield* handle.logTail : [])
    if (local !== undefined && versions.storageDriver === "unknown") {
      versions.storageDriver = yield* storageDriverIn(local.dataRoot)
    }
    return {
      pid: handle.pid,
      socket: config.socket,
      config,
      ...versions,
      timeToReadyMs: report.elapsedMs,
      report,
      process: handle,
      awaitExit: handle.awaitExit,
      liveness: probes.liveness,
      location
    }
  })

/**
 * Starts dockerd and waits until it is ready.
 *
 * @since 0.1.0
 * @category starting
 */
export const start: (
  config: DockerdConfig.DockerdConfig | DockerdConfig.DockerdConfigInput,
  policy?: ReadinessPolicy,
  options?: StartOptions
) => Effect.Effect<DockerDaemon, StartError, ProcessManager | Scope.Scope> = Effect.fn(
  "Dockerd.start",
  {
    // A failed start is reported by its typed error; the span's call-site
    // stack would be formatted on the way from a crash to that error.
    captureStackTrace: false
  }
)(function* (input, policy = fast, options = {}) {
  const config =
    input instanceof DockerdConfig.DockerdConfig ? input : yield* DockerdConfig.decode(input)
  const location = options.location ?? "local"
  const emit: EventSink = options.onEvent ?? (() => Effect.void)
  const started = yield* Clock.currentTimeMillis
  const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)

  // Where the daemon keeps its things, by its flags and its config file:
  // what the preflight checks, the stop cleans and the probes look at.
  const settings = location === "local" ? yield* DockerdSettings.resolve(config) : undefined
  if (settings !== undefined) {
    yield* Preflight.run(config, settings)
    // dockerd creates its data-root, exec-root and pidfile directory, but
    // not the socket's directory.
    const socketDir = Path.dirname(config.socket)
    yield* Effect.tryPromise({
      try: () => mkdir(socketDir, { recursive: true, mode: 0o755 }),
      catch: (error) =>
        new DirectoryNotWritable({
          field: "socket directory",
          path: socketDir,
          reason: (error as NodeJS.ErrnoException).code ?? String(error)
        })
    })
    yield* emit(DaemonEvent.Preflight({ elapsedMs: yield* elapsed }))
  }

  // Mounts already there (a disk at the data-root) are never undone by the stop.
  const local: LocalGround | undefined =
    settings === undefined ? undefined : { settings, premounted: yield* mountIdsOf(settings) }
  const manager = yield* ProcessManager
  const argv = DockerdConfig.argv(config)
  // What is shown of the argv (events, logs): never a secret of its env.
  const shownArgv = redactArgv(argv, secretsOf(Object.values(config.env)))
  const execOptions = { env: config.env, killGrace: config.stopGrace, tailLines: 200 }
  const handle = yield* manager.exec(argv, execOptions).pipe(
    Effect.catchTag("BinaryNotFound", (error) =>
      Effect.fail(
        new DockerNotInstalled({
          binary: error.binary,
          searched: error.searched,
          hint: location === "local" ? Preflight.INSTALL_HINT : REMOTE_INSTALL_HINT
        })
      )
    )
  )
  yield* Effect.addFinalizer(() => stop(handle, config, local, emit))

  yield* Effect.annotateLogsScoped({ pid: handle.pid, socket: config.socket })
  yield* Effect.logInfo("dockerd started; waiting until it is ready").pipe(
    Effect.annotateLogs({ argv: shownArgv.join(" "), policy: policy.name })
  )
  yield* emit(DaemonEvent.Spawned({ pid: handle.pid, argv: shownArgv, elapsedMs: yield* elapsed }))

  const daemon = yield* awaitReady(handle, config, location, policy, emit, settings)
  if (location === "local") yield* applySocketMode(config)
  yield* emit(
    DaemonEvent.Ready({
      pid: handle.pid,
      socket: config.socket,
      elapsedMs: yield* elapsed,
      attempts: daemon.report.attempts,
      serverVersion: daemon.serverVersion,
      apiVersion: daemon.apiVersion,
      storageDriver: daemon.storageDriver,
      restarts: options.restarts ?? 0
    })
  )
  return daemon
})

/**
 * The default grace between SIGTERM and SIGKILL when a daemon is stopped.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_STOP_GRACE: Duration.Duration = Duration.seconds(10)
