/**
 * The seed's timelines replayed on scripted processes under TestClock, with
 * both presets; each outcome is asserted at its virtual time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { ProcessManager } from "../src/ProcessManager.js"
import * as Probe from "../src/Probe.js"
import { waitUntilReady, type ReadinessEvent } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as TestProcessManager from "../src/TestProcessManager.js"

type Script = TestProcessManager.ProcessScript

/** Runs a wait on a scripted dockerd and returns its outcome and virtual end time. */
const replay = (script: Script, policy: ReadinessPolicy.ReadinessPolicy) =>
  Effect.gen(function* () {
    const manager = yield* ProcessManager
    const test = yield* TestProcessManager.TestProcessManager
    const events: Array<ReadinessEvent> = []
    const fiber = yield* Effect.fork(
      Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* manager.exec(["dockerd", "--iptables=false"])
          const probe = Probe.all([
            test.probe(handle.pid, "socket"),
            test.probe(handle.pid, "ping"),
            test.probe(handle.pid, "info")
          ])
          const outcome = yield* Effect.either(
            waitUntilReady(handle, probe, policy, {
              onEvent: (event) => Effect.sync(() => events.push(event))
            })
          )
          return { outcome, at: yield* Clock.currentTimeMillis }
        })
      )
    )
    yield* TestClock.adjust("2 minutes")
    const result = yield* Fiber.join(fiber)
    return { ...result, events, running: yield* test.running }
  }).pipe(Effect.provide(TestProcessManager.layer([{ match: "dockerd", script }])))

const readyAt1200: Script = {
  output: [{ at: "50 millis", text: 'level=info msg="Starting up"\n' }],
  probes: {
    socket: [{ from: "1 second", answer: "ok" }],
    // dockerd holds connections accepted before it serves, then answers them.
    ping: [
      { from: "1 second", answer: "hang" },
      { from: "1200 millis", answer: "ok" }
    ],
    info: [{ from: "1200 millis", answer: { value: { ServerVersion: "20.10.24" } } }]
  }
}

describe("waitUntilReady on the seed's timelines (TestClock)", () => {
  it.effect("fast: ready the moment the daemon answers", () =>
    Effect.gen(function* () {
      const { outcome, at, events, running } = yield* replay(readyAt1200, ReadinessPolicy.fast)
      const report = Either.getOrThrow(outcome)
      expect(at).toBe(1200)
      expect(report.elapsedMs).toBe(1200)
      expect(report.resultOf("info")).toEqual({ ServerVersion: "20.10.24" })
      expect(report.results.map((r) => r._tag)).toEqual([
        "ProbeSucceeded",
        "ProbeSucceeded",
        "ProbeSucceeded"
      ])
      expect(events.at(-1)?._tag).toBe("Ready")
      expect(running).toEqual([])
    })
  )

  it.effect("seed: the first attempt comes after the 2 s initial wait", () =>
    Effect.gen(function* () {
      const { outcome, at } = yield* replay(readyAt1200, ReadinessPolicy.seed)
      const report = Either.getOrThrow(outcome)
      expect(at).toBe(2000)
      expect(report.attempts).toBe(1)
    })
  )

  for (const policy of [ReadinessPolicy.fast, ReadinessPolicy.seed]) {
    it.effect(`${policy.name}: an exit with a code is reported at the moment it happens`, () =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* replay(
          {
            output: [{ at: "40 millis", text: "unknown flag: --no-such-flag\n" }],
            exit: { at: "50 millis", code: 1 }
          },
          policy
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(50)
        expect(error._tag).toBe("ExitedBeforeReady")
        if (error._tag !== "ExitedBeforeReady") return
        expect(error.status).toMatchObject({ _tag: "Exited", code: 1 })
        expect(error.logTail).toEqual(["unknown flag: --no-such-flag"])
        expect(running).toEqual([])
      })
    )

    it.effect(`${policy.name}: a signal death is a death, not "still running"`, () =>
      Effect.gen(function* () {
        const { outcome, at } = yield* replay(
          {
            probes: { socket: [{ from: "100 millis", answer: "ok" }] },
            exit: { at: "3500 millis", signal: "SIGKILL" }
          },
          policy
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(3500)
        expect(error).toMatchObject({
          _tag: "ExitedBeforeReady",
          status: { _tag: "Signaled", signal: "SIGKILL" }
        })
      })
    )

    it.effect(`${policy.name}: a socket that never appears ends at the deadline`, () =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* replay({}, policy)
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(Duration.toMillis(policy.deadline))
        expect(error._tag).toBe("NotReadyByDeadline")
        if (error._tag !== "NotReadyByDeadline") return
        expect(error.lastFailures).toMatchObject([
          { _tag: "ProbeNotYet", probe: "socket", reason: "no socket" }
        ])
        expect(error.attempts).toBeGreaterThan(1)
        expect(running).toEqual([])
      })
    )

    it.effect(
      `${policy.name}: accepts connections and never answers: probe timeouts, then the deadline`,
      () =>
        Effect.gen(function* () {
          const { outcome, at } = yield* replay(
            {
              probes: {
                socket: [{ from: "100 millis", answer: "ok" }],
                ping: [{ from: "100 millis", answer: "hang" }]
              }
            },
            policy
          )
          const error = Either.flip(outcome).pipe(Either.getOrThrow)
          expect(at).toBe(Duration.toMillis(policy.deadline))
          expect(error).toMatchObject({ _tag: "NotReadyByDeadline" })
          if (error._tag !== "NotReadyByDeadline") return
          expect(error.lastFailures.map((f) => [f._tag, f.probe])).toEqual([
            ["ProbeTimedOut", "ping"]
          ])
        })
    )

    it.effect(`${policy.name}: /_ping OK while /info hangs is not ready`, () =>
      Effect.gen(function* () {
        const { outcome, at } = yield* replay(
          {
            probes: {
              socket: [{ from: "100 millis", answer: "ok" }],
              ping: [{ from: "120 millis", answer: "ok" }],
              info: [{ from: "100 millis", answer: "hang" }]
            }
          },
          policy
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(Duration.toMillis(policy.deadline))
        if (error._tag !== "NotReadyByDeadline") throw new Error(error._tag)
        expect(error.lastFailures).toMatchObject([
          {
            _tag: "ProbeTimedOut",
            probe: "info",
            timeoutMs: Duration.toMillis(policy.timeoutFor("info"))
          }
        ])
      })
    )
  }

  it.effect(
    "the deadline is hard even when a probe hangs past it: a check with a 5-minute timeout is cut at the 30 s deadline",
    () =>
      Effect.gen(function* () {
        const policy = new ReadinessPolicy.ReadinessPolicy({
          ...ReadinessPolicy.fast,
          probeTimeout: Duration.minutes(5),
          deadline: ReadinessPolicy.fast.deadline
        })
        const { outcome, at, events, running } = yield* replay(
          { probes: { socket: [{ from: "0 millis", answer: "hang" }] } },
          policy
        )
        expect(at).toBe(30_000)
        // The deadline's error, with the first check still in flight: no
        // attempt ended, so none failed.
        expect(Either.flip(outcome).pipe(Either.getOrThrow)).toMatchObject({
          _tag: "NotReadyByDeadline",
          deadlineMs: 30_000,
          elapsedMs: 30_000,
          attempts: 1,
          lastFailures: []
        })
        expect(events.filter((event) => event._tag === "ProbeResult")).toEqual([])
        expect(running).toEqual([])
      })
  )
})
