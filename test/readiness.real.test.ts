/**
 * The timelines of readiness.clock.test.ts again, with real processes: the
 * fake dockerd on a unix socket in its own temp dir, the real probes, the
 * local ProcessManager and the real clock. What these show is what happened
 * and in which order; how long things take is what readiness.clock checks
 * under TestClock, and what the benchmark measures. A time checked here is
 * only ever a lower bound the product must keep (never ready before the
 * daemon serves, never at the deadline before it).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import * as DockerEngine from "../src/DockerEngine.js"
import * as LocalProcessManager from "../src/LocalProcessManager.js"
import * as Probe from "../src/Probe.js"
import type { ProcessHandle, ProcessManager } from "../src/ProcessManager.js"
import { type ReadinessEvent, waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import {
  exec,
  fakeDaemon,
  lineMatching,
  pgrep,
  tempDir,
  withProcesses
} from "./fixtures/processes.js"

/** socket, then `GET /_ping`, then `GET /info`: what a real dockerd is probed with. */
const engineProbe = (socket: string) =>
  Effect.zipWith(DockerEngine.make(socket), Probe.socketFile(socket), (client, file) =>
    Probe.all([file, Probe.enginePing(client), Probe.engineInfo(client)])
  )

/** `fast` with short probe timeouts and a short deadline, for the failing timelines. */
const short = new ReadinessPolicy.ReadinessPolicy({
  ...ReadinessPolicy.fast,
  name: "short",
  probeTimeout: Duration.millis(300),
  deadline: Duration.millis(1500)
})

/**
 * Starts the fake daemon with `flags(socket)`, waits on it with `probe` and
 * `policy`, and returns what happened. No process outlives the call.
 *
 * `after`: start the wait only once the daemon has logged a matching line, so
 * that a slow start on a busy machine cannot eat the short deadlines.
 */
const replay = <E>(
  flags: (socket: string) => ReadonlyArray<string>,
  probe: (
    socket: string,
    tag: string
  ) => Effect.Effect<Probe.Probe, E, ProcessManager | FileSystem.FileSystem | Scope.Scope>,
  policy: ReadinessPolicy.ReadinessPolicy,
  options: {
    readonly after?: RegExp
    readonly patterns?: ReadonlyArray<string>
    readonly onEvent?: (event: ReadinessEvent, daemon: ProcessHandle) => Effect.Effect<void>
  } = {}
) =>
  withProcesses(
    (tag) =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const socket = Path.join(dir, "docker.sock")
        const events: Array<ReadinessEvent> = []
        const handle: ProcessHandle = yield* exec(fakeDaemon(tag, ...flags(socket)))
        if (options.after !== undefined) yield* lineMatching(handle, options.after)
        const started = yield* Clock.currentTimeMillis
        const outcome = yield* Effect.either(
          waitUntilReady(
            handle,
            yield* probe(socket, tag).pipe(Effect.provide(NodeFileSystem.layer)),
            policy,
            {
              onEvent: (event) =>
                Effect.zipRight(
                  Effect.sync(() => events.push(event)),
                  options.onEvent?.(event, handle) ?? Effect.void
                )
            }
          )
        )
        const wallMs = (yield* Clock.currentTimeMillis) - started
        return { outcome, events, wallMs, handle }
      }),
    options.patterns
  )

const failureOf = <A, E>(outcome: Either.Either<A, E>): E => Either.getOrThrow(Either.flip(outcome))

