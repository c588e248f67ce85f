/**
 * Start a real dockerd and know the moment it is ready.
 *
 * `start` is scoped: preflight, spawn through the ProcessManager, wait with
 * probes (for a daemon on this machine, the `DockerHost`'s: socket, `/_ping`,
 * containerd; `docker info` through the ProcessManager for a remote one),
 * and return a handle. Closing the scope stops the daemon: SIGTERM, a grace,
 * SIGKILL; then (locally) its containerd and shims are waited for (or
 * killed), and its pidfile, socket and mounts are removed. A start that
 * fails stops what it started before it returns its error.
 *
 * `layer` makes a daemon a service (`Docker`): started when the layer is
 * built, supervised while it lives, stopped with it.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import { format, NodeInspectSymbol } from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { DaemonEvent, type EventSink } from "./DaemonEvent.js"
import * as DockerdConfig from "./DockerdConfig.js"
import * as DockerEngine from "./DockerEngine.js"
import * as DockerHost from "./DockerHost.js"
import { diagnose } from "./Diagnosis.js"
import {
  DaemonAlreadyRunning,
  DaemonCrashed,
  DaemonNotReady,
  DockerNotInstalled,
  type ExitedBeforeReady,
  type NotReadyByDeadline,
  type StartError
} from "./errors.js"
import * as LocalProcessManager from "./LocalProcessManager.js"
import * as Preflight from "./Preflight.js"
import * as Probe from "./Probe.js"
import { type ProcessHandle, ProcessManager } from "./ProcessManager.js"
import type { ExitStatus } from "./ProcessStatus.js"
import { ReadinessEvent, type ReadinessReport, waitUntilReady } from "./Readiness.js"
import { redactArgv, secretsOf } from "./Redaction.js"
import { fast, type ReadinessPolicy } from "./ReadinessPolicy.js"
import * as Supervisor from "./Supervisor.js"

/**
 * The `Docker` service: a ready daemon, as {@link layer} provides it.
 *
 * @since 0.1.0
 * @category tags
 */
export class Docker extends Context.Tag("sandbox-docker/Docker")<Docker, DockerDaemon>() {}

/**
 * A ready daemon. Valid while the scope it was started in is open. The
 * daemons `start` returns print small (`toJSON`, `util.inspect`): pid,
 * socket, versions, time to ready, location.
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
 * What a daemon prints as: the handle, the configuration and the report
 * stay out (a test runner pretty-printing them would walk fibers and
 * streams).
 */
const DaemonProto = {
  toJSON(this: DockerDaemon) {
    return {
      _id: "DockerDaemon",
      pid: this.pid,
      socket: this.socket,
      serverVersion: this.serverVersion,
      apiVersion: this.apiVersion,
      storageDriver: this.storageDriver,
      timeToReadyMs: this.timeToReadyMs,
      location: this.location
    }
  },
  toString(this: DockerDaemon & { toJSON(): unknown }) {
    return format(this.toJSON())
  },
  [NodeInspectSymbol](this: DockerDaemon & { toJSON(): unknown }) {
    return this.toJSON()
  }
}

/**
 * A daemon from its fields, printing small (see {@link DockerDaemon}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDaemon = (fields: DockerDaemon): DockerDaemon =>
  Object.assign(Object.create(DaemonProto) as DockerDaemon, fields)

/**
 * Where the daemon runs relative to this process.
 *
 * - `local`: on this machine, as the `DockerHost` service sees it: preflight
 *   checks run, the socket is probed directly and leftovers are cleaned.
 * - `remote`: behind the ProcessManager (a sandbox); probes are `docker`
 *   commands run through it, and the `DockerHost` is not consulted.
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
  /**
   * The readiness and liveness probes, in place of the location's: for a
   * remote daemon whose socket this machine reaches (a sandbox's, in a
   * bind-mounted directory), so no probe starts a process inside.
   */
  readonly probes?: DockerHost.DaemonProbes | undefined
  /**
   * A dockerd already running for these paths (by the pidfile, or its
   * command line naming the socket, data-root or exec-root: one a killed
   * supervisor left) is stopped first (SIGTERM, `stopGrace`, SIGKILL, what
   * it left), instead of failing with `DaemonAlreadyRunning`. A pidfile
   * holding any other live process is still `PidfileInUse`, and untouched.
   */
  readonly replace?: boolean | undefined
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

/** The machine of a local daemon, and what it prepared there. */
interface Local {
  readonly host: DockerHost.DockerHostShape
  readonly ground: DockerHost.Ground
}

/**
 * Stops a daemon: SIGTERM, up to `grace`, SIGKILL; then (locally) waits for
 * its containerd and shims to be gone and removes its pidfile and socket.
 */
