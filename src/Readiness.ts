/**
 * `waitUntilReady`: the policy's spacing (the delays its `Schedule`s
 * describe) drives probe attempts, each probe under its own timeout, while
 * the process's exit ends the wait the moment it comes and a timer holds
 * the deadline. Events cut the wait between attempts short: a probe's
 * wake-up (the socket file appeared) or a line of the process's output that
 * the policy names (dockerd's `API listen on`).
 * The deadline is hard: no hanging probe keeps it waiting.
 *
 * The wait runs as callbacks on the fiber's clock and runtime
 * (internal/driver.ts): a probe run, then a timer for the spacing that a
 * wake-up cuts short. Checks with a callback form (the socket and Engine
 * checks) run without a fiber, their timeouts timers of the same clock;
 * other checks run as effects under `Effect.timeoutFail`. The exit and the
 * output come as callbacks from the process manager (`unsafeOnExit`,
 * `unsafeOnOutput`; through `awaitExit` and `output` for a handle without
 * them). Under `TestClock` every timer is a sleep on the test clock. One
 * wait then costs a few callbacks per attempt instead of several fibers,
 * which is what lets one process watch many daemons (bench: the scale
 * section).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import type { OutputChunk } from "./ProcessManager.js"
import {
  ExitedBeforeReady,
  NotReadyByDeadline,
  ProbeFailure,
  type ReadinessError
} from "./errors.js"
import * as Driver from "./internal/driver.js"
import type { Cancel } from "./internal/driver.js"
import * as ExitNotice from "./internal/exitNotice.js"
import { runProbe, type RunOptions, type RunResult } from "./internal/runProbe.js"
import * as SpacingStepper from "./internal/spacingStepper.js"
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
 * The `component` annotation of this module's logs. Set at each log, not
 * around the whole wait: an annotation around it is a frame more that every
 * waiting fiber holds.
 */
const COMPONENT = "readiness"

/**
 * Waits until `probe` succeeds on `process`, or fails with a typed error:
 * {@link ExitedBeforeReady} as soon as the process ends, or
 * {@link NotReadyByDeadline} at the policy's deadline.
 *
 * @since 0.1.0
 * @category waiting
 */
export const waitUntilReady = (
  process: ProcessHandle,
  probe: Probe.Probe,
  policy: ReadinessPolicy = fast,
  options: WaitOptions = {}
): Effect.Effect<ReadinessReport, ReadinessError> =>
  // The span is the parent of what the wait runs (checks that are effects,
  // the event sink, its last logs) by way of the driver and of the end of
  // the wait, not of the waiting fiber's context: that context change
  // (`Effect.withSpan`, `Effect.fn`) would be frames held by every waiting
  // fiber for as long as it waits, ~3 KB each.
  Effect.useSpan(
    "Readiness.waitUntilReady",
    // A failed wait is an expected outcome, reported by its typed error; the
    // span's call-site stack would be formatted for each (~0.1 ms, more
    // cold), on the way from a crash to its error.
    { captureStackTrace: false },
    (span) => wait(span, process, probe, policy, options)
  )

