/**
 * A probe is a named check with its own timeout. Probes compose: `all` runs
 * several in order and stops at the first failure, `firstOf` takes the first
 * that succeeds. Every failure says which kind it was: not yet, timed out, or
 * failed with a reason.
 *
 * @since 0.1.0
 */
import { stat, watch } from "node:fs"
import * as Path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Driver from "./internal/driver.js"
import type { ProbeSucceeded } from "./internal/probeSucceeded.js"
import { runProbe } from "./internal/runProbe.js"
import { stackless } from "./internal/stackless.js"
import type { ContainerdClient, ContainerdError } from "./Containerd.js"
import type { DockerEngineClient, EngineError } from "./DockerEngine.js"
import { ProbeFailed, type ProbeFailure, ProbeNotYet } from "./errors.js"
import { ProcessManager } from "./ProcessManager.js"
import { describe as describeStatus } from "./ProcessStatus.js"

/**
 * One probe that answered.
 *
 * @since 0.1.0
 * @category models
 */
export { ProbeSucceeded } from "./internal/probeSucceeded.js"

/**
 * The last result of one probe: its success or why it failed.
 *
 * @since 0.1.0
 * @category models
 */
export type ProbeOutcome = ProbeSucceeded | ProbeFailure

/**
 * A single check.
 *
 * @since 0.1.0
 * @category models
 */
export interface Check {
  readonly _tag: "Check"
  readonly name: string
  /** Its own timeout; when absent the policy's probe timeout applies. */
  readonly timeout: Option.Option<Duration.Duration>
  readonly run: Effect.Effect<unknown, ProbeFailure>
  /**
   * Whether each run starts a process (a command probe): the readiness loop
   * then spaces attempts by the policy's `commandRetry`.
   */
  readonly startsProcess: boolean
  /**
   * Watches for the moment the check may turn from failing to passing (the
   * socket file was created), so the readiness loop can try again at once
   * instead of at its next turn. Absent when the check cannot tell.
   */
  readonly watch: Watch | undefined
  /**
   * The same check as plain callbacks, when it has that form (the built-in
   * socket and Engine checks do): loops that watch many daemons run it
   * without a fiber per run. `run` is always there and means the same.
   */
  readonly unsafeRun: CheckCallback | undefined
}

/**
 * A check as plain callbacks: starts it, calls `done` once with its result
 * (unless cancelled first), and returns the function that cancels it.
 *
 * @since 0.1.0
 * @category models
 */
export type CheckCallback = (
  done: (result: Either.Either<unknown, ProbeFailure>) => void
) => () => void

/**
 * Starts watching and returns the function that stops it: `changed` each
 * time the check may have turned from failing to passing, `ended` once if
 * the watch stops (or could not start, possibly before this returns; a
 * watch that throws is taken as one that could not start): from then on
 * only the loop's spacing finds the change. Plain callbacks, not a
 * Stream or a scoped Effect: a readiness wait for each of many daemons
 * registers one, and a Stream's machinery (or a scope) per wait costs
 * kilobytes and fibers.
 *
 * @since 0.1.0
 * @category models
 */
export type Watch = (changed: () => void, ended: () => void) => () => void

/**
 * Several probes in order; the first failure ends the attempt.
 *
 * @since 0.1.0
 * @category models
 */
export interface All {
  readonly _tag: "All"
  readonly probes: ReadonlyArray<Probe>
}

/**
 * Several probes in order; the first success ends the attempt.
 *
 * @since 0.1.0
 * @category models
 */
export interface FirstOf {
  readonly _tag: "FirstOf"
  readonly probes: ReadonlyArray<Probe>
}

/**
 * A probe: a check or a composition of probes.
 *
 * @since 0.1.0
 * @category models
 */
export type Probe = Check | All | FirstOf

