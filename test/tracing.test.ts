/**
 * Spans: a wait and a supervision each have their span, a child of the
 * caller's; what they run (checks that are effects, the event sink, their
 * logs) is inside it, and it ends with the outcome. The loops keep their
 * span in their driver rather than in the waiting fiber's context (a
 * context change is frames every waiting fiber would hold), so these pin
 * that nothing of the trace is lost by it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import { ProbeFailed, ProbeNotYet } from "../src/errors.js"
import * as Probe from "../src/Probe.js"
import { type ExitStatus, Signaled } from "../src/ProcessStatus.js"
import { waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { processUntil, readyDaemon } from "./support/standIns.js"

/** The current tracer, with every span it makes kept in `spans`. */
const recording = Effect.map(Effect.tracer, (inner) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = inner.span(...args)
      spans.push(span)
      return span
    },
    context: inner.context
  })
  const named = (name: string): Tracer.Span => {
    const found = spans.filter((span) => span.name === name)
    expect(found.map((span) => span.name)).toEqual([name])
    return found[0] as Tracer.Span
  }
  const parentOf = (span: Tracer.Span): string | undefined =>
    Option.match(span.parent, {
      onNone: () => undefined,
      onSome: (parent) => (parent._tag === "Span" ? parent.name : "external")
    })
  const exitOf = (span: Tracer.Span) =>
    span.status._tag === "Ended" ? Exit.isSuccess(span.status.exit) : "not ended"
  /** The messages logged into a span (the native span keeps them as events). */
  const eventsOf = (span: Tracer.Span): Array<string> =>
    ((span as unknown as { events?: Array<[string]> }).events ?? []).map(([name]) => name)
  return { tracer, spans, named, parentOf, exitOf, eventsOf }
})

const policy = new ReadinessPolicy.ReadinessPolicy({
  ...ReadinessPolicy.fast,
  wakeOnOutput: undefined,
  deadline: Duration.seconds(10)
})

/** An effect check that is never ready. */
const neverReady = Probe.make(
  "engine",
  Effect.fail(new ProbeNotYet({ probe: "engine", reason: "not yet" }))
)

describe("spans", () => {
  it.effect(
    "a wait: its span is the caller's child and the parent of its checks, sink and logs",
    () =>
      Effect.gen(function* () {
        const trace = yield* recording
        const exited = yield* Deferred.make<ExitStatus>()
        let runs = 0
        // An effect check: "not yet" twice, then ready.
        const check = Probe.make(
          "engine",
          Effect.suspend(() =>
            ++runs < 3
              ? Effect.fail(new ProbeNotYet({ probe: "engine", reason: "not yet" }))
              : Effect.succeed("up")
          )
        )
        const fiber = yield* waitUntilReady(processUntil(exited), check, policy, {
          onEvent: (event) => Effect.withSpan(Effect.void, `sink ${event._tag}`)
        }).pipe(
          Effect.withSpan("caller"),
          Effect.withTracer(trace.tracer),
          // The library logs at Debug: seen by a caller who asks for it.
          Logger.withMinimumLogLevel(LogLevel.Debug),
          Effect.fork
        )
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)

        const wait = trace.named("Readiness.waitUntilReady")
        expect(trace.parentOf(wait)).toBe("caller")
        expect(trace.exitOf(wait)).toBe(true)
        const checks = trace.spans.filter((span) => span.name === "Probe.check")
        expect(checks).toHaveLength(3)
        for (const one of checks) {
          expect(trace.parentOf(one)).toBe("Readiness.waitUntilReady")
          expect(trace.exitOf(one)).not.toBe("not ended")
        }
        for (const name of ["sink ProbeResult", "sink Ready"]) {
          const sinks = trace.spans.filter((span) => span.name === name)
          expect(sinks.length).toBeGreaterThan(0)
          for (const sink of sinks) expect(trace.parentOf(sink)).toBe("Readiness.waitUntilReady")
        }
        expect(trace.eventsOf(wait)).toContain("ready")
      })
  )

  it.effect("a failed wait ends its span with the failure and logs it there", () =>
    Effect.gen(function* () {
      const trace = yield* recording
      const exited = yield* Deferred.make<ExitStatus>()
      const fiber = yield* waitUntilReady(processUntil(exited), neverReady, policy).pipe(
        Effect.withSpan("caller"),
        Effect.withTracer(trace.tracer),
        Logger.withMinimumLogLevel(LogLevel.Debug),
        Effect.either,
        Effect.fork
      )
      yield* TestClock.adjust("300 millis")
      yield* Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("ExitedBeforeReady")
      const wait = trace.named("Readiness.waitUntilReady")
      expect(trace.parentOf(wait)).toBe("caller")
      expect(trace.exitOf(wait)).toBe(false)
      expect(trace.eventsOf(wait).some((event) => event.includes("exited"))).toBe(true)
    })
  )

  it.effect("an interrupted wait ends its span", () =>
    Effect.gen(function* () {
      const trace = yield* recording
      const exited = yield* Deferred.make<ExitStatus>()
      const fiber = yield* waitUntilReady(processUntil(exited), neverReady, policy).pipe(
        Effect.withTracer(trace.tracer),
        Effect.fork
      )
      yield* TestClock.adjust("300 millis")
      yield* Fiber.interrupt(fiber)
      const wait = trace.named("Readiness.waitUntilReady")
      expect(trace.parentOf(wait)).toBeUndefined()
      expect(trace.exitOf(wait)).toBe(false)
    })
  )

  it.effect(
    "supervision: its span is the caller's child and the parent of its checks, sinks and logs",
    () =>
      Effect.gen(function* () {
        const trace = yield* recording
        const exited = yield* Deferred.make<ExitStatus>()
        const process = processUntil(exited)
        const liveness = Probe.make(
          "liveness",
          Effect.fail(new ProbeFailed({ probe: "liveness", reason: "down" }))
        )
        const daemon = yield* readyDaemon(process, liveness)
        const fiber = yield* Supervisor.supervise(daemon, Supervisor.defaultLiveness, {
          onEvent: (event) => Effect.withSpan(Effect.void, `sink ${event._tag}`)
        }).pipe(
          Effect.withSpan("caller"),
          Effect.withTracer(trace.tracer),
          Logger.withMinimumLogLevel(LogLevel.Debug),
          Effect.either,
          Effect.fork
        )
        yield* TestClock.adjust("1 minute")
        const outcome = yield* Fiber.join(fiber)
        expect(Either.isLeft(outcome) && outcome.left._tag).toBe("DaemonUnhealthy")
        const supervision = trace.named("Supervisor.supervise")
        expect(trace.parentOf(supervision)).toBe("caller")
        expect(trace.exitOf(supervision)).toBe(false)
        const checks = trace.spans.filter((span) => span.name === "Probe.check")
        expect(checks).toHaveLength(Supervisor.defaultLiveness.failureThreshold)
        for (const one of checks) expect(trace.parentOf(one)).toBe("Supervisor.supervise")
        const sinks = trace.spans.filter((span) => span.name === "sink LivenessFailed")
        expect(sinks).toHaveLength(Supervisor.defaultLiveness.failureThreshold)
        for (const sink of sinks) expect(trace.parentOf(sink)).toBe("Supervisor.supervise")
        expect(trace.eventsOf(supervision)).toContain("liveness check failed")
      })
  )
})