const stop = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  local: Local | undefined,
  emit: EventSink
) =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    // Its containerd, read before dockerd stops (a graceful stop removes
    // the pidfile). A SIGKILLed daemon's containerd stays a zombie for a
    // while, which no command line names any more, and a restart on the
    // same exec-root must wait for it. Read now rather than at ready: a
    // containerd dockerd restarted meanwhile has a new pid.
    const containerd =
      local === undefined ? undefined : yield* local.host.containerdPid(local.ground)
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
        // The `Stopped` event's status says SIGKILL too.
        yield* Effect.logDebug("dockerd ignored SIGTERM; sending SIGKILL")
        yield* handle.signal("SIGKILL")
      }
      status = yield* handle.awaitExit.pipe(
        Effect.interruptible,
        Effect.timeout("10 seconds"),
        Effect.orDie
      )
    }
    if (local !== undefined) {
      yield* local.host.cleanUp(config, local.ground, handle.pid, containerd)
    }
    const elapsedMs = (yield* Clock.currentTimeMillis) - started
    yield* Effect.logDebug("dockerd stopped").pipe(Effect.annotateLogs({ elapsedMs }))
    yield* emit(DaemonEvent.Stopped({ pid: handle.pid, status, elapsedMs }))
  }).pipe(Effect.annotateLogs({ pid: handle.pid, socket: config.socket }), Effect.ignore)

/**
 * The readiness probe and the liveness probe of a remote daemon: `docker
 * info` and `docker version` run through the ProcessManager.
 *
 * @since 0.1.0
 * @category probes
 */
export const remoteProbes = (
  config: DockerdConfig.DockerdConfig
): Effect.Effect<DockerHost.DaemonProbes, never, ProcessManager> =>
  Effect.gen(function* () {
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
  // Probed over the socket (a local daemon, or a remote one whose socket is
  // reachable here): the same reading as a local daemon's.
  if (location === "local" || report.resultOf("docker info") === undefined) {
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

/** Waits with `probes`; the ready daemon, or the daemon-level error. */
const awaitWith = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  location: Location,
  policy: ReadinessPolicy,
  emit: EventSink,
  probes: DockerHost.DaemonProbes,
  local: Local | undefined
): Effect.Effect<DockerDaemon, StartError> =>
  Effect.gen(function* () {
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
    const versions = versionsOf(report, location, yield* handle.logTail)
    if (local !== undefined && versions.storageDriver === "unknown") {
      versions.storageDriver = yield* local.host.storageDriver(local.ground)
    }
    return makeDaemon({
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
    })
  })

/**
 * Waits until the dockerd of `handle` is ready, with the probes for its
 * location (the `DockerHost`'s for `local`, {@link remoteProbes} for
 * `remote`): each probe's result goes to `emit` as a `DaemonEvent.Probe`, a
 * failed wait is a {@link StartError}. Succeeds with the ready daemon. For
 * callers that started dockerd some other way; {@link start} does both.
 *
 * @since 0.1.0
 * @category waiting
 */
export const awaitReady = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  location: Location,
  policy: ReadinessPolicy,
  emit: EventSink = () => Effect.void
): Effect.Effect<DockerDaemon, StartError, ProcessManager | DockerHost.DockerHost | Scope.Scope> =>
  location === "remote"
    ? awaitRemoteReady(handle, config, policy, emit)
    : Effect.gen(function* () {
        const host = yield* DockerHost.DockerHost
        // Started elsewhere: no preflight (its pidfile and socket are in use now).
        const local: Local = {
          host,
          ground: { settings: yield* host.settings(config), premounted: new Set() }
        }
        const probes = yield* host.probes(config, local.ground)
        return yield* awaitWith(handle, config, location, policy, emit, probes, local)
      })

/**
 * {@link awaitReady} for a `remote` daemon: `docker info` through the
 * ProcessManager, no `DockerHost`.
 *
 * @since 0.1.0
 * @category waiting
 */
export const awaitRemoteReady = (
  handle: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  policy: ReadinessPolicy,
  emit: EventSink = () => Effect.void
): Effect.Effect<DockerDaemon, StartError, ProcessManager> =>
  Effect.flatMap(remoteProbes(config), (probes) =>
    awaitWith(handle, config, "remote", policy, emit, probes, undefined)
  )

/**
 * Spawns dockerd and waits until it is ready, everything it opens in the
 * scope in the context (the caller's or the start's own).
 */
const startIn = (
  config: DockerdConfig.DockerdConfig,
  policy: ReadinessPolicy,
  options: StartOptions
): Effect.Effect<DockerDaemon, StartError, ProcessManager | DockerHost.DockerHost | Scope.Scope> =>
  Effect.gen(function* () {
    const location = options.location ?? "local"
    const emit: EventSink = options.onEvent ?? (() => Effect.void)
    const started = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)

    let local: Local | undefined
    if (location === "local") {
      const host = yield* DockerHost.DockerHost
      // Where the daemon keeps its things, by its flags and its config file:
      // what the preflight checks, the stop cleans and the probes look at.
      const settings = yield* host.settings(config)
      const running = yield* host.running(config, settings)
      if (running._tag === "Dockerd") {
        if (options.replace !== true) {
          return yield* new DaemonAlreadyRunning({
            pid: running.pid,
            pidfile: settings.pidfile,
            socket: config.socket,
            foundBy: running.foundBy
          })
        }
        yield* emit(DaemonEvent.Replacing({ pid: running.pid, foundBy: running.foundBy }))
        const stopped = yield* host.stopRunning(config, settings, running.pid)
        yield* Effect.logInfo("stopped the dockerd already running, to replace it").pipe(
          Effect.annotateLogs({ ...stopped })
        )
      }
      local = { host, ground: yield* host.prepare(config, settings) }
      yield* emit(DaemonEvent.Preflight({ elapsedMs: yield* elapsed }))
    }

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

    return yield* Effect.gen(function* () {
      yield* Effect.logDebug("dockerd started; waiting until it is ready").pipe(
        Effect.annotateLogs({ argv: shownArgv.join(" "), policy: policy.name })
      )
      yield* emit(
        DaemonEvent.Spawned({ pid: handle.pid, argv: shownArgv, elapsedMs: yield* elapsed })
      )
      const probes =
        options.probes ??
        (local === undefined
          ? yield* remoteProbes(config)
          : yield* local.host.probes(config, local.ground))
      const daemon = yield* awaitWith(handle, config, location, policy, emit, probes, local)
      if (local !== undefined) yield* local.host.applySocketMode(config)
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
    }).pipe(Effect.annotateLogs({ pid: handle.pid, socket: config.socket }))
  })

