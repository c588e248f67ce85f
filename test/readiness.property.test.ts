/**
 * Property tests of `waitUntilReady` on scripted processes under TestClock:
 * random schedules of socket appearance, probe answers and latencies
 * (`hang` until a later phase), hangs, crashes with codes and signals,
 * signals sent at random times (SIGTERM with a random reaction, SIGKILL,
 * SIGSTOP/SIGCONT, …) and random policies with small deadlines and probe
 * timeouts.
 *
 * Invariants, for every sample:
 * 1. the outcome is exactly one typed result: a `ReadinessReport`, or a
 *    single `Fail` of `ExitedBeforeReady` or `NotReadyByDeadline` (no
 *    defect, no interruption, no second error);
 * 2. nothing finishes past the deadline plus one tick;
 * 3. an exit before ready ends as `ExitedBeforeReady`, reported at the
 *    moment of the exit, never as a timeout; a report is never given for a
 *    process that was already dead; a timeout only for a live process;
 * 4. after the scoped run no process of it is running, and every fiber it
 *    forked (tracked by a `Supervisor` that notes the virtual time each one
 *    ends) is done, none later than the run itself.
 *
 * When the scripted process dies is the TestProcessManager's business, not
 * the wait's: the wait is checked against the exit it observed. What the
 * TestProcessManager does with signals is shown case by case in
 * test/testProcessManager.clock.test.ts (a model of it here would only
 * restate it).
 *
 * Deterministic: a fixed seed (override with FC_SEED, runs with FC_RUNS);
 * fast-check prints the seed and the path of a failing sample.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import { ExitedBeforeReady, NotReadyByDeadline } from "../src/errors.js"
import * as Probe from "../src/Probe.js"
import { ProcessManager, type SignalName } from "../src/ProcessManager.js"
import { describe as describeStatus, type ExitStatus } from "../src/ProcessStatus.js"
import { ReadinessReport, waitUntilReady } from "../src/Readiness.js"
import { ReadinessPolicy } from "../src/ReadinessPolicy.js"
import * as TestProcessManager from "../src/TestProcessManager.js"

const SEED = Number(process.env.FC_SEED ?? 1_737_000_123)
const RUNS = Number(process.env.FC_RUNS ?? 200)
const BATCH = Number(process.env.FC_BATCH ?? 10)

type Answer = TestProcessManager.ProbeAnswer

// Times are drawn in separate residue classes modulo 10 so that the events
// whose order decides an exit never fall on the same virtual millisecond:
// a scripted exit at 10k+1, a signal at 10k+3, an exit after SIGTERM at
// 10k+7 (the reaction time is 10j+4), probe phases at 10k+5.
const at = (residue: number, maxTens: number) =>
  fc.integer({ min: 0, max: maxTens }).map((tens) => tens * 10 + residue)

const answer: fc.Arbitrary<Answer> = fc.oneof(
  fc.constant<Answer>("absent"),
  fc.constant<Answer>("refused"),
  fc.constant<Answer>("hang"),
  fc.constant<Answer>("ok"),
  fc.constant<Answer>({ fail: "HTTP 500" }),
  fc.constant<Answer>({ value: { ServerVersion: "20.10.24" } })
)

const phases = (answers: fc.Arbitrary<Answer>) =>
  fc
    .uniqueArray(fc.record({ from: at(5, 80), answer: answers }), {
      maxLength: 4,
      selector: (phase) => phase.from
    })
    .map((list) => [...list].sort((a, b) => a.from - b.from))

const signalName: fc.Arbitrary<SignalName> = fc.oneof(
  { arbitrary: fc.constant<SignalName>("SIGTERM"), weight: 3 },
  { arbitrary: fc.constant<SignalName>("SIGSTOP"), weight: 3 },
  { arbitrary: fc.constant<SignalName>("SIGCONT"), weight: 3 },
  { arbitrary: fc.constantFrom<SignalName>("SIGINT", "SIGKILL", "SIGHUP", "SIGUSR1"), weight: 2 }
)

interface Sample {
  readonly script: {
    readonly exit?: { at: number; code: number } | { at: number; signal: SignalName }
    readonly onTerm?: number | "ignore"
    readonly output: ReadonlyArray<{ at: number; text: string }>
    readonly probes: Readonly<
      Record<"socket" | "ping" | "info", ReadonlyArray<{ from: number; answer: Answer }>>
    >
  }
  readonly signals: ReadonlyArray<{ readonly at: number; readonly signal: SignalName }>
  readonly killGrace: number
  readonly policy: ReadinessPolicy
}

/**
 * Random policies, built from their encoded form (milliseconds) so that the
 * optional knobs (waking on an output line or on probe events) are set when
 * the policy has them and ignored otherwise.
 */
