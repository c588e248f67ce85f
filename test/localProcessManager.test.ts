/**
 * LocalProcessManager with real short-lived processes: statuses, output,
 * signals, a missing binary, and the guarantee that nothing outlives the
 * scope, a process group that ignores SIGTERM included.
 */
import { existsSync } from "node:fs"
import { mkdir, realpath, writeFile } from "node:fs/promises"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import {
  descendants,
  eventually,
  exec,
  fakeDaemon,
  isAlive,
  lineMatching,
  stateOf,
  tempDir,
  withProcesses
} from "./fixtures/processes.js"

describe("LocalProcessManager with real processes", () => {
  it.live("a started process has a pid and is Running", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const argv = fakeDaemon(tag)
        const handle = yield* exec(argv)
        expect(handle.pid).toBeGreaterThan(0)
        expect(handle.argv).toEqual(argv)
        expect(isAlive(handle.pid)).toBe(true)
        expect(yield* handle.status).toMatchObject({ _tag: "Running" })
        yield* lineMatching(handle, /Starting up/)
        expect(yield* handle.status).toMatchObject({ _tag: "Running" })
      })
    )
  )

  it.live("an exit with a code is Exited with that code", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec(fakeDaemon(tag, "--exit-after", "100", "--code", "7"))
        const status = yield* handle.awaitExit
        expect(status).toMatchObject({ _tag: "Exited", code: 7 })
        expect(yield* handle.status).toEqual(status)
        // Waiting again answers at once, with the same status.
        expect(yield* handle.awaitExit).toEqual(status)
        expect(isAlive(handle.pid)).toBe(false)
      })
    )
  )

  it.live("exit code 0 is Exited 0", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec(fakeDaemon(tag, "--exit-after", "0"))
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
      })
    )
  )

  for (const signal of ["SIGKILL", "SIGTERM", "SIGSEGV"] as const) {
    it.live(`death by ${signal} is Signaled ${signal}, never an exit code`, () =>
      withProcesses((tag) =>
        Effect.gen(function* () {
          const handle = yield* exec(fakeDaemon(tag, "--signal-after", "100", "--signal", signal))
          const status = yield* handle.awaitExit
          expect(status).toEqual(expect.objectContaining({ _tag: "Signaled", signal }))
          expect(status).not.toHaveProperty("code")
          expect(yield* handle.status).toEqual(status)
        })
      )
    )
  }

  it.live("output streams chunks from both stdout and stderr, and ends with the process", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec([
          "sh",
          "-c",
          "sleep 0.5; echo to-stdout; echo to-stderr >&2; sleep 0.1; echo again",
          tag
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
        expect(yield* handle.logTail).toEqual(["to-stdout", "to-stderr", "again"])
      })
    )
  )

  it.live("the log tail keeps only the last lines of 100k", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const args = ["--print-lines", "100000", "--exit-after", "0"]
        const small = yield* exec(fakeDaemon(tag, ...args), { tailLines: 10 })
        const byDefault = yield* exec(fakeDaemon(tag, ...args))
        expect(yield* small.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        expect(yield* byDefault.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })

        const tail = yield* small.logTail
        expect(tail).toHaveLength(10)
        expect(tail.slice(0, 9)).toEqual(
          Array.from({ length: 9 }, (_, i) => `line ${100000 - 8 + i}`)
        )
        expect(tail[9]).toMatch(/level=fatal msg="exiting with code 0"/)

        const defaultTail = yield* byDefault.logTail
        expect(defaultTail).toHaveLength(100)
        expect(defaultTail[0]).toBe("line 99902")
        expect(defaultTail.at(-1)).toMatch(/exiting with code 0/)
      })
    )
  )

  it.live("signal stops, continues and terminates; on a finished process it is false", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec(fakeDaemon(tag))
        yield* lineMatching(handle, /Starting up/)

        expect(yield* handle.signal("SIGSTOP")).toBe(true)
        expect(yield* eventually(() => stateOf(handle.pid).startsWith("T"))).toBe(true)
        expect(yield* handle.status).toMatchObject({ _tag: "Running" })

        expect(yield* handle.signal("SIGCONT")).toBe(true)
        expect(yield* eventually(() => !stateOf(handle.pid).startsWith("T"))).toBe(true)
        expect(yield* handle.status).toMatchObject({ _tag: "Running" })

        expect(yield* handle.signal("SIGTERM")).toBe(true)
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Signaled", signal: "SIGTERM" })

        expect(yield* handle.signal("SIGTERM")).toBe(false)
        expect(yield* handle.signal("SIGKILL")).toBe(false)
      })
    )
  )

  it.live("a missing binary fails with BinaryNotFound and spawns nothing", () =>
    withProcesses(() =>
      Effect.gen(function* () {
        const before = descendants()
        const onPath = yield* Effect.flip(exec(["sandbox-docker-no-such-binary", "--version"]))
        expect(onPath._tag).toBe("BinaryNotFound")
        if (onPath._tag !== "BinaryNotFound") return
        expect(onPath.binary).toBe("sandbox-docker-no-such-binary")
        expect(onPath.searched.length).toBeGreaterThan(0)

        const absolute = yield* Effect.flip(exec(["/no/such/dir/dockerd"]))
        expect(absolute).toMatchObject({ _tag: "BinaryNotFound", binary: "/no/such/dir/dockerd" })

        // A file that exists but is not executable is not a binary either.
        const notExecutable = yield* Effect.flip(exec([new URL(import.meta.url).pathname]))
        expect(notExecutable._tag).toBe("BinaryNotFound")

        expect(descendants()).toEqual(before)
      })
    )
  )

  it.live("a working directory that does not exist fails with SpawnFailed", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          exec(["sh", "-c", "true", tag], { cwd: "/no/such/working/dir" })
        )
        expect(error).toMatchObject({
          _tag: "SpawnFailed",
          argv: ["sh", "-c", "true", tag],
          reason: expect.stringMatching(/.+/)
        })
      })
    )
  )

  it.live("a relative binary is found from the working directory, as execvp finds it", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        yield* Effect.promise(async () => {
          await mkdir(Path.join(dir, "bin"))
          await writeFile(Path.join(dir, "bin", "hello"), '#!/bin/sh\necho "hello $1"\n', {
            mode: 0o755
          })
        })
        const handle = yield* exec(["./bin/hello", tag], { cwd: dir })
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        expect(yield* handle.logTail).toEqual([`hello ${tag}`])
        // Not in this process's own working directory.
        const error = yield* Effect.flip(exec(["./bin/hello", tag]))
        expect(error).toMatchObject({ _tag: "BinaryNotFound", binary: "./bin/hello" })
      })
    )
  )

  it.live("a script whose interpreter is missing fails with SpawnFailed, not BinaryNotFound", () =>
    withProcesses(() =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const script = Path.join(dir, "script")
        yield* Effect.promise(() => writeFile(script, "#!/no/such/interpreter\n", { mode: 0o755 }))
        const error = yield* Effect.flip(exec([script]))
        expect(error._tag).toBe("SpawnFailed")
        expect(error.message).toMatch(/interpreter/)
      })
    )
  )

  it.live("a stopped process is killed when the scope closes", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* Effect.gen(function* () {
          const handle = yield* exec(fakeDaemon(tag), { killGrace: "200 millis" })
          yield* lineMatching(handle, /Starting up/)
          expect(yield* handle.signal("SIGSTOP")).toBe(true)
          expect(yield* eventually(() => stateOf(handle.pid).startsWith("T"))).toBe(true)
          return handle
        }).pipe(Effect.scoped)
        // SIGTERM stays pending on a stopped process: SIGKILL ended it.
        expect(yield* handle.status).toMatchObject({ _tag: "Signaled", signal: "SIGKILL" })
      })
    )
  )

  it.live("closing the scope escalates to SIGKILL after killGrace and kills the whole group", () =>
    Effect.gen(function* () {
      let leader = 0
      let grandchild = 0
      let closedInMs = 0
      yield* withProcesses((tag) =>
        Effect.gen(function* () {
          const { handle, closing } = yield* Effect.gen(function* () {
            const handle = yield* exec(fakeDaemon(tag, "--ignore-term", "--spawn-child"), {
              killGrace: "300 millis"
            })
            const line = yield* lineMatching(handle, /grandchild pid \d+/)
            grandchild = Number(/grandchild pid (\d+)/.exec(line)?.[1])
            leader = handle.pid
            // Let the grandchild install its SIGTERM handler.
            yield* Effect.sleep("300 millis")
            expect(isAlive(handle.pid)).toBe(true)
            expect(isAlive(grandchild)).toBe(true)
            return { handle, closing: Date.now() }
          }).pipe(Effect.scoped)
          closedInMs = Date.now() - closing
          // The leader got SIGTERM and ignored it; SIGKILL ended it.
          expect(yield* handle.logTail).toContainEqual(expect.stringMatching(/ignoring SIGTERM/))
          expect(yield* handle.status).toMatchObject({ _tag: "Signaled", signal: "SIGKILL" })
        })
      )
      // Not before the grace (how long after it is the machine's business).
      expect(closedInMs).toBeGreaterThanOrEqual(300)
      // The leader was our child and is reaped: no such process.
      expect(() => process.kill(leader, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }))
      // The grandchild is dead; as an orphan it may stay a zombie until init reaps it.
      expect(isAlive(grandchild)).toBe(false)
    })
  )

  it.live("a grandchild left behind by a leader that exited is killed with the scope", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const { handle, grandchild } = yield* Effect.gen(function* () {
          const handle = yield* exec(fakeDaemon(tag, "--spawn-child", "--exit-after", "500"))
          const line = yield* lineMatching(handle, /grandchild pid \d+/)
          const grandchild = Number(/grandchild pid (\d+)/.exec(line)?.[1])
          expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
          // The leader is gone, its grandchild is not (yet).
          expect(isAlive(grandchild)).toBe(true)
          return { handle, grandchild }
        }).pipe(Effect.scoped)
        expect(yield* eventually(() => !isAlive(grandchild))).toBe(true)
        expect(isAlive(handle.pid)).toBe(false)
      })
    )
  )

  it.live(
    "a grandchild that writes to the pipes after the leader exited lives until the scope closes (no SIGPIPE)",
    () =>
      withProcesses((tag) =>
        Effect.gen(function* () {
          const dir = yield* tempDir
          const mark = Path.join(dir, "still-alive")
          // The leader exits at once; its grandchild writes to the shared
          // stdout after that, then leaves a mark. Were the pipes let go at
          // the exit, that write would kill it with SIGPIPE.
          const script = '(sleep 0.3; echo late; sleep 0.2; echo yes > "$1"; sleep 30) & echo early'
          const grandchildLived = yield* Effect.gen(function* () {
            const handle = yield* exec(["sh", "-c", script, tag, mark])
            expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
            const lived = yield* eventually(() => existsSync(mark))
            // What came after the exit is not in the tail: it was reported at the exit.
            expect(yield* handle.logTail).toEqual(["early"])
            return lived
          }).pipe(Effect.scoped)
          expect(grandchildLived).toBe(true)
        })
      )
  )

  it.live("env and cwd reach the process; the manager's own environment is kept", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const handle = yield* exec(
          ["sh", "-c", 'echo "$SANDBOX_DOCKER_TEST"; pwd; echo "${PATH:+has-path}"', tag],
          { cwd: dir, env: { SANDBOX_DOCKER_TEST: "hello from env" } }
        )
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        expect(yield* handle.logTail).toEqual([
          "hello from env",
          yield* Effect.promise(() => realpath(dir)),
          "has-path"
        ])
      })
    )
  )

  it.live("stdin text reaches the process, which then sees its end", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec(
          ["sh", "-c", 'while read -r line; do echo "got: $line"; done; echo eof', tag],
          { stdin: "first line\nsecond line\n" }
        )
        expect(yield* handle.awaitExit).toMatchObject({ _tag: "Exited", code: 0 })
        expect(yield* handle.logTail).toEqual(["got: first line", "got: second line", "eof"])
      })
    )
  )

  it.live("keepOutput: a subscriber that comes after the exit still gets all the output", () =>
    withProcesses((tag) =>
      Effect.gen(function* () {
        const handle = yield* exec(["sh", "-c", "echo one; echo two >&2; echo three", tag], {
          keepOutput: 1024
        })
        yield* handle.awaitExit
        const chunks = yield* Stream.runCollect(handle.output)
        const text = Chunk.toReadonlyArray(chunks)
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

  it.live(
    "without keepOutput, a late subscriber gets no old output (and does not wait forever)",
    () =>
      withProcesses((tag) =>
        Effect.gen(function* () {
          const handle = yield* exec(["sh", "-c", "echo one", tag])
          yield* handle.awaitExit
          expect(Chunk.size(yield* Stream.runCollect(handle.output))).toBe(0)
          expect(yield* handle.logTail).toEqual(["one"])
        })
      )
  )
})
