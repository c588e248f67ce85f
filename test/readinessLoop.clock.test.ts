/**
 * The readiness and liveness loops under TestClock: each check under its
 * timeout, attempts spaced by the policy's Schedule (or any Schedule given),
 * wake-ups that cut the spacing short, the exit raced against the attempts,
 * and nothing left running however the wait ends. The same loops against a
 * real dockerd are in the `.real` tests.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { ProbeNotYet } from "../src/errors.js"
import type * as Dockerd from "../src/Dockerd.js"
import { makeOutputBuffer } from "../src/internal/outputBuffer.js"
import * as Probe from "../src/Probe.js"
import type { ProcessHandle } from "../src/ProcessManager.js"
import { type ExitStatus, Signaled } from "../src/ProcessStatus.js"
import { events, ReadinessReport, waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { processUntil, readyDaemon } from "./support/standIns.js"
import { fiberTracker } from "./support/fibers.js"

/**
 * A check that records when each run starts, answers with `answer(n)` for
 * the n-th run (`undefined`: never answers), and counts the runs cut off
 * (by its timeout, an exit or an interruption) while in flight.
 */
const scripted = (
  name: string,
  answer: (run: number, now: number) => Either.Either<unknown, ProbeNotYet> | undefined,
  wakeups?: Stream.Stream<void>
) => {
  const state = { runs: [] as Array<number>, cancelled: 0, inFlight: 0 }
  const run = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const n = state.runs.length
    state.runs.push(now)
    const result = answer(n, now)
    if (result !== undefined) return yield* result
    state.inFlight += 1
    return yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          state.inFlight -= 1
          state.cancelled += 1
        })
      )
    )
  })
  return { check: Probe.make(name, run, { wakeups }), state }
}

/**
 * Supervises `daemon` with the default liveness in a fiber of its own,
 * recording each `LivenessFailed` as `[time, consecutive]`.
 */
const superviseRecording = (daemon: Dockerd.DockerDaemon) =>
  Effect.gen(function* () {
    const failures: Array<[number, number]> = []
    const fiber = yield* Effect.fork(
      Effect.either(
        Supervisor.supervise(daemon, Supervisor.defaultLiveness, {
          onEvent: (event) =>
            event._tag === "LivenessFailed"
              ? Effect.flatMap(Clock.currentTimeMillis, (at) =>
                  Effect.sync(() => failures.push([at, event.consecutive]))
                )
              : Effect.void
        })
      )
    )
    return { failures, fiber }
  })

const notYet = (name: string) => Either.left(new ProbeNotYet({ probe: name, reason: "not yet" }))

const policy = (
  fields: Partial<ConstructorParameters<typeof ReadinessPolicy.ReadinessPolicy>[0]>
) =>
  new ReadinessPolicy.ReadinessPolicy({
    ...ReadinessPolicy.fast,
    wakeOnOutput: undefined,
    ...fields
  })

/** A socket check that says "not yet" six times, then passes. */
const readyAtSeventhRun = (wakeups?: Stream.Stream<void>) =>
  scripted("socket", (run) => (run < 6 ? notYet("socket") : Either.right(1)), wakeups)

/**
 * When the seven runs of {@link readyAtSeventhRun} start under the fast
 * policy: 2 ms, then ×1.5 each time (2, 3, 4.5, 6.75, 10.125, 15.1875 ms
 * apart).
 */
const FAST_SPACING_RUNS = [0, 2, 5, 9.5, 16.25, 26.375, 41.5625]

/** Attempts 1 s apart, and at once when dockerd prints `API listen on`. */
const wokenByLine = () =>
  policy({
    retry: new ReadinessPolicy.FixedInterval({ interval: Duration.seconds(1) }),
    wakeOnOutput: "API listen on"
  })