const policy: fc.Arbitrary<ReadinessPolicy> = fc
  .record({
    initialDelay: fc.integer({ min: 0, max: 60 }),
    retry: fc.oneof(
      fc.record({
        _tag: fc.constant("FixedInterval" as const),
        interval: fc.integer({ min: 8, max: 120 })
      }),
      fc.record({
        _tag: fc.constant("ExponentialBackoff" as const),
        initial: fc.integer({ min: 2, max: 40 }),
        factor: fc.double({ min: 1, max: 3, noNaN: true }),
        max: fc.integer({ min: 1, max: 200 })
      })
    ),
    probeTimeout: fc.integer({ min: 1, max: 300 }),
    probeTimeouts: fc.oneof(
      fc.constant({}),
      fc.record({ socket: fc.integer({ min: 1, max: 100 }) })
    ),
    deadline: fc.integer({ min: 1, max: 600 }),
    wakeOnOutput: fc.option(fc.constant("API listen on"), { nil: undefined }),
    wakeOnProbeEvents: fc.boolean()
  })
  .map((encoded) => Schema.decodeUnknownSync(ReadinessPolicy)({ name: "random", ...encoded }))

/** Output lines: some say what dockerd says when it starts serving. */
const outputLine = fc.oneof(
  fc.string(),
  fc.constant('level=info msg="API listen on /run/docker.sock"\n'),
  fc.constant('level=info msg="Starting up"\n')
)

const sample: fc.Arbitrary<Sample> = fc.record({
  script: fc.record(
    {
      exit: fc.oneof(
        fc.record({ at: at(1, 100), code: fc.integer({ min: 0, max: 255 }) }),
        fc.record({
          at: at(1, 100),
          signal: fc.constantFrom<SignalName>("SIGKILL", "SIGSEGV", "SIGABRT", "SIGTERM")
        })
      ),
      onTerm: fc.oneof(at(4, 30), fc.constant<"ignore">("ignore")),
      output: fc.array(fc.record({ at: fc.integer({ min: 0, max: 900 }), text: outputLine }), {
        maxLength: 3
      }),
      probes: fc
        .record({
          socket: phases(
            fc.constantFrom<Answer>("absent", "refused", "ok", { fail: "not a socket" })
          ),
          ping: phases(answer),
          info: phases(answer),
          // Half the daemons become ready at some point: every probe answers
          // from then on (a `hang` before it is answered then).
          readyFrom: fc.option(at(5, 50), { nil: undefined })
        })
        .map(({ readyFrom, ...probes }) => {
          if (readyFrom === undefined) return probes
          const until = (list: ReadonlyArray<{ from: number; answer: Answer }>) => [
            ...list.filter((phase) => phase.from < readyFrom),
            { from: readyFrom, answer: "ok" as const }
          ]
          return {
            socket: until(probes.socket),
            ping: until(probes.ping),
            info: until(probes.info)
          }
        })
    },
    { requiredKeys: ["output", "probes"] }
  ),
  signals: fc.oneof(
    fc.uniqueArray(fc.record({ at: at(3, 60), signal: signalName }), {
      maxLength: 5,
      selector: (signal) => signal.at
    }),
    // Stopped, told to terminate, continued: what `Dockerd`'s stop does to
    // a daemon that may be stopped (SIGTERM, then SIGCONT).
    fc.uniqueArray(at(3, 40), { minLength: 3, maxLength: 3 }).chain((times) => {
      const [stop, term, cont] = [...times].sort((a, b) => a - b) as [number, number, number]
      return fc.constantFrom<SignalName>("SIGTERM", "SIGINT").map((signal) => [
        { at: stop, signal: "SIGSTOP" as SignalName },
        { at: term, signal },
        { at: cont, signal: "SIGCONT" as SignalName }
      ])
    })
  ),
  killGrace: fc.integer({ min: 0, max: 300 }),
  policy
})

interface Observed {
  readonly exit: Exit.Exit<ReadinessReport, unknown>
  readonly endAt: number
  readonly exitedAt: number | undefined
  readonly exitStatus: ExitStatus | undefined
  readonly runningAfter: number
  /** Virtual time at which the scoped run (wait, then scope close) returned. */
  readonly closedAt: number
}

/**
 * Tracks every fiber forked inside a region and the virtual time at which
 * each one ended, read from the TestClock as it ends.
 */
