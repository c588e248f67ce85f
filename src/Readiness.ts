/**
 * `waitUntilReady`: a `Schedule` drives probe attempts, each probe under its
 * own `Effect.timeout`, while a fiber watching the process's exit races the
 * loop. The deadline is hard: no hanging probe keeps it waiting.
 *
 * @since 0.1.0
 */
import {
  Clock,
  Data,
  Duration,
  Effect,
  Metric,
  MetricBoundaries,
  Queue,
  Ref,
  Schema,
  Stream
} from "effect"
import {
  ExitedBeforeReady,
  NotReadyByDeadline,
  ProbeFailure,
  type ReadinessError
} from "./errors.js"
import * as Probe from "./Probe.js"
import type { ProcessHandle } from "./ProcessManager.js"
import type { ReadinessPolicy } from "./ReadinessPolicy.js"
import { fast } from "./ReadinessPolicy.js"

/**
 * What a successful wait found.
 *
 * @since 0.1.0
 * @category models
 */
export class ReadinessReport extends Schema.Class<ReadinessReport>("ReadinessReport")({
  pid: Schema.Number,
  policy: Schema.String,
  attempts: Schema.Number,
  elapsedMs: Schema.Number,
  /** The last result of each probe, in probe order. */
  results: Schema.Array(Schema.Union(Probe.ProbeSucceeded, ProbeFailure))
}) {
  /** The value the named probe last succeeded with, if it did. */
  resultOf(probe: string): unknown {
    const found = this.results.find((result) => result.probe === probe)
    return found?._tag === "ProbeSucceeded" ? found.value : undefined
  }
}

/**
 * What happens while a process is brought up, for a CLI or UI to render.
 *
 * @since 0.1.0
 * @category models
 */
export type ReadinessEvent = Data.TaggedEnum<{
  /** The process was started. */
  Spawned: { readonly pid: number; readonly argv: ReadonlyArray<string> }
  /** One probe of one attempt finished. */
  ProbeResult: {
    readonly attempt: number
    readonly elapsedMs: number
    readonly outcome: Probe.ProbeOutcome
  }
  /** The process is ready. */
  Ready: { readonly report: ReadinessReport }
  /** The wait failed. */
  Failed: { readonly error: ReadinessError }
}>

/**
 * Constructors for {@link ReadinessEvent}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ReadinessEvent = Data.taggedEnum<ReadinessEvent>()

/**
 * Options of {@link waitUntilReady}.
 *
 * @since 0.1.0
 * @category models
 */
export interface WaitOptions {
  /** Receives every event as it happens. */
  readonly onEvent?: ((event: ReadinessEvent) => Effect.Effect<void>) | undefined
}

/**
 * Attempts made, by outcome.
 *
 * @since 0.1.0
 * @category metrics
 */
export const attemptsTotal = Metric.counter("sandbox_docker_readiness_attempts_total", {
  description: "Readiness attempts made",
  incremental: true
})

/**
 * Time from the start of the wait to ready, in milliseconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const timeToReady = Metric.histogram(
  "sandbox_docker_time_to_ready_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 16 }),
  "Time from spawn to ready"
)

/**
 * Waits that ended in failure, tagged by `reason` (the error's tag).
 *
 * @since 0.1.0
 * @category metrics
 */
export const failuresTotal = Metric.counter("sandbox_docker_readiness_failures_total", {
  description: "Readiness waits that failed",
  incremental: true
})

/**
 * Waits until `probe` succeeds on `process`, or fails with a typed error:
 * {@link ExitedBeforeReady} as soon as the process ends, or
 * {@link NotReadyByDeadline} at the policy's deadline.
 *
 * @since 0.1.0
 * @category waiting
 */