/**
 * Options shared by the probe constructors.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProbeOptions {
  /** The probe's name in reports, logs and events. */
  readonly name?: string | undefined
  /** The probe's own timeout, overriding the policy's. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * A probe from any effect. Its failure must say which kind it is.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  name: string,
  run: Effect.Effect<unknown, ProbeFailure>,
  options: {
    readonly timeout?: Duration.DurationInput | undefined
    readonly startsProcess?: boolean | undefined
    readonly watch?: Watch | undefined
  } = {}
): Check => ({
  _tag: "Check",
  name,
  timeout: Option.map(Option.fromNullable(options.timeout), Duration.decode),
  run,
  startsProcess: options.startsProcess ?? false,
  watch: options.watch,
  unsafeRun: undefined
})

/**
 * A probe from plain callbacks (see {@link CheckCallback}). Its `run` is the
 * same callbacks as an Effect; loops that watch many daemons call the
 * callbacks directly.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromCallback = (
  name: string,
  callback: CheckCallback,
  options: {
    readonly timeout?: Duration.DurationInput | undefined
    readonly watch?: Watch | undefined
  } = {}
): Check => ({
  ...make(
    name,
    Effect.async<unknown, ProbeFailure>((resume) => Effect.sync(callback(resume))),
    options
  ),
  unsafeRun: callback
})

/**
 * The directory watches in use, one per directory however many paths in it
 * are watched: each `fs.watch` is an inotify watch and an FSWatcher of its
 * own, so a process waiting on many sockets in one directory shares one.
 */
const directoryWatches = new Map<
  string,
  { readonly watcher: ReturnType<typeof watch>; readonly listeners: Set<DirectoryListener> }
>()

interface DirectoryListener {
  readonly base: string
  readonly changed: () => void
  readonly ended: () => void
}

/** Adds `listener` to its directory's watch; returns how to remove it. */
const listenToDirectory = (dir: string, listener: DirectoryListener): (() => void) => {
  let entry = directoryWatches.get(dir)
  if (entry === undefined) {
    const listeners = new Set<DirectoryListener>()
    const watcher = watch(dir, { persistent: false }, (_event, name) => {
      for (const one of listeners) if (name === null || name === one.base) one.changed()
    })
    watcher.on("error", () => {
      directoryWatches.delete(dir)
      watcher.close()
      for (const one of [...listeners]) one.ended()
      listeners.clear()
    })
    entry = { watcher, listeners }
    directoryWatches.set(dir, entry)
  }
  const { listeners, watcher } = entry
  listeners.add(listener)
  return () => {
    listeners.delete(listener)
    if (listeners.size === 0 && directoryWatches.get(dir)?.watcher === watcher) {
      directoryWatches.delete(dir)
      watcher.close()
    }
  }
}

/**
 * A {@link Watch} on the entry named like `path` in its directory: `changed`
 * each time it is created, renamed or removed (inotify on Linux, through
 * `fs.watch`; one watch per directory, shared however many paths in it are
 * watched). `ended` at once when the directory cannot be watched (it does
 * not exist, or the watch limit is reached).
 *
 * @since 0.1.0
 * @category constructors
 */
export const watchFile =
  (path: string): Watch =>
  (changed, ended) => {
    try {
      return listenToDirectory(Path.dirname(path), {
        base: Path.basename(path),
        changed,
        ended
      })
    } catch {
      ended()
      return () => {}
    }
  }

/**
 * All of `probes`, in order.
 *
 * @since 0.1.0
 * @category combinators
 */
export const all = (probes: ReadonlyArray<Probe>): All => ({ _tag: "All", probes })

/**
 * The first of `probes` that succeeds.
 *
 * @since 0.1.0
 * @category combinators
 */
export const firstOf = (probes: ReadonlyArray<Probe>): FirstOf => ({ _tag: "FirstOf", probes })

/**
 * The path exists and is a unix socket. Wakes the readiness loop when the
 * file appears (it watches the directory).
 *
 * @since 0.1.0
 * @category constructors
 */