/**
 * Starts dockerd and waits until it is ready. The daemon is stopped when
 * the scope closes. A start that fails or is interrupted stops what it
 * started before it returns: it works in a scope of its own, which it hands
 * to the caller's only once the daemon is ready.
 *
 * @since 0.1.0
 * @category starting
 */
export const start: (
  config: DockerdConfig.DockerdConfig | DockerdConfig.DockerdConfigInput,
  policy?: ReadinessPolicy,
  options?: StartOptions
) => Effect.Effect<DockerDaemon, StartError, ProcessManager | DockerHost.DockerHost | Scope.Scope> =
  Effect.fn("Dockerd.start", {
    // A failed start is reported by its typed error; the span's call-site
    // stack would be formatted on the way from a crash to that error.
    captureStackTrace: false
  })(function* (input, policy = fast, options = {}) {
    const config =
      input instanceof DockerdConfig.DockerdConfig ? input : yield* DockerdConfig.decode(input)
    const own = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    return yield* startIn(config, policy, options).pipe(
      Scope.extend(own),
      Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(own, exit)))
    )
  })

/**
 * Options of {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface LayerOptions extends StartOptions {
  /** How liveness is checked while the layer lives. */
  readonly liveness?: Supervisor.LivenessPolicy | undefined
}

/**
 * A daemon as a service: started when the layer is built (its error is the
 * layer's), supervised while the layer lives, stopped with it. A daemon
 * that dies or turns unhealthy is logged as an error (the layer's service
 * cannot change under its users); to restart it, run `Supervisor.run`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: DockerdConfig.DockerdConfig | DockerdConfig.DockerdConfigInput,
  policy: ReadinessPolicy = fast,
  options: LayerOptions = {}
): Layer.Layer<Docker, StartError, ProcessManager | DockerHost.DockerHost> =>
  Layer.scoped(
    Docker,
    Effect.gen(function* () {
      const daemon = yield* start(config, policy, options)
      // Forked after the start: interrupted before the daemon is stopped.
      yield* Supervisor.supervise(daemon, options.liveness, {
        onEvent: options.onEvent,
        restarts: options.restarts
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logError("the Docker daemon of the layer is no longer usable").pipe(
            Effect.annotateLogs({ pid: daemon.pid, socket: daemon.socket, reason: error.message })
          )
        ),
        Effect.forkScoped
      )
      return daemon
    })
  )

/**
 * What `start` needs on this machine: the local ProcessManager and the
 * machine's `DockerHost`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode: Layer.Layer<ProcessManager | DockerHost.DockerHost> = Layer.merge(
  LocalProcessManager.layer,
  DockerHost.layer
)

/**
 * The default grace between SIGTERM and SIGKILL when a daemon is stopped.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_STOP_GRACE: Duration.Duration = Duration.seconds(10)
