/**
 * ContainerProcessManager against a real, isolated dockerd (test/support/
 * testDaemon.ts) and a busybox container: the cases of the local manager's
 * tests, plus what only a container has (an Engine that is not there, a
 * container that dies under a process). After each case nothing of it is
 * left running in the container.
 */
import { describe, expect, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ContainerProcessManager from "../src/ContainerProcessManager.js"
import type { BinaryNotFound, SpawnFailed } from "../src/errors.js"
import { type ExecOptions, type ProcessHandle, ProcessManager } from "../src/ProcessManager.js"
import * as TestDaemon from "./support/testDaemon.js"

/** The daemon and the container the manager under test runs processes in. */
class Sandbox extends Context.Tag("test/Sandbox")<
  Sandbox,
  { readonly daemon: TestDaemon.TestDaemon; readonly containerId: string }
>() {}

const SandboxLive = Layer.scoped(
  Sandbox,
  Effect.gen(function* () {
    const daemon = yield* TestDaemon.start()
    yield* TestDaemon.importBusybox(daemon)
    const containerId = yield* TestDaemon.busyboxContainer(daemon)
    return { daemon, containerId }
  })
)

const ManagerLive = Layer.unwrapEffect(
  Effect.map(Sandbox, ({ daemon, containerId }) =>
    ContainerProcessManager.layer({ socket: daemon.socket, containerId })
  )
)

const exec = (
  argv: readonly [string, ...Array<string>],
  options?: ExecOptions
): Effect.Effect<ProcessHandle, BinaryNotFound | SpawnFailed, ProcessManager | Scope.Scope> =>
  Effect.flatMap(ProcessManager, (manager) => manager.exec(argv, options))

/** Runs a command in the container to its end; its output lines. */
const output = (argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* exec(argv)
      expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
      return { pid: handle.pid, lines: yield* handle.logTail }
    })
  ).pipe(Effect.orDie)

/** The state letter of `pid` in the container (`S`, `T`, `Z`, …), `""` when gone. */
const stateOf = (pid: number) =>
  Effect.map(
    output(["sh", "-c", 'cat "/proc/$1/stat" 2>/dev/null || true', "sh", String(pid)]),
    ({ lines }) => /^\d+ \(.*\) (\w)/.exec(lines[0] ?? "")?.[1] ?? ""
  )

const isRunning = (pid: number) =>
  Effect.map(stateOf(pid), (state) => !["", "Z", "X"].includes(state))

/** Processes running in the container, apart from its `sleep` (pid 1) and the `ps` that looks. */
const runningInContainer = Effect.map(output(["ps", "-o", "pid,stat,args"]), ({ pid, lines }) =>
  lines.slice(1).filter((line) => {
    const [listed, stat] = line.trim().split(/\s+/)
    return Number(listed) !== 1 && Number(listed) !== pid && !stat?.startsWith("Z")
  })
)

/**
 * Polls `check` until it holds or `within` has passed; its last result. The
 * limit is where a test gives up, not a timing claim.
 */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, within = 20_000) =>
  Effect.gen(function* () {
    const until = Date.now() + within
    for (;;) {
      if (yield* check) return true
      if (Date.now() > until) return false
      yield* Effect.sleep("50 millis")
    }
  })

/** Runs `body` in its own scope, then checks nothing of it is left running in the container. */
const withNothingLeft = <A, E>(body: Effect.Effect<A, E, ProcessManager | Scope.Scope>) =>
  Effect.gen(function* () {
    const result = yield* Effect.scoped(body)
    yield* eventually(Effect.map(runningInContainer, (left) => left.length === 0))
    expect(yield* runningInContainer).toEqual([])
    return result
  })

/** Waits until a line of the tail matches `pattern`; that line. */
const lineMatching = (handle: ProcessHandle, pattern: RegExp) =>
  Effect.gen(function* () {
    for (let i = 0; i < 250; i++) {
      const line = (yield* handle.logTail).find((l) => pattern.test(l))
      if (line !== undefined) return line
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`no line matching ${pattern} in the tail`)
  })