describe("the readiness loop under TestClock", () => {
  it.effect("a check that never answers times out at its timeout, and is cancelled", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const hanging = scripted("ping", (run) => (run < 2 ? undefined : Either.right("OK")))
      const fiber = yield* Effect.fork(
        waitUntilReady(
          processUntil(exited),
          hanging.check,
          policy({ probeTimeout: Duration.seconds(2), deadline: Duration.seconds(30) })
        )
      )
      yield* TestClock.adjust("1999 millis")
      expect(hanging.state.inFlight).toBe(1)
      expect(hanging.state.cancelled).toBe(0)
      // The first run times out at 2 s and is cancelled; 2 ms later (the
      // fast spacing) the second run starts, and times out at 4002 ms.
      yield* TestClock.adjust("1 millis")
      expect(hanging.state.cancelled).toBe(1)
      yield* TestClock.adjust("4 seconds")
      const report = yield* Fiber.join(fiber)
      expect(report).toBeInstanceOf(ReadinessReport)
      expect(hanging.state.cancelled).toBe(2)
      expect(hanging.state.inFlight).toBe(0)
      expect(report.attempts).toBe(3)
    })
  )

  it.effect("attempts follow the policy's Schedule on the test clock", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const socket = readyAtSeventhRun()
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), socket.check, policy({}))
      )
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      expect(socket.state.runs).toEqual(FAST_SPACING_RUNS)
    })
  )

  it.effect("interrupting a wait cancels the check in flight and leaves no fiber", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const hanging = scripted("info", () => undefined)
      const fibers = yield* fiberTracker
      const fiber = yield* Effect.fork(
        fibers.supervise(waitUntilReady(processUntil(exited), hanging.check, policy({})))
      )
      yield* TestClock.adjust("100 millis")
      expect(hanging.state.inFlight).toBe(1)
      // The wait, its exit watcher, its attempt in flight.
      expect(yield* fibers.alive).toBeGreaterThanOrEqual(3)
      yield* Fiber.interrupt(fiber)
      expect(hanging.state.inFlight).toBe(0)
      expect(hanging.state.cancelled).toBe(1)
      expect(yield* fibers.alive).toBe(0)
    })
  )

  it.effect(
    "liveness: a check that hangs fails at each timeout; the threshold ends supervision",
    () =>
      Effect.gen(function* () {
        const exited = yield* Deferred.make<ExitStatus>()
        const process = processUntil(exited)
        // OK twice, then hangs.
        const liveness = scripted("liveness", (run) => (run < 2 ? Either.right("OK") : undefined))
        const daemon = yield* readyDaemon(process, liveness.check)
        const { failures, fiber } = yield* superviseRecording(daemon)
        yield* TestClock.adjust("1 minute")
        const outcome = yield* Fiber.join(fiber)
        // Checks at 0 and 1 s pass; from 2 s each hangs 2 s (its timeout)
        // and the next starts 1 s later: failures at 4, 7 and 10 s.
        expect(failures.map(([at]) => at)).toEqual([4000, 7000, 10000])
        expect(Either.isLeft(outcome) && outcome.left._tag).toBe("DaemonUnhealthy")
        expect(liveness.state.inFlight).toBe(0)
        expect(liveness.state.cancelled).toBe(3)
      })
  )

  it.effect(
    "liveness of several checks: a run counts once, whichever check fails, and a passing first check does not reset the count",
    () =>
      Effect.gen(function* () {
        const exited = yield* Deferred.make<ExitStatus>()
        const process = processUntil(exited)
        // `/_ping` always answers; containerd answers twice, then hangs.
        const ping = scripted("ping", () => Either.right("OK"))
        const containerd = scripted("containerd", (run) =>
          run < 2 ? Either.right("1.6") : undefined
        )
        const daemon = yield* readyDaemon(process, Probe.all([ping.check, containerd.check]))
        const { failures, fiber } = yield* superviseRecording(daemon)
        yield* TestClock.adjust("1 minute")
        expect(failures).toEqual([
          [4000, 1],
          [7000, 2],
          [10000, 3]
        ])
        const outcome = yield* Fiber.join(fiber)
        expect(Either.isLeft(outcome) && outcome.left).toMatchObject({
          _tag: "DaemonUnhealthy",
          consecutiveFailures: 3,
          lastFailure: { _tag: "ProbeTimedOut", probe: "containerd" }
        })
        expect(ping.state.runs).toEqual([0, 1000, 2000, 5000, 8000])
        expect(containerd.state.inFlight).toBe(0)
      })
  )
})