class FiberEnds extends Supervisor.AbstractSupervisor<void> {
  readonly alive = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  readonly ends: Array<number> = []
  constructor(private readonly now: () => number) {
    super()
  }
  get value() {
    return Effect.void
  }
  override onStart<A, E, R>(
    _context: Context.Context<R>,
    _effect: Effect.Effect<A, E, R>,
    _parent: Option.Option<Fiber.RuntimeFiber<unknown, unknown>>,
    fiber: Fiber.RuntimeFiber<A, E>
  ): void {
    this.alive.add(fiber)
  }
  override onEnd<A, E>(_value: Exit.Exit<A, E>, fiber: Fiber.RuntimeFiber<A, E>): void {
    this.alive.delete(fiber)
    this.ends.push(this.now())
  }
}

/** One sample: spawn, signal, wait, close the scope; under TestClock. */
const observe = (s: Sample) =>
  Effect.gen(function* () {
    const clock = yield* TestClock.testClock()
    const supervisor = new FiberEnds(() => clock.unsafeCurrentTimeMillis())
    const run = Effect.gen(function* () {
      const manager = yield* ProcessManager
      const test = yield* TestProcessManager.TestProcessManager
      let exitedAt: number | undefined
      let exitStatus: ExitStatus | undefined
      const result = yield* Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* manager.exec(["dockerd"], {
            killGrace: Duration.millis(s.killGrace)
          })
          yield* handle.awaitExit.pipe(
            Effect.flatMap((status) =>
              Effect.map(Clock.currentTimeMillis, (now) => {
                exitedAt = now
                exitStatus = status
              })
            ),
            Effect.forkScoped
          )
          for (const { at: time, signal } of s.signals) {
            yield* handle
              .signal(signal)
              .pipe(Effect.delay(Duration.millis(time)), Effect.forkScoped)
          }
          const probe = Probe.all([
            test.probe(handle.pid, "socket"),
            test.probe(handle.pid, "ping"),
            test.probe(handle.pid, "info")
          ])
          const exit = yield* Effect.exit(waitUntilReady(handle, probe, s.policy))
          return { exit, endAt: yield* Clock.currentTimeMillis }
        })
      )
      const running = yield* test.running
      return {
        ...result,
        exitedAt,
        exitStatus,
        runningAfter: running.length,
        closedAt: yield* Clock.currentTimeMillis
      } satisfies Observed
    }).pipe(
      Effect.supervised(supervisor),
      Effect.provide(
        TestProcessManager.layer([
          {
            match: "dockerd",
            script: {
              ...s.script,
              exit:
                s.script.exit === undefined
                  ? undefined
                  : { ...s.script.exit, at: Duration.millis(s.script.exit.at) },
              onTerm:
                typeof s.script.onTerm === "number"
                  ? Duration.millis(s.script.onTerm)
                  : s.script.onTerm
            } as TestProcessManager.ProcessScript
          }
        ])
      )
    )
    const fiber = yield* Effect.fork(run)
    const deadlineMs = Duration.toMillis(s.policy.deadline)
    yield* TestClock.adjust(Duration.millis(deadlineMs + s.killGrace + 2_000))
    const polled = yield* Fiber.poll(fiber)
    return {
      polled,
      fibersAlive: supervisor.alive.size,
      lastFiberEnd: Math.max(0, ...supervisor.ends)
    }
  }).pipe(Effect.provide(TestContext.TestContext), Logger.withMinimumLogLevel(LogLevel.None))

const fail = (why: string): never => {
  throw new Error(why)
}