export const waitUntilReady = Effect.fn("Readiness.waitUntilReady")(
  function* (
    process: ProcessHandle,
    probe: Probe.Probe,
    policy: ReadinessPolicy = fast,
    options: WaitOptions = {}
  ) {
    const started = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)
    const emit = (event: ReadinessEvent) => options.onEvent?.(event) ?? Effect.void
    const attempts = yield* Ref.make(0)
    const order = Probe.names(probe)
    const last = yield* Ref.make(new Map<string, Probe.ProbeOutcome>())
    const lastInOrder = Effect.map(Ref.get(last), (results) =>
      order.flatMap((name) => {
        const result = results.get(name)
        return result === undefined ? [] : [result]
      })
    )

    const attempt = Effect.gen(function* () {
      const n = yield* Ref.updateAndGet(attempts, (count) => count + 1)
      yield* Metric.increment(attemptsTotal)
      return yield* Probe.run(probe, {
        timeoutFor: (name) => policy.timeoutFor(name),
        onOutcome: (outcome) =>
          Effect.gen(function* () {
            yield* Ref.update(last, (results) => new Map(results).set(outcome.probe, outcome))
            const elapsedMs = yield* elapsed
            yield* Effect.logDebug(
              outcome._tag === "ProbeSucceeded" ? "probe succeeded" : outcome.message
            ).pipe(Effect.annotateLogs({ probe: outcome.probe, elapsedMs }))
            yield* emit(ReadinessEvent.ProbeResult({ attempt: n, elapsedMs, outcome }))
          })
      }).pipe(Effect.annotateLogs({ attempt: n }))
    })

    const probing = Effect.sleep(policy.initialDelay).pipe(
      Effect.zipRight(Effect.retry(attempt, policy.schedule)),
      // A finite schedule that runs out leaves the deadline to decide.
      Effect.catchAll(() => Effect.never)
    )

    const exitError = (status: ExitedBeforeReady["status"]) =>
      Effect.gen(function* () {
        return new ExitedBeforeReady({
          pid: process.pid,
          status,
          elapsedMs: yield* elapsed,
          attempts: yield* Ref.get(attempts),
          logTail: yield* process.logTail
        })
      })

    const watchExit = Effect.flatMap(process.awaitExit, (status) =>
      Effect.flatMap(exitError(status), Effect.fail)
    )

    const deadlineError = Effect.gen(function* () {
      // An exit that came first is reported as the exit, never as a timeout.
      const status = yield* process.status
      if (status._tag !== "Running") return yield* exitError(status)
      return new NotReadyByDeadline({
        pid: process.pid,
        deadlineMs: Duration.toMillis(policy.deadline),
        elapsedMs: yield* elapsed,
        attempts: yield* Ref.get(attempts),
        lastFailures: (yield* lastInOrder).filter(
          (result): result is ProbeFailure => result._tag !== "ProbeSucceeded"
        ),
        logTail: yield* process.logTail
      })
    })

    const outcome = yield* Effect.raceFirst(probing, watchExit).pipe(
      Effect.timeout(policy.deadline),
      Effect.catchTag("TimeoutException", () => Effect.flatMap(deadlineError, Effect.fail)),
      Effect.either
    )

    if (outcome._tag === "Left") {
      const error = outcome.left
      yield* Metric.increment(failuresTotal).pipe(Effect.tagMetrics("reason", error._tag))
      yield* Effect.logWarning(error.message).pipe(
        Effect.annotateLogs({ attempts: yield* Ref.get(attempts) })
      )
      yield* emit(ReadinessEvent.Failed({ error }))
      return yield* Effect.fail(error)
    }

    const report = new ReadinessReport({
      pid: process.pid,
      policy: policy.name,
      attempts: yield* Ref.get(attempts),
      elapsedMs: yield* elapsed,
      results: yield* lastInOrder
    })
    yield* Metric.update(timeToReady, report.elapsedMs)
    yield* Effect.logInfo("ready").pipe(
      Effect.annotateLogs({ attempts: report.attempts, elapsedMs: report.elapsedMs })
    )
    yield* emit(ReadinessEvent.Ready({ report }))
    return report
  },
  Effect.annotateLogs({ component: "readiness" })
)

/**
 * The events of one wait as a Stream, ending with `Ready` or `Failed`.
 *
 * @since 0.1.0
 * @category waiting
 */
export const events = (
  process: ProcessHandle,
  probe: Probe.Probe,
  policy: ReadinessPolicy = fast
): Stream.Stream<ReadinessEvent> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const queue = yield* Queue.unbounded<ReadinessEvent>()
      yield* waitUntilReady(process, probe, policy, {
        onEvent: (event) => queue.offer(event)
      }).pipe(Effect.ignore, Effect.ensuring(queue.shutdown), Effect.forkScoped)
      return Stream.fromQueue(queue).pipe(
        Stream.takeUntil((event) => event._tag === "Ready" || event._tag === "Failed")
      )
    })
  )