describe("output wake-ups", () => {
  it.effect("a line the policy names starts an attempt at once, whatever the spacing", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const check = scripted("socket", (_, now) =>
        now >= 1500 ? Either.right(1) : notYet("socket")
      )
      const process: ProcessHandle = {
        ...processUntil(exited),
        // The line comes split over two chunks, as pipes deliver it.
        output: Stream.fromIterableEffect(
          Effect.as(Effect.sleep("1500 millis"), [
            { source: "stderr" as const, text: 'level=info msg="API listen' },
            { source: "stderr" as const, text: ' on /run/docker.sock"\n' }
          ])
        )
      }
      const fiber = yield* Effect.fork(waitUntilReady(process, check.check, wokenByLine()))
      yield* TestClock.adjust("10 seconds")
      const report = yield* Fiber.join(fiber)
      // Attempts at 0 and 1000 ms by the spacing, then at the line.
      expect(check.state.runs).toEqual([0, 1000, 1500])
      expect(report.elapsedMs).toBe(1500)
    })
  )
})

describe("the policy's Schedule", () => {
  it.effect("a wake-up stream that ends (no watch could be set up): the spacing goes on", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const socket = readyAtSeventhRun(Stream.empty)
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), socket.check, policy({}))
      )
      yield* TestClock.adjust("100 millis")
      const report = yield* Fiber.join(fiber)
      // The watch's end wakes the loop once; then, not parked on a watch
      // that is not there, the Schedule's spacing goes on from its next step.
      expect(socket.state.runs).toEqual([0, 0, 3, 7.5, 14.25, 24.375, 39.5625])
      expect(report.attempts).toBe(7)
    })
  )

  it.effect("while a watched check says not yet, the loop waits for its wake-up", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const appeared = yield* Deferred.make<void>()
      const socket = scripted(
        "socket",
        (_, now) => (now >= 1234 ? Either.right(1) : notYet("socket")),
        Stream.fromEffect(Deferred.await(appeared))
      )
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), socket.check, policy({}))
      )
      yield* TestClock.adjust("1234 millis")
      yield* Deferred.succeed(appeared, undefined)
      const report = yield* Fiber.join(fiber)
      // Polled every 2 s (the fast policy's safety net) while parked, so not
      // again before the wake-up; then at once.
      expect(socket.state.runs).toEqual([0, 1234])
      expect(report.elapsedMs).toBe(1234)
    })
  )

  it.effect("any Schedule given drives the attempts; one that ends leaves it to the deadline", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const socket = scripted("socket", () => notYet("socket"))
      const fiber = yield* Effect.fork(
        Effect.flip(
          waitUntilReady(
            processUntil(exited),
            socket.check,
            policy({
              schedule: Schedule.spaced("250 millis").pipe(Schedule.compose(Schedule.recurs(3))),
              deadline: Duration.seconds(5)
            })
          )
        )
      )
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(fiber)
      expect(socket.state.runs).toEqual([0, 250, 500, 750])
      expect(error).toMatchObject({ _tag: "NotReadyByDeadline", elapsedMs: 5000, attempts: 4 })
    })
  )

  it.effect("a command probe (docker info in a sandbox) ready at 3 s is seen at 3 s", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const runs: Array<number> = []
      const dockerInfo = Probe.make(
        "docker info",
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          runs.push(now)
          return now >= 3000 ? Effect.succeed("20.10") : notYet("docker info")
        }),
        { startsProcess: true }
      )
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), dockerInfo, ReadinessPolicy.fast)
      )
      yield* TestClock.adjust("10 seconds")
      const report = yield* Fiber.join(fiber)
      // 1 s doubling: attempts at 0, 1 and 3 s.
      expect(runs).toEqual([0, 1000, 3000])
      expect(report.elapsedMs).toBe(3000)
    })
  )

  it("the presets' Schedules give their documented delays", () => {
    const delays = (schedule: Schedule.Schedule<unknown, unknown>, n: number) =>
      Chunk.toReadonlyArray(
        Effect.runSync(
          Schedule.run(
            Schedule.delays(schedule),
            0,
            Array.from({ length: n }, () => undefined)
          )
        )
      ).map(Duration.toMillis)
    expect(delays(ReadinessPolicy.fast.scheduleFor(false), 8)).toEqual([
      2, 3, 4.5, 6.75, 10.125, 15.1875, 22.78125, 34.171875
    ])
    expect(delays(ReadinessPolicy.fast.scheduleFor(false), 20).at(-1)).toBe(500)
    // A command probe: the longer of the two spacings at each step.
    expect(delays(ReadinessPolicy.fast.scheduleFor(true), 6)).toEqual([
      1000, 2000, 4000, 8000, 10000, 10000
    ])
    expect(delays(ReadinessPolicy.seed.scheduleFor(true), 3)).toEqual([1000, 1000, 1000])
  })
})