/** Checks every invariant on one sample; throws with what broke. */
const check = (
  s: Sample,
  {
    fibersAlive,
    lastFiberEnd,
    polled
  }: {
    readonly polled: Option.Option<Exit.Exit<Observed, unknown>>
    readonly fibersAlive: number
    readonly lastFiberEnd: number
  }
): void => {
  const deadline = Duration.toMillis(s.policy.deadline)
  if (Option.isNone(polled)) return fail("the wait and its scope did not end by deadline + grace")
  if (Exit.isFailure(polled.value)) return fail(`the run died: ${Cause.pretty(polled.value.cause)}`)
  const o = polled.value.value
  // 1. exactly one typed result
  let kind: "ready" | "exited" | "deadline"
  if (Exit.isSuccess(o.exit)) {
    if (!(o.exit.value instanceof ReadinessReport)) return fail("success without a ReadinessReport")
    kind = "ready"
  } else {
    const cause = o.exit.cause
    if (cause._tag !== "Fail") return fail(`not a single typed failure: ${Cause.pretty(cause)}`)
    if (cause.error instanceof ExitedBeforeReady) kind = "exited"
    else if (cause.error instanceof NotReadyByDeadline) kind = "deadline"
    else return fail(`an untyped failure: ${String(cause.error)}`)
  }
  // 2. nothing finishes past the deadline plus one tick
  if (o.endAt > deadline + 1)
    return fail(`${kind} at ${o.endAt}ms, past the deadline ${deadline}ms`)
  // 3. exits are reported as exits, at once; no report for the dead
  const diedBefore = (t: number) => o.exitedAt !== undefined && o.exitedAt < t
  if (kind === "ready") {
    if (diedBefore(o.endAt))
      return fail(`ready at ${o.endAt}ms for a process dead since ${o.exitedAt}ms`)
    const report = (o.exit as Exit.Success<ReadinessReport, never>).value
    if (report.elapsedMs !== o.endAt) return fail("the report's elapsedMs is not the time of ready")
    if (report.results.some((r) => r._tag !== "ProbeSucceeded") || report.results.length !== 3)
      return fail("ready without three successful probes")
  }
  if (kind === "deadline") {
    if (o.endAt < deadline)
      return fail(`a timeout at ${o.endAt}ms, before the deadline ${deadline}ms`)
    if (diedBefore(deadline))
      return fail(`exited at ${o.exitedAt}ms, before the deadline, but reported as a timeout`)
  }
  if (kind === "exited") {
    const error = (o.exit as Exit.Failure<never, ExitedBeforeReady>)
      .cause as Cause.Fail<ExitedBeforeReady>
    if (o.exitedAt === undefined) return fail("ExitedBeforeReady for a process that did not exit")
    if (o.endAt !== o.exitedAt)
      return fail(`exited at ${o.exitedAt}ms but reported at ${o.endAt}ms: it kept waiting`)
    if (error.error.elapsedMs !== o.exitedAt)
      return fail("ExitedBeforeReady.elapsedMs is not the exit time")
    if (describeStatus(error.error.status) !== describeStatus(o.exitStatus!))
      return fail("ExitedBeforeReady does not carry the real status")
  }
  // 4. nothing left behind
  if (o.runningAfter !== 0)
    return fail(`${o.runningAfter} process(es) still running after the scope`)
  // Every fiber forked by the run ended, and none later (in virtual time)
  // than the run: `forkScoped` interrupts without waiting, so a fiber may
  // finish a few scheduler steps after, but never at a later instant.
  if (fibersAlive !== 0) return fail(`${fibersAlive} fiber(s) forked by the run are still alive`)
  if (lastFiberEnd > o.closedAt)
    return fail(
      `a fiber forked by the run ended at ${lastFiberEnd}ms, after the run ended at ${o.closedAt}ms`
    )
  return undefined
}

describe("waitUntilReady: properties over random scripts and policies (TestClock)", () => {
  it("every outcome is typed, on time, truthful about exits, and leaves nothing behind", async () => {
    const kinds = { ready: 0, exited: 0, deadline: 0 }
    // Samples run in batches, side by side: a TestClock step waits for a
    // real timer tick, so one sample at a time would mostly wait. A failing
    // batch shrinks down to the one failing sample.
    await fc.assert(
      fc.asyncProperty(fc.array(sample, { minLength: 1, maxLength: BATCH }), async (batch) => {
        const results = await Promise.all(batch.map((s) => Effect.runPromise(observe(s))))
        batch.forEach((s, i) => {
          const observed = results[i]!
          check(s, observed)
          const exit = Option.getOrThrow(observed.polled)
          if (Exit.isSuccess(exit)) {
            const o = exit.value.exit
            if (Exit.isSuccess(o)) kinds.ready++
            else if (o.cause._tag === "Fail" && o.cause.error instanceof ExitedBeforeReady)
              kinds.exited++
            else kinds.deadline++
          }
        })
      }),
      { seed: SEED, numRuns: Math.ceil((2 * RUNS) / (BATCH + 1)) }
    )
    console.log(`readiness properties: ${JSON.stringify(kinds)} (seed ${SEED})`)
    // The generator must reach every outcome, or the properties prove little.
    const total = kinds.ready + kinds.exited + kinds.deadline
    expect(kinds.ready).toBeGreaterThan(total / 20)
    expect(kinds.exited).toBeGreaterThan(total / 20)
    expect(kinds.deadline).toBeGreaterThan(total / 20)
  })
})