describe("waitUntilReady with real processes and probes", () => {
  it.live(
    "fast: ready once the daemon serves, not before; the ping sent when the socket appeared was held and answered, never retried",
    () =>
      Effect.gen(function* () {
        const { outcome, events, handle } = yield* replay(
          (socket) => ["--socket", socket, "--listen-after", "300", "--serve-after", "800"],
          (socket) => engineProbe(socket),
          ReadinessPolicy.fast
        )
        const report = Either.getOrThrow(outcome)
        expect(report.pid).toBe(handle.pid)
        expect(report.policy).toBe("fast")
        expect(report.results.map((r) => [r._tag, r.probe])).toEqual([
          ["ProbeSucceeded", "socket"],
          ["ProbeSucceeded", "ping"],
          ["ProbeSucceeded", "info"]
        ])
        expect(report.resultOf("ping")).toMatchObject({ apiVersion: "1.41" })
        expect(report.resultOf("info")).toMatchObject({ ServerVersion: "fake-1.0", Driver: "vfs" })
        // The daemon serves 800 ms after its own start, which is after the wait's.
        expect(report.elapsedMs).toBeGreaterThanOrEqual(800)
        const results = events.flatMap((event) => (event._tag === "ProbeResult" ? [event] : []))
        // Every failure was the socket's "not yet" (none of the ping: it
        // waited on its connection until the daemon served)...
        expect(results[0]).toMatchObject({
          attempt: 1,
          outcome: { _tag: "ProbeNotYet", probe: "socket" }
        })
        expect(
          results
            .filter((result) => result.outcome._tag !== "ProbeSucceeded")
            .map((result) => result.outcome.probe)
        ).toEqual(results.slice(0, -3).map(() => "socket"))
        // ... and the attempt that found the socket is the one that was ready.
        expect(results.slice(-3).map((result) => [result.attempt, result.outcome._tag])).toEqual([
          [report.attempts, "ProbeSucceeded"],
          [report.attempts, "ProbeSucceeded"],
          [report.attempts, "ProbeSucceeded"]
        ])
        expect(events.at(-1)).toMatchObject({ _tag: "Ready", report })
      })
  )

  it.live("seed: the first attempt comes after the 2 s initial wait", () =>
    Effect.gen(function* () {
      const { outcome } = yield* replay(
        (socket) => ["--socket", socket, "--listen-after", "300", "--serve-after", "800"],
        (socket) => engineProbe(socket),
        ReadinessPolicy.seed
      )
      const report = Either.getOrThrow(outcome)
      expect(report.attempts).toBe(1)
      expect(report.elapsedMs).toBeGreaterThanOrEqual(2000)
    })
  )

  it.live(
    "an exit with a code before ready is ExitedBeforeReady (not the deadline's error), with its code and the last log line",
    () =>
      Effect.gen(function* () {
        const { outcome, handle, events } = yield* replay(
          () => ["--exit-after", "200", "--code", "3"],
          (socket) => engineProbe(socket),
          ReadinessPolicy.fast
        )
        const error = failureOf(outcome)
        if (error._tag !== "ExitedBeforeReady") throw new Error(`got ${error._tag}`)
        expect(error.pid).toBe(handle.pid)
        expect(error.status).toMatchObject({ _tag: "Exited", code: 3 })
        expect(error.logTail.at(-1)).toMatch(/level=fatal msg="exiting with code 3"/)
        expect(error.logTail[0]).toMatch(/Starting up/)
        expect(error.attempts).toBeGreaterThanOrEqual(1)
        expect(events.at(-1)).toMatchObject({ _tag: "Failed", error })
      })
  )

  it.live('a signal death is a death, not "still running"', () =>
    Effect.gen(function* () {
      const { outcome } = yield* replay(
        (socket) => ["--socket", socket, "--hang", "--signal-after", "500", "--signal", "SIGKILL"],
        (socket) => engineProbe(socket),
        ReadinessPolicy.fast
      )
      const error = failureOf(outcome)
      expect(error).toMatchObject({
        _tag: "ExitedBeforeReady",
        status: { _tag: "Signaled", signal: "SIGKILL" }
      })
      expect(error.logTail.at(-1)).toMatch(/killing myself with SIGKILL/)
    })
  )

  it.live("a socket that never appears ends at the deadline, not before", () =>
    Effect.gen(function* () {
      const policy = ReadinessPolicy.fast.withDeadline("1.5 seconds")
      const { outcome, wallMs } = yield* replay(
        () => [],
        (socket) => engineProbe(socket),
        policy,
        { after: /Starting up/ }
      )
      const error = failureOf(outcome)
      if (error._tag !== "NotReadyByDeadline") throw new Error(`got ${error._tag}`)
      expect(error.deadlineMs).toBe(1500)
      expect(error.lastFailures).toMatchObject([
        { _tag: "ProbeNotYet", probe: "socket", reason: expect.stringMatching(/^no socket at /) }
      ])
      // The socket's directory is watched: the loop does not poll the socket
      // again before the fast policy's 2 s safety net.
      expect(error.attempts).toBe(1)
      expect(error.logTail).toContainEqual(expect.stringMatching(/Starting up/))
      expect(error.elapsedMs).toBeGreaterThanOrEqual(1500)
      expect(wallMs).toBeGreaterThanOrEqual(1500)
    })
  )

  it.live("accepts connections and never answers: ping timeouts, then the deadline", () =>
    Effect.gen(function* () {
      const { outcome } = yield* replay(
        (socket) => ["--socket", socket, "--hang"],
        (socket) => engineProbe(socket),
        short,
        { after: /API listen on/ }
      )
      const error = failureOf(outcome)
      if (error._tag !== "NotReadyByDeadline") throw new Error(`got ${error._tag}`)
      expect(error.lastFailures).toMatchObject([
        { _tag: "ProbeTimedOut", probe: "ping", timeoutMs: 300 }
      ])
      expect(error.attempts).toBeGreaterThan(1)
    })
  )

  it.live("/_ping OK while /info hangs is not ready", () =>
    Effect.gen(function* () {
      const { outcome, events } = yield* replay(
        (socket) => ["--socket", socket, "--info-hang"],
        (socket) => engineProbe(socket),
        short,
        { after: /API listen on/ }
      )
      const error = failureOf(outcome)
      if (error._tag !== "NotReadyByDeadline") throw new Error(`got ${error._tag}`)
      expect(error.lastFailures).toMatchObject([
        { _tag: "ProbeTimedOut", probe: "info", timeoutMs: 300 }
      ])
      expect(events).toContainEqual(
        expect.objectContaining({
          _tag: "ProbeResult",
          outcome: expect.objectContaining({ _tag: "ProbeSucceeded", probe: "ping" })
        })
      )
    })
  )

  it.live(
    "the deadline is hard even when a probe hangs past it: a ping with a 5-minute timeout is cut at the 1.5 s deadline",
    () =>
      Effect.gen(function* () {
        const policy = new ReadinessPolicy.ReadinessPolicy({
          ...short,
          probeTimeout: Duration.minutes(5)
        })
        const { outcome, events } = yield* replay(
          (socket) => ["--socket", socket, "--hang"],
          (socket) => engineProbe(socket),
          policy,
          { after: /API listen on/ }
        )
        // Not a timeout of the ping (5 minutes; the test would have timed
        // out first): the deadline's error, the ping still in flight.
        expect(failureOf(outcome)).toMatchObject({
          _tag: "NotReadyByDeadline",
          deadlineMs: 1500,
          attempts: 1,
          lastFailures: []
        })
        expect(
          events.filter((event) => event._tag === "ProbeResult").map((event) => event.outcome._tag)
        ).toEqual(["ProbeSucceeded"])
      })
  )

  it.live(
    "a command probe is ready when its command exits 0, not yet while it cannot connect",
    () =>
      Effect.gen(function* () {
        // The daemon listens when told to, and it is told once the probe said "not yet".
        let told = false
        const { outcome, events } = yield* replay(
          (socket) => ["--socket", socket, "--listen-on", "SIGUSR1"],
          (socket, tag) =>
            Probe.command([process.execPath, "-e", FAKE_DOCKER_INFO, socket, tag], {
              name: "docker info"
            }),
          ReadinessPolicy.fast,
          {
            after: /waiting for SIGUSR1/,
            onEvent: (event, daemon) =>
              event._tag === "ProbeResult" && event.outcome._tag === "ProbeNotYet" && !told
                ? Effect.asVoid(Effect.tap(daemon.signal("SIGUSR1"), () => (told = true)))
                : Effect.void
          }
        )
        const report = Either.getOrThrow(outcome)
        expect(report.results).toMatchObject([
          {
            _tag: "ProbeSucceeded",
            probe: "docker info",
            value: JSON.stringify({ ServerVersion: "fake-1.0", Driver: "vfs" })
          }
        ])
        expect(events).toContainEqual(
          expect.objectContaining({
            _tag: "ProbeResult",
            outcome: expect.objectContaining({
              _tag: "ProbeNotYet",
              probe: "docker info",
              reason: expect.stringMatching(/Cannot connect to the Docker daemon/)
            })
          })
        )
      })
  )

  it.live(
    "docker CLI 20.10's template error while it cannot connect is 'not yet', not a failure",
    () =>
      Effect.gen(function* () {
        const check = yield* Probe.command(
          [
            "sh",
            "-c",
            `echo '{"ServerVersion":'; echo 'template: :1:24: executing "" at <.ServerVersion>: reflect: indirection through nil pointer to embedded struct field Info' >&2; exit 1`
          ],
          { name: "docker info" }
        )
        const failure = yield* Effect.flip(
          Probe.run(check, { timeoutFor: () => Duration.seconds(5) })
        )
        expect(failure).toMatchObject({
          _tag: "ProbeNotYet",
          probe: "docker info",
          reason: expect.stringMatching(/nil pointer to embedded struct field Info/)
        })
      }).pipe(Effect.provide(LocalProcessManager.layer))
  )

  it.live("a command probe that hangs times out and its process is killed", () =>
    Effect.gen(function* () {
      // A sleep no other test runs, to find it by.
      const sleep = `sleep 30.${Math.floor(Math.random() * 1e6)}`
      const checks: Array<boolean> = []
      const { outcome } = yield* replay(
        () => [],
        (_socket, tag) =>
          Probe.command(["sh", "-c", `${sleep}; echo unreachable`, tag], {
            name: "hanging command",
            timeout: "300 millis"
          }),
        short,
        {
          patterns: [sleep],
          // When a timeout is reported, its sleep is gone already.
          onEvent: (event) =>
            event._tag === "ProbeResult" && event.outcome._tag === "ProbeTimedOut"
              ? Effect.sync(() => checks.push(pgrep(sleep).length === 0))
              : Effect.void
        }
      )
      const error = failureOf(outcome)
      if (error._tag !== "NotReadyByDeadline") throw new Error(`got ${error._tag}`)
      expect(error.lastFailures).toMatchObject([
        { _tag: "ProbeTimedOut", probe: "hanging command", timeoutMs: 300 }
      ])
      expect(checks.length).toBeGreaterThan(0)
      expect(checks.every((gone) => gone)).toBe(true)
      expect(pgrep(sleep)).toEqual([])
    })
  )
})