describe("the exit, the output and the events", () => {
  it.effect("an exit ends the wait at its moment, whatever is in flight", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const hanging = scripted("ping", () => undefined)
      const fiber = yield* Effect.fork(
        Effect.either(waitUntilReady(processUntil(exited), hanging.check, policy({})))
      )
      yield* TestClock.adjust("300 millis")
      yield* Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left).toMatchObject({
        _tag: "ExitedBeforeReady",
        elapsedMs: 300,
        status: { _tag: "Signaled", signal: "SIGKILL" }
      })
      expect(hanging.state).toMatchObject({ inFlight: 0, cancelled: 1 })
    })
  )

  it.effect("a line printed over two chunks wakes the wait", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const output = yield* makeOutputBuffer(10)
      const handle: ProcessHandle = { ...processUntil(exited), output: output.stream }
      const check = scripted("socket", (_, now) =>
        now >= 1500 ? Either.right(1) : notYet("socket")
      )
      const fiber = yield* Effect.fork(waitUntilReady(handle, check.check, wokenByLine()))
      yield* TestClock.adjust("1500 millis")
      yield* output.publish({ source: "stderr", text: 'level=info msg="API listen' })
      yield* output.publish({ source: "stderr", text: ' on /run/docker.sock"\n' })
      const report = yield* Fiber.join(fiber)
      expect(check.state.runs).toEqual([0, 1000, 1500])
      expect(report.elapsedMs).toBe(1500)
    })
  )

  it.effect("Readiness.events delivers every event, the last one Ready", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const socket = readyAtSeventhRun()
      const fiber = yield* Effect.fork(
        Stream.runCollect(events(processUntil(exited), socket.check, policy({})))
      )
      yield* TestClock.adjust("100 millis")
      const seen = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(seen.map((event) => event._tag)).toEqual([
        ...Array.from({ length: 7 }, () => "ProbeResult"),
        "Ready"
      ])
    })
  )

  it.effect("supervision ends with DaemonDied at the exit, and liveness checks stop", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const handle = processUntil(exited)
      const liveness = scripted("liveness", () => Either.right("OK"))
      const daemon = yield* readyDaemon(handle, liveness.check)
      const fiber = yield* Effect.fork(Effect.either(Supervisor.supervise(daemon)))
      yield* TestClock.adjust("2500 millis")
      yield* Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("DaemonDied")
      yield* TestClock.adjust("10 seconds")
      expect(liveness.state.runs).toEqual([0, 1000, 2000])
    })
  )
})