const wait = Effect.fnUntraced(function* (
  span: Tracer.Span,
  process: ProcessHandle,
  probe: Probe.Probe,
  policy: ReadinessPolicy,
  options: WaitOptions
) {
  const started = yield* Clock.currentTimeMillis
  const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)
  const onEvent = options.onEvent
  const emit = (event: () => ReadinessEvent) =>
    onEvent === undefined ? Effect.void : Effect.suspend(() => onEvent(event()))
  // Logs below the minimum level are skipped here, not built and dropped:
  // their annotations cost allocations for every daemon waited for.
  const minimumLogLevel = yield* FiberRef.get(FiberRef.currentMinimumLogLevel)
  const logsAt = (level: LogLevel.LogLevel) => LogLevel.greaterThanEqual(level, minimumLogLevel)
  const logsDebug = logsAt(LogLevel.Debug)
  // The state of this one wait. Plain variables: only this wait's fibers
  // touch them, one at a time (an attempt, then its spacing), and a Ref per
  // attempt costs allocations on the hot path for no gain.
  let attempts = 0
  const order = Probe.names(probe)
  const last = new Map<string, Probe.ProbeOutcome>()
  const lastInOrder = () =>
    order.flatMap((name) => {
      const result = last.get(name)
      return result === undefined ? [] : [result]
    })

  const startsProcess = new Set(
    Probe.checks(probe)
      .filter((check) => check.startsProcess)
      .map((check) => check.name)
  )
  // Whether the attempt under way ran a check that starts a process, and
  // how it ended.
  let ranProcess = false
  const lastOutcome: { outcome: Probe.ProbeOutcome | undefined } = { outcome: undefined }

  const metricLabels = yield* FiberRef.get(FiberRef.currentMetricLabels)

  const exitError = (status: ExitedBeforeReady["status"]) =>
    Effect.gen(function* () {
      // (Fields typed by construction: no validation, which for a 200-line
      // tail costs more than the rest of the way from the exit to here.)
      return new ExitedBeforeReady(
        {
          pid: process.pid,
          status,
          elapsedMs: yield* elapsed,
          attempts,
          logTail: yield* process.logTail
        },
        true
      )
    })

  const deadlineError = Effect.gen(function* () {
    // An exit that came first is reported as the exit, never as a timeout.
    const status = yield* process.status
    if (status._tag !== "Running") return yield* exitError(status)
    return new NotReadyByDeadline(
      {
        pid: process.pid,
        deadlineMs: Duration.toMillis(policy.deadline),
        elapsedMs: yield* elapsed,
        attempts,
        lastFailures: lastInOrder().filter(
          (result): result is ProbeFailure => result._tag !== "ProbeSucceeded"
        ),
        logTail: yield* process.logTail
      },
      true
    )
  })

  // Checks whose wake-ups are being watched now: while such a check says
  // "not yet", polling it is pointless until it wakes the loop, so the
  // loop waits for the wake-up, polling only at the slowest spacing as a
  // safety net. A watch that ends (it could not be set up) ends this.
  const watched = new Set<string>()
  const pattern = policy.wakeOnOutput === undefined ? undefined : new RegExp(policy.wakeOnOutput)

  // The wait, as callbacks on the fiber's clock and runtime (see
  // internal/driver.ts): an attempt is a probe run, the wait between
  // attempts a timer that a wake-up cuts short, the policy's spacing
  // (stepped by arithmetic: internal/spacingStepper.ts) gives its length;
  // beside them the checks' watches, the process's exit (a callback from
  // its process manager) and a timer for the deadline. Whichever ends the
  // wait first cancels the rest. One wait costs a few callbacks per
  // attempt instead of fibers, which is what lets one process watch many
  // daemons.
  const driver = yield* Driver.within(span)
  const runOptions: RunOptions = {
    timeoutFor: (name) => policy.timeoutFor(name),
    onOutcome: (outcome) => {
      lastOutcome.outcome = outcome
      if (startsProcess.has(outcome.probe)) ranProcess = true
      last.set(outcome.probe, outcome)
      // Only when someone listens: the clock read, the event and (for
      // Debug logs) the annotations cost allocations on every probe of
      // every attempt otherwise.
      if (onEvent === undefined && !logsDebug) return undefined
      const attempt = attempts
      // (The fiber's clock, read by the driver: not an effect to run.)
      const elapsedMs = driver.now() - started
      const event = emit(() => ReadinessEvent.ProbeResult({ attempt, elapsedMs, outcome }))
      return logsDebug
        ? Effect.zipRight(
            Effect.logDebug(
              outcome._tag === "ProbeSucceeded" ? "probe succeeded" : outcome.message
            ).pipe(
              Effect.annotateLogs({
                component: COMPONENT,
                attempt,
                probe: outcome.probe,
                elapsedMs
              })
            ),
            event
          )
        : event
    }
  }
  const cheapSpacing = SpacingStepper.make(policy.retry)
  const commandSpacing = SpacingStepper.make(policy.commandRetry ?? policy.retry)
  const slowestMs = Duration.toMillis(policy.slowestDelay)
  const deadlineMs = Duration.toMillis(policy.deadline)
  // (The wait's outcome as a value, and the driver shut down before it is
  // delivered, or by the canceler when the wait is interrupted: a waiting
  // fiber holds no frame for either.)
  const outcome = yield* Effect.async<
    Either.Either<ReadonlyArray<Probe.ProbeSucceeded>, ReadinessError>
  >((resume) => {
    let over = false
    let woken = false
    // The attempt or the spacing timer in flight.
    const inFlight = Driver.makeStep()
    // Between attempts (the spacing timer runs): a wake-up cuts it short.
    let spacing = false
    let readingOutput = false
    // What runs beside the attempts: the checks' watches, the exit
    // watch, the deadline, the output reader. All stopped at the end.
    const beside: Array<Cancel> = []
    const stopAll = () => {
      over = true
      inFlight.cancel()
      for (const stop of beside) stop()
    }

    const end = (effect: Effect.Effect<ReadonlyArray<Probe.ProbeSucceeded>, ReadinessError>) => {
      if (over) return
      stopAll()
      resume(Effect.zipRight(driver.shutdown, Effect.either(effect)))
    }

    // The output lines the policy names wake the loop too. They are
    // read from the first attempt that fails other than by a watched
    // "not yet": until then a watch (the socket file) or a check in
    // flight (a held connection) catches the moment anyway, and a
    // Stream per wait costs memory when one process watches many.
    const readOutput = () => {
      if (readingOutput || pattern === undefined) return
      readingOutput = true
      if (process.unsafeOnOutput !== undefined) {
        const lines = lineSplitter()
        try {
          beside.push(
            process.unsafeOnOutput((chunk) => {
              if (lines(chunk).some((line) => pattern.test(line))) wake()
            })
          )
        } catch (error) {
          end(Effect.die(error))
        }
        return
      }
      const stopReading = driver.run(
        Effect.suspend(() => {
          const lines = lineSplitter()
          return Stream.runForEachChunk(process.output, (chunks) =>
            Effect.sync(() => {
              for (const chunk of chunks) {
                if (lines(chunk).some((line) => pattern.test(line))) wake()
              }
            })
          )
        }),
        () => {}
      )
      beside.push(stopReading)
    }

    const attempt = () => {
      if (over) return
      // The attempt sees the state as it is now: older wake-ups are moot.
      woken = false
      spacing = false
      attempts += 1
      ranProcess = false
      lastOutcome.outcome = undefined
      attemptsTotal.unsafeUpdate(1, metricLabels)
      inFlight.start(() => runProbe(probe, driver, runOptions, settled))
    }

    const settled = (result: RunResult) => {
      if (Exit.isSuccess(result)) return end(Effect.succeed(result.value))
      if (Option.isNone(Cause.failureOption(result.cause))) {
        // A defect of a check (or its own interruption): the wait ends with it.
        return end(Effect.failCause(result.cause as Cause.Cause<never>))
      }
      // (Set by the attempt's callbacks, which the compiler cannot see.)
      const failure = lastOutcome.outcome as Probe.ProbeOutcome | undefined
      const parked = failure?._tag === "ProbeNotYet" && watched.has(failure.probe) && !ranProcess
      if (!parked) readOutput()
      // A schedule that runs out leaves the deadline to decide.
      const delay = parked
        ? slowestMs
        : ranProcess
          ? Math.max(cheapSpacing(), commandSpacing())
          : cheapSpacing()
      if (woken) return attempt()
      spacing = true
      inFlight.start(() => driver.schedule(delay, attempt))
    }

    const wake = () => {
      if (over) return
      if (!spacing) {
        woken = true
        return
      }
      inFlight.cancel()
      attempt()
    }

    // A watched check's wake-up (the socket file appeared) cuts the
    // spacing short. A watch that ends (it could not be set up) ends
    // the parking on that check.
    if (policy.wakeOnProbeEvents) {
      for (const check of Probe.checks(probe)) {
        // A check that cannot tell (most) costs nothing.
        if (check.watch === undefined) continue
        watched.add(check.name)
        const ended = () => void watched.delete(check.name)
        try {
          beside.push(check.watch(wake, ended))
        } catch {
          // A watch that throws (one a user wrote) is one that could not
          // start: the spacing finds the change instead.
          ended()
        }
      }
    }
    // (A process that already ended ends the wait right here.) The
    // managers of this library call back in the turn of the exit; any
    // other handle is watched by a fiber on `awaitExit`.
    const exited = (status: ExitedBeforeReady["status"]) =>
      end(Effect.flatMap(exitError(status), Effect.fail))
    try {
      beside.push(
        ExitNotice.watch(driver, process, exited, (cause) => end(Effect.failCause(cause)))
      )
      if (over) return
      beside.push(
        driver.schedule(deadlineMs - (driver.now() - started), () =>
          end(Effect.flatMap(deadlineError, Effect.fail))
        )
      )
      const initialMs = Duration.toMillis(policy.initialDelay)
      if (initialMs > 0) inFlight.start(() => driver.schedule(initialMs, attempt))
      else attempt()
    } catch (error) {
      // A handle or a check that throws (one a user wrote) is a defect
      // of the wait; what was started is stopped first.
      end(Effect.die(error))
    }
    return Effect.zipRight(Effect.sync(stopAll), driver.shutdown)
  })

  // The end of the wait, in its span (its logs are the span's events).
  const finish = Effect.gen(function* () {
    if (outcome._tag === "Left") {
      const error = outcome.left
      yield* Metric.increment(failuresTotal).pipe(Effect.tagMetrics("reason", error._tag))
      if (logsAt(LogLevel.Warning)) {
        yield* Effect.logWarning(error.message).pipe(
          Effect.annotateLogs({ component: COMPONENT, attempts })
        )
      }
      yield* emit(() => ReadinessEvent.Failed({ error }))
      return yield* Effect.fail(error)
    }

    // (Fields typed by construction: no validation.)
    const report = new ReadinessReport(
      {
        pid: process.pid,
        policy: policy.name,
        attempts,
        elapsedMs: yield* elapsed,
        results: lastInOrder()
      },
      true
    )
    yield* Metric.update(timeToReady, report.elapsedMs)
    if (logsAt(LogLevel.Info)) {
      yield* Effect.logInfo("ready").pipe(
        Effect.annotateLogs({
          component: COMPONENT,
          attempts: report.attempts,
          elapsedMs: report.elapsedMs
        })
      )
    }
    yield* emit(() => ReadinessEvent.Ready({ report }))
    return report
  })
  return yield* Effect.withParentSpan(finish, span)
})

/**
 * Splits a process's output into complete lines, stdout and stderr each on
 * their own: each call takes a chunk and returns the lines it completed.
 */
const lineSplitter = () => {
  const partial: Record<OutputChunk["source"], string> = { stdout: "", stderr: "" }
  return (chunk: OutputChunk): Array<string> => {
    const parts = (partial[chunk.source] + chunk.text).split("\n")
    // Keep at most one long line's worth of an unfinished line.
    partial[chunk.source] = (parts.pop() ?? "").slice(-4096)
    return parts
  }
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
      const queue = yield* Queue.unbounded<ReadinessEvent>()
      yield* waitUntilReady(process, probe, policy, {
        onEvent: (event) => queue.offer(event)
      }).pipe(Effect.ignore, Effect.ensuring(queue.shutdown), Effect.forkScoped)
      return Stream.fromQueue(queue).pipe(
        Stream.takeUntil((event) => event._tag === "Ready" || event._tag === "Failed")
      )
    })
  )
