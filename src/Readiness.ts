/**
 * `waitUntilReady`: the policy's `Schedule` drives probe attempts
 * (`Effect.retry`), each probe under its own `Effect.timeoutFail`, while a
 * fiber awaiting the process's exit races them (`Effect.raceFirst`) and the
 * deadline is `Effect.timeout` on the whole. Wake-ups cut the spacing
 * between attempts short: a probe's own (the socket file appeared) and a
 * line of the process's output that the policy names (dockerd's `API
 * listen on`), fed into a queue by a fiber of the wait.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Mailbox from "effect/Mailbox"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import {
  ExitedBeforeReady,
  NotReadyByDeadline,
  ProbeFailure,
  type ReadinessError
} from "./errors.js"
import * as Probe from "./Probe.js"
import type { OutputChunk, ProcessHandle } from "./ProcessManager.js"
import type { ExitStatus } from "./ProcessStatus.js"
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
export const waitUntilReady: (
  process: ProcessHandle,
  probe: Probe.Probe,
  policy?: ReadinessPolicy,
  options?: WaitOptions
) => Effect.Effect<ReadinessReport, ReadinessError> = Effect.fn("Readiness.waitUntilReady")(
  function* (process, probe, policy = fast, options = {}) {
    const started = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)
    const emit = (event: ReadinessEvent) => options.onEvent?.(event) ?? Effect.void
    const attempts = yield* Ref.make(0)
    const last = yield* Ref.make(new Map<string, Probe.ProbeOutcome>())
    const lastInOrder = Effect.map(Ref.get(last), (results) =>
      Probe.names(probe).flatMap((name) => {
        const result = results.get(name)
        return result === undefined ? [] : [result]
      })
    )
    const checks = Probe.checks(probe)
    const startsProcess = checks.some((check) => check.startsProcess)

    // Wake-ups: a sliding queue of one, since one pending wake-up is as good
    // as many, fed by fibers of the wait (`watchers`, by check name, and the
    // output reader). While a check whose wake-ups are watched says "not
    // yet", polling it is pointless until it wakes the loop, so the loop
    // waits for the wake-up (polling at `pollWhileWatched`, a safety net).
    const wakeups = yield* Queue.sliding<void>(1)
    const wake = Effect.asVoid(Queue.offer(wakeups, undefined))
    const watchers = yield* Ref.make(HashMap.empty<string, Fiber.RuntimeFiber<void>>())
    const outputReader = yield* Ref.make(Option.none<Fiber.RuntimeFiber<void>>())
    const lastFailure = yield* Ref.make<ProbeFailure | undefined>(undefined)

    // A check that passed needs no more wake-ups: its watch goes then, off
    // the path to ready.
    const stopWatching = (name: string) =>
      Effect.flatMap(
        Ref.modify(watchers, (all) => [HashMap.get(all, name), HashMap.remove(all, name)]),
        Option.match({ onNone: () => Effect.void, onSome: Fiber.interruptFork })
      )

    const attempt = Effect.gen(function* () {
      // The attempt sees the state as it is now: older wake-ups are moot.
      yield* Queue.takeAll(wakeups)
      const n = yield* Ref.updateAndGet(attempts, (count) => count + 1)
      yield* Metric.increment(attemptsTotal)
      return yield* Probe.run(probe, {
        timeoutFor: (name) => policy.timeoutFor(name),
        onOutcome: (outcome) =>
          Effect.gen(function* () {
            yield* Ref.update(last, (results) => results.set(outcome.probe, outcome))
            if (outcome._tag === "ProbeSucceeded") yield* stopWatching(outcome.probe)
            else yield* Ref.set(lastFailure, outcome)
            const elapsedMs = yield* elapsed
            yield* Effect.logDebug(
              outcome._tag === "ProbeSucceeded" ? "probe succeeded" : outcome.message
            ).pipe(Effect.annotateLogs({ attempt: n, probe: outcome.probe, elapsedMs }))
            yield* emit(ReadinessEvent.ProbeResult({ attempt: n, elapsedMs, outcome }))
          })
      })
    })

    // The pause the schedule chose, cut short by the next wake-up; longer
    // while a watched check says "not yet" and no process is started.
    // Otherwise the output is read from then on: until an attempt fails
    // other than by a watched "not yet", a watch (the socket file) or a
    // check in flight (a held connection) catches the moment anyway.
    const parked = Effect.zipWith(
      Ref.get(lastFailure),
      Ref.get(watchers),
      (failure, names) =>
        policy.wakeOnProbeEvents &&
        !startsProcess &&
        failure?._tag === "ProbeNotYet" &&
        HashMap.has(names, failure.probe)
    )
    const pattern = policy.wakeOnOutput
    const readOutput =
      pattern === undefined
        ? Effect.void
        : Effect.flatMap(Ref.get(outputReader), (reader) =>
            Option.isSome(reader)
              ? Effect.void
              : Effect.flatMap(
                  Effect.forkDaemon(
                    Stream.runForEach(linesMatching(process.output, pattern), () => wake)
                  ),
                  (fiber) => Ref.set(outputReader, Option.some(fiber))
                )
          )
    const pause = (delay: Duration.Duration) =>
      Effect.flatMap(parked, (isParked) =>
        Effect.zipRight(
          isParked ? Effect.void : readOutput,
          Effect.raceFirst(
            Effect.sleep(isParked ? Duration.max(delay, policy.watchedPollDelay) : delay),
            Queue.take(wakeups)
          )
        )
      )

    const probing = Effect.sleep(policy.initialDelay).pipe(
      Effect.zipRight(Effect.retry(attempt, cutShortBy(policy.scheduleFor(startsProcess), pause))),
      // A schedule that runs out leaves the deadline to decide.
      Effect.catchAll(() => Effect.never)
    )

    const exitError = (status: ExitStatus) =>
      Effect.gen(function* () {
        return new ExitedBeforeReady(
          {
            pid: process.pid,
            status,
            elapsedMs: yield* elapsed,
            attempts: yield* Ref.get(attempts),
            logTail: yield* process.logTail
          },
          true
        )
      })
    const crashed = Effect.flatMap(process.awaitExit, (status) =>
      Effect.flatMap(exitError(status), Effect.fail)
    )

    const deadlineError = Effect.gen(function* () {
      // An exit that came first is reported as the exit, never as a timeout.
      const status = yield* process.status
      if (status._tag !== "Running") return yield* exitError(status)
      return new NotReadyByDeadline(
        {
          pid: process.pid,
          deadlineMs: Duration.toMillis(policy.deadline),
          elapsedMs: yield* elapsed,
          attempts: yield* Ref.get(attempts),
          lastFailures: (yield* lastInOrder).filter(
            (result): result is ProbeFailure => result._tag !== "ProbeSucceeded"
          ),
          logTail: yield* process.logTail
        },
        true
      )
    })

    // Each watched check's wake-ups, from a fiber of its own. A watch that
    // ends by itself (it could not be set up) ends the parking on its check,
    // and a pause parked on it.
    const watch = (check: Probe.Check) =>
      Effect.flatMap(
        Effect.forkDaemon(
          Stream.runForEach(check.wakeups!, () => wake).pipe(
            Effect.zipRight(Ref.update(watchers, HashMap.remove(check.name))),
            Effect.zipRight(wake)
          )
        ),
        (fiber) => Ref.update(watchers, HashMap.set(check.name, fiber))
      )
    // The wait's fibers are let go at its end, however it ends, without
    // waiting for their streams' teardown: the outcome is known already.
    const letGo = Effect.zipRight(
      Effect.flatMap(Ref.get(watchers), (all) =>
        Effect.forEach(HashMap.values(all), Fiber.interruptFork, { discard: true })
      ),
      Effect.flatMap(Ref.get(outputReader), (reader) =>
        Option.isSome(reader) ? Fiber.interruptFork(reader.value) : Effect.void
      )
    )

    const outcome = yield* Effect.forEach(
      policy.wakeOnProbeEvents ? checks.filter((check) => check.wakeups !== undefined) : [],
      watch,
      { discard: true }
    ).pipe(
      Effect.zipRight(
        Effect.raceFirst(probing, crashed).pipe(
          Effect.timeout(policy.deadline),
          Effect.catchTag("TimeoutException", () => Effect.flatMap(deadlineError, Effect.fail))
        )
      ),
      Effect.ensuring(letGo),
      Effect.either
    )

    if (outcome._tag === "Left") {
      const error = outcome.left
      yield* Metric.increment(failuresTotal).pipe(Effect.tagMetrics("reason", error._tag))
      yield* Effect.logDebug(error.message).pipe(
        Effect.annotateLogs({ attempts: yield* Ref.get(attempts) })
      )
      yield* emit(ReadinessEvent.Failed({ error }))
      return yield* Effect.fail(error)
    }

    const report = new ReadinessReport(
      {
        pid: process.pid,
        policy: policy.name,
        attempts: yield* Ref.get(attempts),
        elapsedMs: yield* elapsed,
        results: yield* lastInOrder
      },
      true
    )
    yield* Metric.update(timeToReady, report.elapsedMs)
    yield* Effect.logDebug("ready").pipe(
      Effect.annotateLogs({ attempts: report.attempts, elapsedMs: report.elapsedMs })
    )
    yield* emit(ReadinessEvent.Ready({ report }))
    return report
  },
  (effect, process) => Effect.annotateLogs(effect, { component: "readiness", pid: process.pid })
)

/**
 * `schedule` with each delay spent in `pause` (a sleep that a wake-up may
 * cut short) instead of the schedule's own sleep.
 */
