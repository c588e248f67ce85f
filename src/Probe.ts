/**
 * A probe is a named check with its own timeout. Probes compose: `all` runs
 * several in order and stops at the first failure, `firstOf` takes the first
 * that succeeds. Every failure says which kind it was: not yet, timed out, or
 * failed with a reason.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "node:path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ContainerdClient, ContainerdError } from "./Containerd.js"
import type { DockerEngineClient, EngineError } from "./DockerEngine.js"
import { ProbeFailed, type ProbeFailure, ProbeNotYet, ProbeTimedOut } from "./errors.js"
import { ProcessManager } from "./ProcessManager.js"
import { describe as describeStatus } from "./ProcessStatus.js"

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
   * Moments the check may have turned from failing to passing (the socket
   * file appeared), so the readiness loop can try again at once instead of
   * at its next turn. Ends when it can no longer tell; absent when the check
   * cannot tell at all.
   */
  readonly wakeups: Stream.Stream<void> | undefined
}

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
 * One check that answered: its name, how long it took, what it answered.
 *
 * @since 0.1.0
 * @category models
 */
export class ProbeSucceeded extends Schema.TaggedClass<ProbeSucceeded>()("ProbeSucceeded", {
  probe: Schema.String,
  elapsedMs: Schema.Number,
  value: Schema.Unknown
}) {}

/**
 * The outcome of one check: its success or why it failed.
 *
 * @since 0.1.0
 * @category models
 */
export type ProbeOutcome = ProbeSucceeded | ProbeFailure

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
    readonly wakeups?: Stream.Stream<void> | undefined
  } = {}
): Check => ({
  _tag: "Check",
  name,
  timeout: Option.map(Option.fromNullable(options.timeout), Duration.decode),
  run,
  startsProcess: options.startsProcess ?? false,
  wakeups: options.wakeups
})

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

/** How a file that is not a socket is named in a failure. */
const KIND: Record<FileSystem.File.Type, string> = {
  File: "file",
  Directory: "directory",
  SymbolicLink: "symbolic link",
  BlockDevice: "block device",
  CharacterDevice: "character device",
  FIFO: "FIFO",
  Socket: "socket",
  Unknown: "file"
}

/**
 * The path exists and is a unix socket. Its wake-ups are the changes to that
 * name in its directory (one watch of the directory), so the readiness loop
 * tries again the moment the daemon creates its socket. The watch ends, and
 * only the loop's spacing finds the socket, when the directory cannot be
 * watched (it does not exist, or the watch limit is reached).
 *
 * @since 0.1.0
 * @category constructors
 */
export const socketFile = (
  path: string,
  options: ProbeOptions = {}
): Effect.Effect<Check, never, FileSystem.FileSystem> =>
  Effect.map(FileSystem.FileSystem, (fs) => {
    const name = options.name ?? "socket"
    const run = Effect.matchEffect(fs.stat(path), {
      onFailure: (error): Effect.Effect<never, ProbeFailure> => {
        if (error._tag === "SystemError" && error.reason === "NotFound") {
          return Effect.fail(new ProbeNotYet({ probe: name, reason: `no socket at ${path}` }, true))
        }
        const code =
          error._tag === "SystemError"
            ? ((error.cause as { code?: unknown } | undefined)?.code ?? error.reason)
            : error._tag
        return Effect.fail(
          new ProbeFailed({ probe: name, reason: `cannot stat ${path}: ${String(code)}` })
        )
      },
      onSuccess: (info) =>
        info.type === "Socket"
          ? Effect.succeed(path)
          : Effect.fail(
              new ProbeFailed({
                probe: name,
                reason: `${path} is a ${KIND[info.type]}, not a socket`
              })
            )
    })
    // Node's watcher names the entry relative to the directory; the
    // basename also matches a watch backend that reports full paths.
    const base = Path.basename(path)
    const wakeups = fs.watch(Path.dirname(path)).pipe(
      Stream.filter((event) => Path.basename(event.path) === base),
      Stream.as(undefined),
      // A watch that cannot start throws inside the platform's watcher (a
      // defect, not a failure): either way it only ends the wake-ups.
      Stream.catchAllCause(() => Stream.empty)
    )
    return make(name, run, { timeout: options.timeout, wakeups })
  })

/** An Engine request's error as a probe's: unreachable is "not yet". */
const engineFailure =
  (name: string) =>
  (error: EngineError): ProbeFailure =>
    error._tag === "EngineUnreachable"
      ? new ProbeNotYet({ probe: name, reason: `${error.code} on ${error.socket}` }, true)
      : new ProbeFailed({ probe: name, reason: error.reason }, true)

