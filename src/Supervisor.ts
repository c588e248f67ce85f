/**
 * Supervision after ready: a liveness probe at an interval, raced against
 * the daemon's exit, and a restart policy that starts it again with backoff.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
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
import type { ProcessManager } from "./ProcessManager.js"
import type { ExitStatus } from "./ProcessStatus.js"
import { diagnose } from "./Diagnosis.js"
import * as Driver from "./internal/driver.js"
import * as ExitNotice from "./internal/exitNotice.js"
import type { Cancel } from "./internal/driver.js"
import * as RunProbe from "./internal/runProbe.js"
import { fast, type ReadinessPolicy } from "./ReadinessPolicy.js"

/**
 * How liveness is checked after ready.
 *
 * @since 0.1.0
 * @category models
 */
export class LivenessPolicy extends Schema.Class<LivenessPolicy>("LivenessPolicy")({
  /** Time between checks. */
  interval: Schema.DurationFromMillis,
  /** Timeout of each check. */
  timeout: Schema.DurationFromMillis,
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
    backoff: Schema.DurationFromMillis
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
 * Watches a ready daemon until it dies ({@link DaemonDied}) or fails
 * liveness `failureThreshold` times in a row ({@link DaemonUnhealthy}).
 * A hung daemon cannot hang this: every check has its timeout.
 *
 * @since 0.1.0
 * @category supervision
 */
export const supervise = (
  daemon: Dockerd.DockerDaemon,
  liveness: LivenessPolicy = defaultLiveness,
  options: SuperviseOptions = {}
): Effect.Effect<never, SupervisionError> =>
  // The span is the parent of the checks, logs and events by way of the
  // driver, not of the supervising fiber's context: that context change
  // (`Effect.withSpan`, `Effect.fn`) would be frames held by every
  // supervising fiber for as long as its daemon lives.
  Effect.useSpan(
    "Supervisor.supervise",
    // Supervision ends by failing (the daemon died); the span's call-site
    // stack would be formatted on the way from the death to its error.
    { captureStackTrace: false },
    (span) => watch(span, daemon, liveness, options)
  )

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

const watch = Effect.fnUntraced(function* (
  span: Tracer.Span,
  daemon: Dockerd.DockerDaemon,
  liveness: LivenessPolicy,
  options: SuperviseOptions
) {
  const emit: EventSink = options.onEvent ?? (() => Effect.void)
  const restarts = options.restarts ?? 0
  let consecutive = 0

  const died = (status: ExitStatus) =>
    Effect.flatMap(daemon.process.logTail, (logTail) => {
      const diagnosis = diagnose(logTail)
      // (Fields typed by construction: no validation.)
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

  const unhealthy = (lastFailure: ProbeFailure) =>
    Effect.flatMap(daemon.process.logTail, (logTail) =>
      Effect.fail(
        new DaemonUnhealthy(
          { pid: daemon.pid, consecutiveFailures: consecutive, lastFailure, restarts, logTail },
          true
        )
      )
    )

  // Liveness checks as callbacks on the fiber's clock and runtime (see
  // internal/driver.ts): a check, then a timer of the policy's interval; no
  // fiber per check. A failure is logged and reported before the next
  // check; the threshold ends supervision with the last failure. Beside
  // them the daemon's exit is watched; whichever comes first ends
  // supervision and cancels the other.
  const driver = yield* Driver.within(span)
  const intervalMs = Duration.toMillis(liveness.interval)
  // Counted per run of the probe, not per check: a liveness probe of
  // several checks (`/_ping`, then containerd) whose first passes and
  // second fails has failed once.
  const checkOptions: RunProbe.RunOptions = { timeoutFor: () => liveness.timeout }
  const reportFailure = (failure: ProbeFailure, reached: number) =>
    Effect.zipRight(
      Effect.logWarning("liveness check failed").pipe(
        Effect.annotateLogs({
          component: "supervisor",
          consecutive: reached,
          reason: failure.message
        })
      ),
      emit(
        DaemonEvent.LivenessFailed({
          pid: daemon.pid,
          consecutive: reached,
          threshold: liveness.failureThreshold,
          reason: failure.message
        })
      )
    )
  return yield* Effect.async<never, SupervisionError>((resume) => {
    let over = false
    // The check or the spacing timer in flight.
    const inFlight = Driver.makeStep()
    let stopDeathWatch: Cancel = () => {}
    const end = (effect: Effect.Effect<never, SupervisionError>) => {
      if (over) return
      over = true
      inFlight.cancel()
      stopDeathWatch()
      resume(Effect.zipRight(driver.shutdown, effect))
    }
    const check = () => {
      if (over) return
      inFlight.start(() => RunProbe.runProbe(daemon.liveness, driver, checkOptions, settled))
    }
    const next = () => inFlight.start(() => driver.schedule(intervalMs, check))
    const settled = (result: RunProbe.RunResult) => {
      if (Exit.isSuccess(result)) {
        consecutive = 0
        return next()
      }
      const failure = Cause.failureOption(result.cause)
      // A defect of the check (or its own interruption) ends supervision with it.
      if (Option.isNone(failure)) return end(Effect.failCause(result.cause as Cause.Cause<never>))
      consecutive += 1
      const reached = consecutive
      // The failure is logged and reported before the next check, or the end.
      inFlight.start(() =>
        driver.run(reportFailure(failure.value, reached), () =>
          reached >= liveness.failureThreshold ? end(unhealthy(failure.value)) : next()
        )
      )
    }
    // (A daemon that already died ends supervision right here.) By the
    // manager's callback, or a fiber on `awaitExit` for any other handle
    // (or a daemon whose `awaitExit` is not its process's).
    stopDeathWatch = ExitNotice.watch(
      driver,
      daemon.process,
      (status) => end(died(status)),
      (cause) => end(Effect.failCause(cause)),
      daemon.awaitExit
    )
    check()
    // (The driver is shut down here and in `end`, not by an `ensuring`
    // around the wait: a frame less held by every supervising fiber.)
    return Effect.zipRight(
      Effect.sync(() => {
        over = true
        inFlight.cancel()
        stopDeathWatch()
      }),
      driver.shutdown
    )
  })
})

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
}

/**
 * Starts a daemon, supervises it, and restarts it as the restart policy
 * says. Runs until interrupted (then stops the daemon) or until the daemon
 * fails and no restart is left. Each instance is stopped, and its process
 * tree gone, before the next one starts.
 *
 * @since 0.1.0
 * @category supervision
 */
export const run = (
  config: DockerdConfig | DockerdConfigInput,
  options: RunOptions = {}
): Effect.Effect<never, StartError | SupervisionError, ProcessManager> => {
  const restart = options.restart ?? never
  const maxRestarts = restart._tag === "OnFailure" ? restart.maxRestarts : 0
  const instance = (
    restarts: number
  ): Effect.Effect<never, StartError | SupervisionError, ProcessManager> =>
    Effect.scoped(
      Effect.gen(function* () {
        const daemon = yield* Dockerd.start(config, options.readiness ?? fast, {
          location: options.location,
          onEvent: options.onEvent,
          restarts
        })
        if (options.onReady) yield* options.onReady(daemon)
        return yield* supervise(daemon, options.liveness, { onEvent: options.onEvent, restarts })
      }) as Effect.Effect<never, StartError | SupervisionError, ProcessManager | Scope.Scope>
    )

  const loop = (
    restarts: number
  ): Effect.Effect<never, StartError | SupervisionError, ProcessManager> =>
    instance(restarts).pipe(
      Effect.catchAll((error) => {
        // Only failures of a daemon that was ready once are restarted; a
        // first start that fails is a configuration problem to report.
        const restartable =
          restart._tag === "OnFailure" &&
          restarts < maxRestarts &&
          (restarts > 0 || error._tag === "DaemonDied" || error._tag === "DaemonUnhealthy")
        if (!restartable) return Effect.fail(error)
        const delay = Duration.min(
          Duration.times(restart.backoff, 2 ** restarts),
          Duration.seconds(30)
        )
        return Effect.gen(function* () {
          yield* Effect.logWarning("restarting dockerd").pipe(
            Effect.annotateLogs({ restart: restarts + 1, reason: error._tag })
          )
          yield* (options.onEvent ?? (() => Effect.void))(
            DaemonEvent.Restarting({
              restart: restarts + 1,
              maxRestarts,
              delayMs: Duration.toMillis(delay),
              reason: error.message.split("\n")[0] ?? error._tag
            })
          )
          yield* Effect.sleep(delay)
          return yield* loop(restarts + 1)
        })
      })
    )
  return loop(0)
}
