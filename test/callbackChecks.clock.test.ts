/**
 * Checks in callback form (`Probe.fromCallback`, as the built-in socket and
 * Engine checks are) run by the readiness and liveness loops without a
 * fiber: their timeouts, spacing and cancellation, under TestClock. The
 * same loops with real sockets and a real dockerd are in the `.real` tests.
 * Also the process callbacks the loops take the exit and the output from.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { ProbeNotYet } from "../src/errors.js"
import type * as Dockerd from "../src/Dockerd.js"
import * as Driver from "../src/internal/driver.js"
import * as ExitNotice from "../src/internal/exitNotice.js"
import { makeOutputBuffer } from "../src/internal/outputBuffer.js"
import * as Probe from "../src/Probe.js"
import type { ProcessHandle } from "../src/ProcessManager.js"
import { type ExitStatus, Signaled } from "../src/ProcessStatus.js"
import { ReadinessReport, waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { processUntil, readyDaemon } from "./support/standIns.js"

/**
 * A callback check that records when it starts, answers with `answer(n)` for
 * the n-th run (`undefined`: never answers), and counts cancellations.
 */
const scripted = (
  name: string,
  now: () => number,
  answer: (run: number) => Either.Either<unknown, ProbeNotYet> | undefined
) => {
  const state = { runs: [] as Array<number>, cancelled: 0, inFlight: 0 }
  const check = Probe.fromCallback(name, (done) => {
    const run = state.runs.length
    state.runs.push(now())
    const result = answer(run)
    let over = false
    if (result === undefined) state.inFlight += 1
    else queueMicrotask(() => !over && done(result))
    return () => {
      if (over) return
      over = true
      if (result === undefined) {
        state.inFlight -= 1
        state.cancelled += 1
      }
    }
  })
  return { check, state }
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

/** Reads the test clock from callbacks. */
const testTime = Effect.map(Effect.clock, (clock) => () => clock.unsafeCurrentTimeMillis())

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
const readyAtSeventhRun = (now: () => number) =>
  scripted("socket", now, (run) => (run < 6 ? notYet("socket") : Either.right(1)))

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

describe("callback checks under TestClock", () => {
  it.effect("a check that never answers times out at its timeout, and is cancelled", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const now = yield* testTime
      const hanging = scripted("ping", now, (run) => (run < 2 ? undefined : Either.right("OK")))
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
      const now = yield* testTime
      const socket = readyAtSeventhRun(now)
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), socket.check, policy({}))
      )
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      expect(socket.state.runs).toEqual(FAST_SPACING_RUNS)
    })
  )

  it.effect("a watch that throws is one that could not start: the spacing goes on", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const now = yield* testTime
      const socket = readyAtSeventhRun(now)
      const check: Probe.Check = {
        ...socket.check,
        watch: () => {
          throw new Error("inotify watch limit reached")
        }
      }
      const fiber = yield* Effect.fork(waitUntilReady(processUntil(exited), check, policy({})))
      yield* TestClock.adjust("100 millis")
      const report = yield* Fiber.join(fiber)
      // Not parked on a watch that is not there: the Schedule's spacing.
      expect(socket.state.runs).toEqual(FAST_SPACING_RUNS)
      expect(report.attempts).toBe(7)
    })
  )

  it.effect("a handle whose exit callback throws: the wait dies of it, nothing is left", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const now = yield* testTime
      const socket = scripted("socket", now, () => notYet("socket"))
      const watching = { active: 0 }
      const check: Probe.Check = {
        ...socket.check,
        watch: () => {
          watching.active += 1
          return () => void (watching.active -= 1)
        }
      }
      const handle: ProcessHandle = {
        ...processUntil(exited),
        unsafeOnExit: () => {
          throw new Error("broken handle")
        }
      }
      const exit = yield* Effect.exit(waitUntilReady(handle, check, policy({})))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(watching.active).toBe(0)
      expect(socket.state.runs).toEqual([])
    })
  )

  it.effect("interrupting a wait cancels the check in flight and leaves no fiber", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const now = yield* testTime
      const hanging = scripted("info", now, () => undefined)
      const fiber = yield* Effect.fork(
        waitUntilReady(processUntil(exited), hanging.check, policy({}))
      )
      yield* TestClock.adjust("100 millis")
      expect(hanging.state.inFlight).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(hanging.state.inFlight).toBe(0)
      expect(hanging.state.cancelled).toBe(1)
    })
  )

  it.effect("an exit while a check is in flight is the error, and the check is cancelled", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const now = yield* testTime
      const hanging = scripted("ping", now, () => undefined)
      const fiber = yield* Effect.fork(
        Effect.either(waitUntilReady(processUntil(exited), hanging.check, policy({})))
      )
      yield* TestClock.adjust("300 millis")
      yield* Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("ExitedBeforeReady")
      expect(hanging.state.cancelled).toBe(1)
    })
  )

  it.effect(
    "liveness: a check that hangs fails at each timeout; the threshold ends supervision",
    () =>
      Effect.gen(function* () {
        const exited = yield* Deferred.make<ExitStatus>()
        const now = yield* testTime
        const process = processUntil(exited)
        // OK twice, then hangs.
        const liveness = scripted("liveness", now, (run) =>
          run < 2 ? Either.right("OK") : undefined
        )
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
        const now = yield* testTime
        const process = processUntil(exited)
        // `/_ping` always answers; containerd answers twice, then hangs.
        const ping = scripted("ping", now, () => Either.right("OK"))
        const containerd = scripted("containerd", now, (run) =>
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
      const now = yield* testTime
      const check = scripted("socket", now, () =>
        now() >= 1500 ? Either.right(1) : notYet("socket")
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

describe("Driver", () => {
  it.effect("runs a synchronous effect at once and follows one that goes async", () =>
    Effect.gen(function* () {
      const driver = yield* Driver.make
      const seen: Array<string> = []
      driver.run(Effect.succeed("sync"), (exit) =>
        seen.push(Exit.isSuccess(exit) ? exit.value : "?")
      )
      expect(seen).toEqual(["sync"])
      driver.run(Effect.as(Effect.sleep("1 second"), "async"), (exit) =>
        seen.push(Exit.isSuccess(exit) ? exit.value : "?")
      )
      expect(seen).toEqual(["sync"])
      yield* TestClock.adjust("1 second")
      yield* Effect.yieldNow()
      expect(seen).toEqual(["sync", "async"])
    })
  )

  it.effect("shutdown interrupts what still runs; a cancelled run reports nothing", () =>
    Effect.gen(function* () {
      const driver = yield* Driver.make
      const seen: Array<string> = []
      const cancel = driver.run(Effect.never, () => seen.push("never"))
      driver.schedule(1000, () => seen.push("timer"))
      cancel()
      yield* driver.shutdown
      yield* TestClock.adjust("2 seconds")
      expect(seen).toEqual([])
    })
  )
})

/**
 * A handle whose exit and output come as the library's process managers give
 * them (`unsafeOnExit`, `unsafeOnOutput`), counting the listeners in place.
 */
const managedProcess = Effect.gen(function* () {
  const notice = yield* ExitNotice.make
  const output = yield* makeOutputBuffer(10)
  const listening = { exit: 0, output: 0 }
  const counted =
    <A>(key: keyof typeof listening, add: (listener: (a: A) => void) => () => void) =>
    (listener: (a: A) => void) => {
      listening[key] += 1
      const remove = add(listener)
      let removed = false
      return () => {
        if (removed) return
        removed = true
        listening[key] -= 1
        remove()
      }
    }
  const handle: ProcessHandle = {
    ...processUntil(notice.exited),
    // Neither is used when the callbacks are there.
    awaitExit: Effect.die("awaitExit used"),
    output: Stream.die("output used"),
    unsafeOnExit: counted("exit", notice.onExit),
    unsafeOnOutput: counted("output", output.subscribe)
  }
  return { notice, output, listening, handle }
})

describe("process callbacks (unsafeOnExit, unsafeOnOutput)", () => {
  it.effect("an exit notice calls each listener once: in the turn of the exit, or at once", () =>
    Effect.gen(function* () {
      const notice = yield* ExitNotice.make
      const seen: Array<string> = []
      notice.onExit((status) => seen.push(`before ${status._tag}`))
      const removed = notice.onExit(() => seen.push("removed"))
      removed()
      expect(seen).toEqual([])
      yield* notice.complete(new Signaled({ signal: "SIGKILL" }))
      expect(seen).toEqual(["before Signaled"])
      yield* notice.complete(new Signaled({ signal: "SIGTERM" }))
      notice.onExit((status) => seen.push(`after ${status._tag}`))
      expect(seen).toEqual(["before Signaled", "after Signaled"])
      expect(yield* Deferred.await(notice.exited)).toEqual(new Signaled({ signal: "SIGKILL" }))
    })
  )

  it.effect("an output listener gets what is printed while it listens, until the end", () =>
    Effect.gen(function* () {
      const output = yield* makeOutputBuffer(10)
      yield* output.publish({ source: "stdout", text: "before\n" })
      const seen: Array<string> = []
      const stop = output.subscribe((chunk) => seen.push(chunk.text))
      yield* output.publish({ source: "stderr", text: "during\n" })
      stop()
      yield* output.publish({ source: "stdout", text: "after\n" })
      output.subscribe((chunk) => seen.push(chunk.text))
      yield* output.end
      yield* output.publish({ source: "stdout", text: "late\n" })
      expect(seen).toEqual(["during\n"])
      expect(yield* output.tail).toEqual(["before", "during", "after", "late"])
    })
  )

  it.effect("an exit ends the wait at its moment, with no fiber on awaitExit", () =>
    Effect.gen(function* () {
      const { handle, listening, notice } = yield* managedProcess
      const now = yield* testTime
      const hanging = scripted("ping", now, () => undefined)
      const fiber = yield* Effect.fork(
        Effect.either(waitUntilReady(handle, hanging.check, policy({})))
      )
      yield* TestClock.adjust("300 millis")
      expect(listening.exit).toBe(1)
      yield* notice.complete(new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("ExitedBeforeReady")
      expect(Either.isLeft(outcome) && outcome.left.elapsedMs).toBe(300)
      expect(hanging.state.cancelled).toBe(1)
      expect(listening).toEqual({ exit: 0, output: 0 })
    })
  )

  it.effect("a line printed over two chunks wakes the wait; ready removes every listener", () =>
    Effect.gen(function* () {
      const { handle, listening, output } = yield* managedProcess
      const now = yield* testTime
      // Fails (not a watched "not yet"), so the output is read from then on.
      const check = scripted("socket", now, () =>
        now() >= 1500 ? Either.right(1) : notYet("socket")
      )
      const fiber = yield* Effect.fork(waitUntilReady(handle, check.check, wokenByLine()))
      yield* TestClock.adjust("1500 millis")
      expect(listening).toEqual({ exit: 1, output: 1 })
      yield* output.publish({ source: "stderr", text: 'level=info msg="API listen' })
      yield* output.publish({ source: "stderr", text: ' on /run/docker.sock"\n' })
      const report = yield* Fiber.join(fiber)
      expect(check.state.runs).toEqual([0, 1000, 1500])
      expect(report.elapsedMs).toBe(1500)
      expect(listening).toEqual({ exit: 0, output: 0 })
    })
  )

  it.effect("supervision ends with DaemonDied at the exit; it always lets go of the listener", () =>
    Effect.gen(function* () {
      const { handle, listening, notice } = yield* managedProcess
      const now = yield* testTime
      const liveness = scripted("liveness", now, () => Either.right("OK"))
      const daemon = yield* readyDaemon(handle, liveness.check)
      // Interrupted, supervision lets go of the listener.
      const interrupted = yield* Effect.fork(Supervisor.supervise(daemon))
      yield* TestClock.adjust("500 millis")
      expect(listening.exit).toBe(1)
      yield* Fiber.interrupt(interrupted)
      expect(listening.exit).toBe(0)
      const fiber = yield* Effect.fork(Effect.either(Supervisor.supervise(daemon)))
      yield* TestClock.adjust("2500 millis")
      expect(listening.exit).toBe(1)
      yield* notice.complete(new Signaled({ signal: "SIGKILL" }))
      const outcome = yield* Fiber.join(fiber)
      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("DaemonDied")
      expect(liveness.state.runs).toEqual([0, 500, 1500, 2500])
      expect(listening.exit).toBe(0)
    })
  )
})