export const socketFile = (path: string, options: ProbeOptions = {}): Check => {
  const name = options.name ?? "socket"
  return fromCallback(
    name,
    // The callback form of stat: cheaper than the promise one on a path
    // polled for every daemon waited for.
    (done) => {
      let cancelled = false
      stat(path, (error, info) => {
        if (cancelled) return
        if (error !== null) {
          done(
            Either.left(
              stackless(() =>
                error.code === "ENOENT"
                  ? new ProbeNotYet({ probe: name, reason: `no socket at ${path}` }, true)
                  : new ProbeFailed(
                      { probe: name, reason: `cannot stat ${path}: ${error.code ?? "unknown"}` },
                      true
                    )
              )
            )
          )
        } else if (info.isSocket()) done(Either.right(path))
        else {
          const kind = info.isDirectory() ? "directory" : "file"
          done(
            Either.left(
              stackless(
                () =>
                  new ProbeFailed(
                    { probe: name, reason: `${path} is a ${kind}, not a socket` },
                    true
                  )
              )
            )
          )
        }
      })
      return () => {
        cancelled = true
      }
    },
    { timeout: options.timeout, watch: watchFile(path) }
  )
}

/** An Engine request's error as a probe's: unreachable is "not yet". */
const engineFailure =
  (name: string) =>
  (error: EngineError): ProbeFailure =>
    stackless(() =>
      error._tag === "EngineUnreachable"
        ? new ProbeNotYet({ probe: name, reason: `${error.code} on ${error.socket}` }, true)
        : new ProbeFailed({ probe: name, reason: error.reason }, true)
    )

/** A check from an Engine request in callback form. */
const fromEngine = (
  name: string,
  request: (done: (result: Either.Either<unknown, EngineError>) => void) => () => void,
  options: ProbeOptions
): Check => {
  const failure = engineFailure(name)
  return fromCallback(name, (done) => request((result) => done(Either.mapLeft(result, failure))), {
    timeout: options.timeout
  })
}

/**
 * Docker Engine `GET /_ping` answers `OK`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const enginePing = (client: DockerEngineClient, options: ProbeOptions = {}): Check =>
  fromEngine(options.name ?? "ping", client.unsafePing, options)

/**
 * Docker Engine `GET /info` answers and decodes. `/_ping` can be OK while
 * `/info` hangs (containerd gone), so this is the stronger check.
 *
 * @since 0.1.0
 * @category constructors
 */
export const engineInfo = (client: DockerEngineClient, options: ProbeOptions = {}): Check =>
  fromEngine(options.name ?? "info", client.unsafeInfo, options)

/**
 * Options of {@link containerdVersion}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ContainerdProbeOptions extends ProbeOptions {
  /**
   * Where to ask when nobody serves at the client's address (no socket,
   * connection refused): this Engine's `/info`, which reaches whichever
   * containerd dockerd uses. For an address worked out from dockerd's rules
   * rather than known.
   */
  readonly fallback?: DockerEngineClient | undefined
}

/**
 * containerd's version service answers: what dockerd's `/info` proves
 * about containerd (it asks the same question), without the ~10-100 ms of
 * dockerd's own work around it. Put it after `enginePing`: dockerd answers
 * only once it is connected to its containerd, which this then shows still
 * serves. Succeeds with the `ContainerdVersion`, or with the Engine's
 * `InfoAnswer` when it fell back.
 *
 * @since 0.1.0
 * @category constructors
 */
export const containerdVersion = (
  client: ContainerdClient,
  options: ContainerdProbeOptions = {}
): Check => {
  const name = options.name ?? "containerd"
  const failure = containerdFailure(name)
  const fallback = options.fallback
  if (fallback === undefined) {
    return fromCallback(
      name,
      (done) => client.unsafeVersion((result) => done(Either.mapLeft(result, failure))),
      { timeout: options.timeout }
    )
  }
  const fallbackFailure = engineFailure(name)
  return fromCallback(
    name,
    (done) => {
      let cancel = client.unsafeVersion((result) => {
        if (Either.isLeft(result) && result.left._tag === "ContainerdUnreachable") {
          cancel = fallback.unsafeInfo((info) => done(Either.mapLeft(info, fallbackFailure)))
        } else done(Either.mapLeft(result, failure))
      })
      return () => cancel()
    },
    { timeout: options.timeout }
  )
}