const cutShortBy = <Out, In, R>(
  schedule: Schedule.Schedule<Out, In, R>,
  pause: (delay: Duration.Duration) => Effect.Effect<unknown>
): Schedule.Schedule<Out, In, R> =>
  Schedule.modifyDelayEffect(schedule, (_, delay) => Effect.as(pause(delay), Duration.zero))

/**
 * The lines of a process's output that match `pattern`, stdout and stderr
 * each split on its own.
 */
const linesMatching = (
  output: Stream.Stream<OutputChunk>,
  pattern: string
): Stream.Stream<string> => {
  const matcher = new RegExp(pattern)
  return output.pipe(
    Stream.mapAccum({ stdout: "", stderr: "" }, (partial, chunk) => {
      const parts = (partial[chunk.source] + chunk.text).split("\n")
      // Keep at most one long line's worth of an unfinished line.
      const rest = (parts.pop() ?? "").slice(-4096)
      return [{ ...partial, [chunk.source]: rest }, parts] as const
    }),
    Stream.flattenIterables,
    Stream.filter((line) => matcher.test(line))
  )
}

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
      // A mailbox that ends once the wait has: its stream delivers every
      // event offered before the end.
      const mailbox = yield* Mailbox.make<ReadinessEvent>()
      yield* waitUntilReady(process, probe, policy, {
        onEvent: (event) => Effect.asVoid(mailbox.offer(event))
      }).pipe(Effect.ignore, Effect.ensuring(mailbox.end), Effect.forkScoped)
      return Mailbox.toStream(mailbox)
    })
  )