/**
 * Docker Engine `GET /_ping` answers `OK`. Sent to a socket dockerd listens
 * on but does not serve yet, the request is held and answered the moment it
 * serves.
 *
 * @since 0.1.0
 * @category constructors
 */
export const enginePing = (client: DockerEngineClient, options: ProbeOptions = {}): Check => {
  const name = options.name ?? "ping"
  return make(name, Effect.mapError(client.ping, engineFailure(name)), { timeout: options.timeout })
}

/**
 * Docker Engine `GET /info` answers and decodes. `/_ping` can be OK while
 * `/info` hangs (containerd gone), so this is the stronger check.
 *
 * @since 0.1.0
 * @category constructors
 */
export const engineInfo = (client: DockerEngineClient, options: ProbeOptions = {}): Check => {
  const name = options.name ?? "info"
  return make(name, Effect.mapError(client.info, engineFailure(name)), { timeout: options.timeout })
}

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

/** A containerd call's error as a probe's: unreachable is "not yet". */
const containerdFailure =
  (name: string) =>
  (error: ContainerdError): ProbeFailure =>
    error._tag === "ContainerdUnreachable"
      ? new ProbeNotYet({ probe: name, reason: `${error.code} on ${error.address}` }, true)
      : new ProbeFailed({ probe: name, reason: error.reason }, true)

/**
 * containerd's version service answers: what dockerd's `/info` proves
 * about containerd (it asks the same question), without dockerd's own work
 * around it. Put it after `enginePing`: dockerd answers only once it is
 * connected to its containerd, which this then shows still serves. Succeeds
 * with the `ContainerdVersion`, or with the Engine's `InfoAnswer` when it
 * fell back.
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
  const run =
    fallback === undefined
      ? Effect.mapError(client.version, failure)
      : Effect.catchAll(client.version, (error): Effect.Effect<unknown, ProbeFailure> =>
          error._tag === "ContainerdUnreachable"
            ? Effect.mapError(fallback.info, engineFailure(name))
            : Effect.fail(failure(error))
        )
  return make(name, run, { timeout: options.timeout })
}

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
        return yield* Effect.fail(
          NOT_YET_OUTPUT.test(said)
            ? new ProbeNotYet({ probe: name, reason: said })
            : new ProbeFailed({
                probe: name,
                reason: `${describeStatus(status)}${said ? `: ${said}` : ""}`
              })
        )
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
  /**
   * Runs with the outcome of every check that ran, before the run goes on
   * (so events stay in order).
   */
  readonly onOutcome?: ((outcome: ProbeOutcome) => Effect.Effect<void>) | undefined
}

/**
 * Runs one check under its timeout and reports its outcome. A defect of the
 * check ends the run as it is, unreported.
 */
const runCheck = (
  check: Check,
  options: RunOptions
): Effect.Effect<ProbeSucceeded, ProbeFailure> => {
  const timeout = Option.getOrElse(check.timeout, () => options.timeoutFor(check.name))
  const report = options.onOutcome ?? (() => Effect.void)
  // (Milliseconds, not `Effect.timed`'s nanoseconds: a policy's spacing
  // puts the test clock at fractions of a millisecond, which TestClock
  // cannot turn into nanoseconds.)
  return Effect.flatMap(Clock.currentTimeMillis, (started) =>
    check.run.pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new ProbeTimedOut({ probe: check.name, timeoutMs: Duration.toMillis(timeout) }, true)
      }),
      Effect.either,
      Effect.withSpan("Probe.check", { attributes: { probe: check.name } }),
      Effect.flatMap((result) =>
        Either.match(result, {
          onLeft: (failure) => Effect.zipRight(report(failure), Effect.fail(failure)),
          onRight: (value) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => {
              const success = new ProbeSucceeded(
                {
                  probe: check.name,
                  elapsedMs: now - started,
                  value
                },
                true
              )
              return Effect.as(report(success), success)
            })
        })
      )
    )
  )
}

/**
 * Runs a probe once, each check under its own timeout: `All` in order up to
 * the first failure, `FirstOf` up to the first success (a `FirstOf` of no
 * probes is a defect). Succeeds with the successes of the checks that
 * decided the outcome; fails with the failure that decided it.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  probe: Probe,
  options: RunOptions
): Effect.Effect<ReadonlyArray<ProbeSucceeded>, ProbeFailure> => {
  switch (probe._tag) {
    case "Check":
      return Effect.map(runCheck(probe, options), (success) => [success])
    case "All":
      return Effect.map(
        Effect.forEach(probe.probes, (one) => run(one, options)),
        (successes) => successes.flat()
      )
    case "FirstOf":
      return probe.probes.length === 0
        ? Effect.dieMessage("Probe.firstOf of no probes")
        : Effect.firstSuccessOf(probe.probes.map((one) => run(one, options)))
  }
}