/** A containerd call's error as a probe's: unreachable is "not yet". */
const containerdFailure =
  (name: string) =>
  (error: ContainerdError): ProbeFailure =>
    stackless(() =>
      error._tag === "ContainerdUnreachable"
        ? new ProbeNotYet({ probe: name, reason: `${error.code} on ${error.address}` }, true)
        : new ProbeFailed({ probe: name, reason: error.reason }, true)
    )

/**
 * Output that means "the daemon is not listening (yet)" when a Docker client
 * says it. Debian's docker CLI 20.10, asked for `docker info --format`
 * while it cannot connect, prints only a template error about the missing
 * `Info` (seen inside sandboxes while dockerd starts).
 */
const NOT_YET_OUTPUT =
  /Cannot connect to the Docker daemon|connection refused|no such file or directory|nil pointer to embedded struct field Info/i

/**
 * Options of {@link command}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommandProbeOptions extends ProbeOptions {
  readonly cwd?: string | undefined
  /** Extra environment; `Redacted` values are secrets (see `ExecOptions.env`). */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
  /** Grace between SIGTERM and SIGKILL when the probe times out. Default 100ms. */
  readonly killGrace?: Duration.DurationInput | undefined
}

/**
 * A command run through the ProcessManager (for example `docker info` in a
 * sandbox) that must exit 0; it succeeds with the command's last output
 * lines. When the probe times out, its process is killed: never left behind.
 *
 * @since 0.1.0
 * @category constructors
 */
export const command = (
  argv: readonly [string, ...Array<string>],
  options: CommandProbeOptions = {}
): Effect.Effect<Check, never, ProcessManager> =>
  Effect.map(ProcessManager, (manager) => {
    const name = options.name ?? argv.join(" ")
    const run = Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* manager
          .exec(argv, {
            cwd: options.cwd,
            env: options.env,
            killGrace: options.killGrace ?? "100 millis",
            tailLines: 20
          })
          .pipe(
            Effect.mapError(
              (error) =>
                new ProbeFailed({
                  probe: name,
                  reason: error.message
                })
            )
          )
        const status = yield* handle.awaitExit
        const tail = yield* handle.logTail
        if (status._tag === "Exited" && status.code === 0) return tail.join("\n")
        const said = tail.slice(-3).join(" | ")
        return yield* NOT_YET_OUTPUT.test(said)
          ? new ProbeNotYet({ probe: name, reason: said })
          : new ProbeFailed({
              probe: name,
              reason: `${describeStatus(status)}${said ? `: ${said}` : ""}`
            })
      })
    )
    return make(name, run, { timeout: options.timeout, startsProcess: true })
  })

/**
 * The names of the checks in a probe, in order.
 *
 * @since 0.1.0
 * @category getters
 */
export const names = (probe: Probe): ReadonlyArray<string> =>
  probe._tag === "Check" ? [probe.name] : probe.probes.flatMap(names)

/**
 * The checks in a probe, in order.
 *
 * @since 0.1.0
 * @category getters
 */
export const checks = (probe: Probe): ReadonlyArray<Check> =>
  probe._tag === "Check" ? [probe] : probe.probes.flatMap(checks)

/**
 * How {@link run} times and reports each check.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** The timeout of a check without its own, by the check's name. */
  readonly timeoutFor: (name: string) => Duration.Duration
  /** Called with the outcome of every check that ran. */
  readonly onOutcome?: ((outcome: ProbeOutcome) => Effect.Effect<void>) | undefined
}

/**
 * Runs a probe once, each check under its own timeout. Succeeds with the
 * successes of the checks that decided the outcome; fails with the failure
 * that decided it.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  probe: Probe,
  options: RunOptions
): Effect.Effect<ReadonlyArray<ProbeSucceeded>, ProbeFailure> =>
  // The same runner as the readiness and liveness loops use, so the two
  // forms cannot drift apart: on the calling fiber's clock and runtime,
  // everything it started stopped when it ends or is interrupted.
  Effect.flatMap(Driver.make, (driver) =>
    Effect.async<ReadonlyArray<ProbeSucceeded>, ProbeFailure>((resume) =>
      Effect.sync(runProbe(probe, driver, options, resume))
    ).pipe(Effect.ensuring(driver.shutdown))
  )