describe.skipIf(!TestDaemon.runsRealDaemon)("ContainerProcessManager in a real container", () => {
  layer(Layer.provideMerge(ManagerLive, SandboxLive), {
    timeout: "120 seconds",
    excludeTestServices: true
  })((it) => {
    it.effect("a started process has its pid in the container and is Running", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const argv = ["sleep", "30"] as const
          const handle = yield* exec(argv)
          expect(handle.pid).toBeGreaterThan(1)
          expect(handle.argv).toEqual(argv)
          expect(yield* handle.status).toMatchObject({ _tag: "Running" })
          // The pid is the command's own: the start script exec'd into it.
          const stat = yield* output(["cat", `/proc/${handle.pid}/cmdline`])
          expect(stat.lines[0]?.split("\0").slice(0, 2)).toEqual(["sleep", "30"])
          expect(yield* isRunning(handle.pid)).toBe(true)
        })
      )
    )

    it.effect("an exit with a code is Exited with that code", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["sh", "-c", "sleep 0.1; exit 7"])
          const status = yield* handle.awaitExit
          expect(status).toMatchObject({ _tag: "Exited", code: 7 })
          expect(yield* handle.status).toEqual(status)
          // Waiting again answers at once, with the same status.
          expect(yield* handle.awaitExit).toEqual(status)
          expect(yield* isRunning(handle.pid)).toBe(false)
        })
      )
    )

    it.effect("exit code 0 is Exited 0", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["true"])
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        })
      )
    )

    for (const signal of ["SIGKILL", "SIGTERM", "SIGSEGV"] as const) {
      it.effect(`death by ${signal} is Signaled ${signal}, never an exit code`, () =>
        withNothingLeft(
          Effect.gen(function* () {
            const handle = yield* exec(["sleep", "30"])
            expect(yield* handle.signal(signal)).toBe(true)
            const status = yield* handle.awaitExit
            expect(status).toEqual(expect.objectContaining({ _tag: "Signaled", signal }))
            expect(status).not.toHaveProperty("code")
            expect(yield* handle.status).toEqual(status)
          })
        )
      )
    }

    it.effect("a signal from elsewhere reads as the Engine reports it: exit code 128+n", () =>
      withNothingLeft(
        Effect.gen(function* () {
          // The exec API reports `kill -KILL $$` and `exit 137` alike; only a
          // signal this manager delivered (or the container's death) is told apart.
          const handle = yield* exec(["sh", "-c", "kill -KILL $$"])
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 137 })
        })
      )
    )

    it.effect("a process that dies with its container is Signaled SIGKILL", () =>
      Effect.gen(function* () {
        const { daemon } = yield* Sandbox
        const other = yield* TestDaemon.busyboxContainer(daemon)
        const manager = yield* ContainerProcessManager.make({
          socket: daemon.socket,
          containerId: other
        })
        const handle = yield* manager.exec(["sleep", "30"])
        yield* daemon.engine.request("POST", `/containers/${other}/kill`)
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Signaled", signal: "SIGKILL" })
        // A stopped container takes no new process.
        const error = yield* Effect.flip(manager.exec(["true"]))
        expect(error).toMatchObject({ _tag: "SpawnFailed" })
        expect(error.message).toMatch(/is not running/)
      }).pipe(Effect.scoped)
    )

    it.effect("output streams chunks from both stdout and stderr, and ends with the process", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec([
            "sh",
            "-c",
            "sleep 0.5; echo to-stdout; echo to-stderr >&2; sleep 0.1; echo again"
          ])
          const collecting = yield* Effect.fork(Stream.runCollect(handle.output))
          const chunks = Chunk.toReadonlyArray(yield* Fiber.join(collecting))
          const text = (source: string) =>
            chunks
              .filter((chunk) => chunk.source === source)
              .map((chunk) => chunk.text)
              .join("")
          expect(text("stdout")).toBe("to-stdout\nagain\n")
          expect(text("stderr")).toBe("to-stderr\n")
          expect(yield* handle.status).toMatchObject({ _tag: "Exited", code: 0 })
          // Subscribing after the end gives an empty stream, not a hang.
          expect(Chunk.size(yield* Stream.runCollect(handle.output))).toBe(0)
          // stdout and stderr are copied apart: lines keep their order within
          // a source, not across sources.
          const tail = yield* handle.logTail
          expect(tail.filter((line) => line !== "to-stderr")).toEqual(["to-stdout", "again"])
          expect([...tail].sort()).toEqual(["again", "to-stderr", "to-stdout"])
        })
      )
    )

    it.effect("multi-byte characters split across frames arrive whole", () =>
      withNothingLeft(
        Effect.gen(function* () {
          // printf writes the bytes of "é" (c3 a9) in two writes: two frames.
          const handle = yield* exec(["sh", "-c", "printf '\\303'; sleep 0.1; printf '\\251\\n'"])
          yield* handle.awaitExit
          expect(yield* handle.logTail).toEqual(["é"])
        })
      )
    )

    it.effect("the log tail keeps only the last lines of 100k", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const small = yield* exec(["seq", "1", "100000"], { tailLines: 10 })
          const byDefault = yield* exec(["seq", "1", "100000"])
          expect(yield* small.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
          expect(yield* byDefault.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
          expect(yield* small.logTail).toEqual(
            Array.from({ length: 10 }, (_, i) => String(99991 + i))
          )
          const defaultTail = yield* byDefault.logTail
          expect(defaultTail).toHaveLength(100)
          expect(defaultTail[0]).toBe("99901")
          expect(defaultTail.at(-1)).toBe("100000")
        })
      )
    )

    it.effect("signal stops, continues and terminates; on a finished process it is false", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["sleep", "30"])

          expect(yield* handle.signal("SIGSTOP")).toBe(true)
          expect(yield* eventually(Effect.map(stateOf(handle.pid), (s) => s === "T"))).toBe(true)
          expect(yield* handle.status).toMatchObject({ _tag: "Running" })

          expect(yield* handle.signal("SIGCONT")).toBe(true)
          expect(yield* eventually(Effect.map(stateOf(handle.pid), (s) => s !== "T"))).toBe(true)
          expect(yield* handle.status).toMatchObject({ _tag: "Running" })

          expect(yield* handle.signal("SIGTERM")).toBe(true)
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Signaled", signal: "SIGTERM" })

          expect(yield* handle.signal("SIGTERM")).toBe(false)
          expect(yield* handle.signal("SIGKILL")).toBe(false)
        })
      )
    )

    it.effect("a missing binary fails with BinaryNotFound before anything runs", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const onPath = yield* Effect.flip(exec(["sandbox-docker-no-such-binary", "--version"]))
          expect(onPath._tag).toBe("BinaryNotFound")
          if (onPath._tag !== "BinaryNotFound") return
          expect(onPath.binary).toBe("sandbox-docker-no-such-binary")
          // The container's PATH, as the image sets it.
          expect(onPath.searched).toContain("/bin")

          const absolute = yield* Effect.flip(exec(["/no/such/dir/dockerd"]))
          expect(absolute).toMatchObject({ _tag: "BinaryNotFound", binary: "/no/such/dir/dockerd" })

          // A file that exists but is not executable is not a binary either.
          const notExecutable = yield* Effect.flip(exec(["/etc/passwd"]))
          expect(notExecutable._tag).toBe("BinaryNotFound")

          // User values are arguments, never shell text.
          const injected = yield* Effect.flip(exec(["true; touch /tmp/injected"]))
          expect(injected._tag).toBe("BinaryNotFound")
          expect(yield* output(["ls", "/tmp"])).toMatchObject({ lines: [] })
        })
      )
    )

    it.effect("a working directory that does not exist fails with SpawnFailed", () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(exec(["true"], { cwd: "/no/such/working/dir" }))
        expect(error._tag).toBe("SpawnFailed")
        expect(error.message).toMatch(/no\/such\/working\/dir/)
      }).pipe(Effect.scoped)
    )

    it.effect("a container that does not exist fails with SpawnFailed naming it", () =>
      Effect.gen(function* () {
        const { daemon } = yield* Sandbox
        const manager = yield* ContainerProcessManager.make({
          socket: daemon.socket,
          containerId: "sandbox-docker-no-such-container"
        })
        const error = yield* Effect.flip(manager.exec(["true"]))
        expect(error._tag).toBe("SpawnFailed")
        expect(error.message).toMatch(/sandbox-docker-no-such-container/)
      }).pipe(Effect.scoped)
    )

    it.effect(
      "closing the scope escalates to SIGKILL after killGrace and kills the whole group",
      () =>
        withNothingLeft(
          Effect.gen(function* () {
            let child = 0
            const { handle, closing } = yield* Effect.gen(function* () {
              // The ignored SIGTERM is inherited by the child `sleep`.
              const handle = yield* exec(
                ["sh", "-c", "trap '' TERM; sleep 1000 & echo child $!; wait"],
                { killGrace: "300 millis" }
              )
              child = Number(/child (\d+)/.exec(yield* lineMatching(handle, /child \d+/))?.[1])
              expect(yield* isRunning(child)).toBe(true)
              return { handle, closing: Date.now() }
            }).pipe(Effect.scoped)
            const closedInMs = Date.now() - closing
            // Not before the grace (how long after it is the machine's business).
            expect(closedInMs).toBeGreaterThanOrEqual(300)
            expect(yield* handle.status).toMatchObject({ _tag: "Signaled", signal: "SIGKILL" })
            expect(yield* isRunning(handle.pid)).toBe(false)
            expect(yield* isRunning(child)).toBe(false)
          })
        )
    )

    it.effect(
      "closing the scope sends SIGTERM first: a process that obeys is Signaled SIGTERM",
      () =>
        withNothingLeft(
          Effect.gen(function* () {
            const handle = yield* Effect.scoped(exec(["sleep", "1000"], { killGrace: "5 seconds" }))
            expect(yield* handle.status).toMatchObject({ _tag: "Signaled", signal: "SIGTERM" })
          })
        )
    )

    it.effect("a grandchild left behind by a leader that exited is killed with the scope", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const child = yield* Effect.gen(function* () {
            const handle = yield* exec(["sh", "-c", "sleep 1000 & echo child $!; sleep 0.3"])
            const child = Number(/child (\d+)/.exec(yield* lineMatching(handle, /child \d+/))?.[1])
            expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
            // The leader is gone, its child is not (yet). (The Engine holds the
            // leader's output, which the child keeps open, for 2 s, and reports
            // the container's later exits only after that.)
            expect(yield* isRunning(child)).toBe(true)
            return child
          }).pipe(Effect.scoped)
          expect(yield* isRunning(child)).toBe(false)
        })
      )
    )

    it.effect("env and cwd reach the process; the container's own environment is kept", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(
            ["sh", "-c", 'echo "$SANDBOX_DOCKER_TEST"; pwd; echo "${PATH:+has-path}"'],
            { cwd: "/etc", env: { SANDBOX_DOCKER_TEST: "hello from env; $(not run)" } }
          )
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
          expect(yield* handle.logTail).toEqual(["hello from env; $(not run)", "/etc", "has-path"])
        })
      )
    )

    it.effect("stdin text reaches the process, which then sees its end", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(
            ["sh", "-c", 'while read -r line; do echo "got: $line"; done; echo eof'],
            { stdin: "first line\nsecond line\n" }
          )
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
          expect(yield* handle.logTail).toEqual(["got: first line", "got: second line", "eof"])
        })
      )
    )

    it.effect("an exec interrupted at any point leaves nothing running", () =>
      withNothingLeft(
        Effect.forEach(
          [1, 10, 25, 50, 75, 100, 150],
          (ms) =>
            Effect.scoped(
              Effect.gen(function* () {
                // Interrupted while the exec is created, started or reporting its pid.
                yield* Effect.timeout(exec(["sleep", "1000"], { killGrace: "1 second" }), ms).pipe(
                  Effect.ignore
                )
              })
            ),
          { discard: true }
        )
      )
    )

    it.effect("keepOutput: a subscriber that comes after the exit still gets all the output", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["sh", "-c", "echo one; echo two >&2; echo three"], {
            keepOutput: 1024
          })
          yield* handle.awaitExit
          const text = Chunk.toReadonlyArray(yield* Stream.runCollect(handle.output))
            .map((chunk) => chunk.text)
            .join("")
          expect(
            text
              .split("\n")
              .filter((line) => line.length > 0)
              .sort()
          ).toEqual(["one", "three", "two"])
        })
      )
    )

    it.effect("without keepOutput, a late subscriber gets no old output (and does not wait)", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["echo", "one"])
          yield* handle.awaitExit
          expect(Chunk.size(yield* Stream.runCollect(handle.output))).toBe(0)
          expect(yield* handle.logTail).toEqual(["one"])
        })
      )
    )

    it.effect("without stdin the process sees its end at once", () =>
      withNothingLeft(
        Effect.gen(function* () {
          const handle = yield* exec(["cat"])
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        })
      )
    )
  })
})
