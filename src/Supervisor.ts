/**
 * Supervision after ready: the liveness probe repeated on a `Schedule`,
 * raced against a fiber awaiting the daemon's exit; restarts as
 * `Effect.retry` on the restart policy's `Schedule` (backoff, at most so
 * many restarts); the daemon's state in a `SubscriptionRef`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { DurationFromInput } from "./internal/duration.js"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { DaemonEvent, type EventSink } from "./DaemonEvent.js"
import * as Dockerd from "./Dockerd.js"
import type { DockerdConfig, DockerdConfigInput } from "./DockerdConfig.js"
import {
  DaemonDied,
  DaemonUnhealthy,
  type ProbeFailure,
  type StartError,
  type SupervisionError
} from "./errors.js"
import type { ExitStatus } from "./ProcessStatus.js"
import { diagnose } from "./Diagnosis.js"
import * as Probe from "./Probe.js"
import { fast, type ReadinessPolicy } from "./ReadinessPolicy.js"

/**
 * How liveness is checked after ready.
 *
 * @since 0.1.0
 * @category models
 */
export class LivenessPolicy extends Schema.Class<LivenessPolicy>("LivenessPolicy")({
  /** Time between checks. */
  interval: DurationFromInput,
  /** Timeout of each check. */
  timeout: DurationFromInput,
  /** Failures in a row that make the daemon unhealthy. */
  failureThreshold: Schema.Int.pipe(Schema.positive())
}) {}

/**
 * Every second, 2 s per check, 3 failures in a row.
 *
 * @since 0.1.0
 * @category presets
 */
export const defaultLiveness: LivenessPolicy = new LivenessPolicy({
  interval: Duration.seconds(1),
  timeout: Duration.seconds(2),
  failureThreshold: 3
})

/**
 * What to do when the daemon dies or turns unhealthy after ready.
 *
 * @since 0.1.0
 * @category models
 */