/**
 * `docker info` in miniature: `GET /info` on the socket in argv[1], printed;
 * exits 0 on HTTP 200, and says what the Docker CLI says when it cannot connect.
 */
const FAKE_DOCKER_INFO = `
const socket = process.argv[1]
require("node:http")
  .get({ socketPath: socket, path: "/info", agent: false }, (res) => {
    let body = ""
    res.setEncoding("utf8")
    res.on("data", (chunk) => (body += chunk))
    res.on("end", () => process.stdout.write(body + "\\n", () => process.exit(res.statusCode === 200 ? 0 : 1)))
  })
  .on("error", () => {
    console.error("Cannot connect to the Docker daemon at unix://" + socket + ". Is the docker daemon running?")
    process.exit(1)
  })
`

describe("the socket check on what is not a socket", () => {
  it.live("a file or a directory at the path fails the check (not a `not yet`)", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync("/tmp/sdt-notsock-")
      try {
        writeFileSync(`${dir}/file.sock`, "")
        mkdirSync(`${dir}/dir.sock`)
        for (const [path, kind] of [
          [`${dir}/file.sock`, "file"],
          [`${dir}/dir.sock`, "directory"]
        ] as const) {
          const outcome = yield* Effect.either(
            Effect.flatMap(Probe.socketFile(path), (check) =>
              Probe.run(check, { timeoutFor: () => Duration.seconds(2) })
            )
          )
          expect(Either.isLeft(outcome) && outcome.left).toMatchObject({
            _tag: "ProbeFailed",
            probe: "socket",
            reason: `${path} is a ${kind}, not a socket`
          })
        }
        const missing = yield* Effect.either(
          Effect.flatMap(Probe.socketFile(`${dir}/none.sock`), (check) =>
            Probe.run(check, { timeoutFor: () => Duration.seconds(2) })
          )
        )
        expect(Either.isLeft(missing) && missing.left._tag).toBe("ProbeNotYet")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})