export const RestartPolicy = Schema.Union(
  Schema.TaggedStruct("Never", {}),
  Schema.TaggedStruct("OnFailure", {
    maxRestarts: Schema.Int.pipe(Schema.nonNegative()),
    /** First delay before a restart; doubles each time, up to 30 s. */
    backoff: DurationFromInput
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export type RestartPolicy = typeof RestartPolicy.Type

/**
 * Never restart.
 *
 * @since 0.1.0
 * @category presets
 */
export const never: RestartPolicy = { _tag: "Never" }

/**
 * Restart on failure, at most `maxRestarts` times, waiting `backoff` first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const onFailure = (
  maxRestarts: number,
  backoff: Duration.DurationInput = "500 millis"
): RestartPolicy => ({ _tag: "OnFailure", maxRestarts, backoff: Duration.decode(backoff) })

/**
 * Options of {@link supervise}.
 *
 * @since 0.1.0
 * @category models
 */
export interface SuperviseOptions {
  /** Where the supervision's events go (`LivenessFailed`). */
  readonly onEvent?: EventSink | undefined
  /** How many times the daemon was restarted before: carried by its errors. */
  readonly restarts?: number | undefined
}

/**
 * Watches a ready daemon until it dies ({@link DaemonDied}) or fails
 * liveness `failureThreshold` times in a row ({@link DaemonUnhealthy}).
 * A hung daemon cannot hang this: every check has its timeout.
 *
 * @since 0.1.0
 * @category supervision
 */
export const supervise: (
  daemon: Dockerd.DockerDaemon,
  liveness?: LivenessPolicy,
  options?: SuperviseOptions
) => Effect.Effect<never, SupervisionError> = Effect.fn("Supervisor.supervise")(
  function* (daemon, liveness = defaultLiveness, options = {}) {
    const emit: EventSink = options.onEvent ?? (() => Effect.void)
    const restarts = options.restarts ?? 0
    const consecutive = yield* Ref.make(0)

    const died = (status: ExitStatus) =>
      Effect.flatMap(daemon.process.logTail, (logTail) => {
        const diagnosis = diagnose(logTail)
        return Effect.fail(
          new DaemonDied(
            {
              pid: daemon.pid,
              status,
              ...(status._tag === "Exited" ? { exitCode: status.code } : { signal: status.signal }),
              restarts,
              logTail,
              ...(diagnosis === undefined ? {} : { diagnosis })
            },
            true
          )
        )
      })

    // Counted per run of the probe, not per check: a liveness probe of
    // several checks (`/_ping`, then containerd) whose first passes and
    // second fails has failed once.
    const failed = (failure: ProbeFailure) =>
      Effect.gen(function* () {
        const reached = yield* Ref.updateAndGet(consecutive, (n) => n + 1)
        yield* Effect.logDebug("liveness check failed").pipe(
          Effect.annotateLogs({ consecutive: reached, reason: failure.message })
        )
        yield* emit(
          DaemonEvent.LivenessFailed({
            pid: daemon.pid,
            consecutive: reached,
            threshold: liveness.failureThreshold,
            reason: failure.message
          })
        )
        if (reached < liveness.failureThreshold) return
        return yield* Effect.fail(
          new DaemonUnhealthy(
            {
              pid: daemon.pid,
              consecutiveFailures: reached,
              lastFailure: failure,
              restarts,
              logTail: yield* daemon.process.logTail
            },
            true
          )
        )
      })

    const check = Probe.run(daemon.liveness, { timeoutFor: () => liveness.timeout }).pipe(
      Effect.zipRight(Ref.set(consecutive, 0)),
      Effect.catchAll(failed)
    )
    const checking = Effect.repeat(check, Schedule.spaced(liveness.interval))
    const dying = Effect.flatMap(daemon.awaitExit, died)
    return yield* Effect.raceFirst(Effect.zipRight(checking, Effect.never), dying)
  },
  (effect, daemon) =>
    Effect.annotateLogs(effect, { component: "supervisor", pid: daemon.pid, socket: daemon.socket })
)

/**
 * Where a supervised daemon is in its life.
 *
 * @since 0.1.0
 * @category models
 */
export type DaemonState = Data.TaggedEnum<{
  /** Being started (again, after `restarts` restarts). */
  Starting: { readonly restarts: number }
  /** Ready and supervised. */
  Ready: { readonly daemon: Dockerd.DockerDaemon; readonly restarts: number }
  /** Failed; started again after `delayMs`. */
  Restarting: { readonly restart: number; readonly delayMs: number; readonly reason: string }
  /** Failed with no restart left: {@link run} fails with `error`. */
  Failed: { readonly error: StartError | SupervisionError }
}>

/**
 * Constructors for {@link DaemonState}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const DaemonState = Data.taggedEnum<DaemonState>()

/**
 * Options of {@link run}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  readonly readiness?: ReadinessPolicy | undefined
  readonly liveness?: LivenessPolicy | undefined
  readonly restart?: RestartPolicy | undefined
  readonly location?: Dockerd.Location | undefined
  readonly onEvent?: EventSink | undefined
  /** Called with each daemon once it is ready (again, after a restart). */
  readonly onReady?: ((daemon: Dockerd.DockerDaemon) => Effect.Effect<void>) | undefined
  /** Kept up to date with the daemon's state; its `changes` are a Stream of them. */
  readonly state?: SubscriptionRef.SubscriptionRef<DaemonState> | undefined
  /** Probes in place of the location's (see `Dockerd.StartOptions.probes`). */
  readonly probes?: Dockerd.StartOptions["probes"]
  /**
   * Stop a dockerd already running for the same paths before the first
   * start (see `Dockerd.StartOptions.replace`).
   */
  readonly replace?: boolean | undefined
}

/**
 * What {@link run} needs besides the restart policy: what `Dockerd.start` needs.
 *
 * @since 0.1.0
 * @category models
 */
export type RunContext = Exclude<
  Effect.Effect.Context<ReturnType<typeof Dockerd.start>>,
  Scope.Scope
>

/**
 * The restart policy as a `Schedule` over the errors that end an
 * instance: `backoff` doubling up to 30 s, at most `maxRestarts` times,
 * and only while `restartable` says so.
 *
 * @since 0.1.0
 * @category supervision
 */
export const restartSchedule = <E>(
  restart: RestartPolicy,
  restartable: (error: E) => Effect.Effect<boolean>
): Schedule.Schedule<unknown, E> =>
  restart._tag === "Never"
    ? Schedule.stop
    : Schedule.exponential(restart.backoff, 2).pipe(
        Schedule.union(Schedule.spaced(MAX_RESTART_DELAY)),
        Schedule.intersect(Schedule.recurs(restart.maxRestarts)),
        Schedule.whileInputEffect(restartable)
      )

/** The longest wait before a restart. */
const MAX_RESTART_DELAY = Duration.seconds(30)

/**
 * Starts a daemon, supervises it, and restarts it as the restart policy
 * says. Runs until interrupted (then stops the daemon) or until the daemon
 * fails and no restart is left. Each instance is stopped, and its process
 * tree gone, before the next one starts. Only a daemon that was ready once
 * is restarted: a first start that fails is a problem to report.
 *
 * @since 0.1.0
 * @category supervision
 */
export const run = (
  config: DockerdConfig | DockerdConfigInput,
  options: RunOptions = {}
): Effect.Effect<never, StartError | SupervisionError, RunContext> =>
  Effect.gen(function* () {
    const restart = options.restart ?? never
    const maxRestarts = restart._tag === "OnFailure" ? restart.maxRestarts : 0
    const emit: EventSink = options.onEvent ?? (() => Effect.void)
    const setState = (state: DaemonState) =>
      options.state === undefined ? Effect.void : SubscriptionRef.set(options.state, state)
    // Instances started so far, and whether one was ever ready.
    const started = yield* Ref.make(0)
    const readyOnce = yield* Ref.make(false)
    const lastError = yield* Ref.make<StartError | SupervisionError | undefined>(undefined)

    const instance = Effect.gen(function* () {
      const restarts = yield* Ref.getAndUpdate(started, (n) => n + 1)
      yield* setState(DaemonState.Starting({ restarts }))
      const daemon = yield* Dockerd.start(config, options.readiness ?? fast, {
        location: options.location,
        onEvent: options.onEvent,
        restarts,
        probes: options.probes,
        replace: options.replace
      })
      yield* Ref.set(readyOnce, true)
      yield* setState(DaemonState.Ready({ daemon, restarts }))
      if (options.onReady) yield* options.onReady(daemon)
      return yield* supervise(daemon, options.liveness, { onEvent: options.onEvent, restarts })
    }).pipe(
      Effect.scoped,
      Effect.tapError((error) => Ref.set(lastError, error))
    )

    // Before each restart: say why and how long until it.
    const announce = (delay: Duration.Duration) =>
      Effect.gen(function* () {
        const restart = yield* Ref.get(started)
        const error = yield* Ref.get(lastError)
        const reason = error?.message.split("\n")[0] ?? "unknown"
        const delayMs = Duration.toMillis(delay)
        yield* Effect.logDebug("restarting dockerd").pipe(
          Effect.annotateLogs({ restart, reason: error?._tag ?? "unknown" })
        )
        yield* setState(DaemonState.Restarting({ restart, delayMs, reason }))
        yield* emit(DaemonEvent.Restarting({ restart, maxRestarts, delayMs, reason }))
        return delay
      })

    return yield* Effect.retry(
      instance,
      restartSchedule(restart, () => Ref.get(readyOnce)).pipe(
        Schedule.modifyDelayEffect((_, delay) => announce(delay))
      )
    ).pipe(Effect.tapError((error) => setState(DaemonState.Failed({ error }))))
  }).pipe(Effect.annotateLogs({ component: "supervisor" }))
