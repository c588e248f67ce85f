/**
 * The ProcessManager on the local machine, built on `@effect/platform`'s
 * `CommandExecutor`.
 *
 * Each process is its own process group. When its scope closes the group gets
 * SIGTERM, then SIGKILL after the grace; `CommandExecutor` alone would wait
 * for the exit forever.
 *
 * @since 0.1.0
 */
import { existsSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
// Module paths, not the packages' index, which loads every module of the
// package (some 45 MB of memory: HTTP API, Swagger UI…).
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as NodeCommandExecutor from "@effect/platform-node/NodeCommandExecutor"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { BinaryNotFound, SpawnFailed } from "./errors.js"
import { resolveExecutable } from "./internal/executable.js"
import * as ExitNotice from "./internal/exitNotice.js"
import * as Handle from "./internal/handle.js"
import { stopGracefully } from "./internal/gracefulStop.js"
import { makeOutputBuffer, type OutputSource } from "./internal/outputBuffer.js"
import { redactArgv, redactText, revealEnv, secretsOf } from "./Redaction.js"
import {
  DEFAULT_KILL_GRACE,
  DEFAULT_TAIL_LINES,
  type ExecOptions,
  ProcessManager,
  type SignalName
} from "./ProcessManager.js"
import { Exited, type ExitStatus, Signaled } from "./ProcessStatus.js"

/**
 * Once the process has exited, how many turns of the event loop to give its
 * pipes to drain. The output a process wrote before it died is already in
 * its pipes: two turns read it and let the readers handle it, while a
 * grandchild that keeps the pipes open (dockerd's containerd) can no longer
 * delay the exit by a fixed timeout (a 5 ms one cost every crash 5-7 ms).
 */
const DRAIN_TURNS = 2

/**
 * Succeeds once `readers` has ended (the pipes drained) or `turns` turns of
 * the event loop (`setImmediate`) have passed, whichever comes first. One
 * callback each, not a race of two fibers: this is on every exit's way to
 * its notice.
 */
const drained = (readers: Fiber.RuntimeFiber<void>, turns: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    let pending: NodeJS.Immediate | undefined
    let over = false
    const stop = () => {
      over = true
      readers.removeObserver(finish)
      if (pending !== undefined) clearImmediate(pending)
    }
    const finish = () => {
      if (over) return
      stop()
      resume(Effect.void)
    }
    const turn = (left: number) => {
      pending = setImmediate(() => (left <= 1 ? finish() : turn(left - 1)))
    }
    // (Called at once when the readers have already ended.)
    readers.addObserver(finish)
    if (!over) turn(turns)
    return Effect.sync(stop)
  })

/**
 * Sends `signal` to the process group of `pid`, or to `pid` alone when it has
 * no group of its own. `false` when nothing was there to receive it.
 *
 * @since 0.1.0
 * @category signals
 */
export const signalProcessGroup = (pid: number, signal: SignalName): Effect.Effect<boolean> =>
  Effect.sync(() => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, signal)
        return true
      } catch {
        // ESRCH: no such group or process; try the next target.
      }
    }
    return false
  })

const statusFromExit = (exit: Effect.Effect<number, PlatformError>): Effect.Effect<ExitStatus> =>
  exit.pipe(
    Effect.map((code): ExitStatus => new Exited({ code })),
    Effect.catchAll((error) => {
      const signal = /signal: (\w+)/.exec(error.message)?.[1] ?? "unknown"
      return Effect.succeed(new Signaled({ signal }))
    })
  )

const toSpawnError = (
  argv: ReadonlyArray<string>,
  binary: string,
  error: PlatformError
): BinaryNotFound | SpawnFailed => {
  if (error._tag !== "SystemError" || error.reason !== "NotFound" || error.method !== "spawn") {
    return new SpawnFailed({ argv, reason: error.message })
  }
  // The binary was there when it was resolved. If it still is, what is
  // missing is what it points at: the interpreter of its `#!` line.
  return existsSync(binary)
    ? new SpawnFailed({
        argv,
        reason: `${error.message} (is the interpreter of ${binary} missing?)`
      })
    : new BinaryNotFound({ binary: argv[0] ?? "", searched: [] })
}

const exec = (executor: CommandExecutor.CommandExecutor) =>
  Effect.fn("LocalProcessManager.exec")(function* (
    argv: readonly [string, ...Array<string>],
    options: ExecOptions = {}
  ) {
    // Secrets are revealed into the environment only; errors are redacted.
    const extraEnv = revealEnv(options.env)
    const secrets = secretsOf(Object.values(options.env ?? {}))
    const env = { ...process.env, ...extraEnv }
    const binary = yield* resolveExecutable(argv[0], env.PATH, options.cwd)
    let command = Command.make(binary, ...argv.slice(1)).pipe(
      Command.env(extraEnv),
      Command.feed(options.stdin ?? "")
    )
    if (options.cwd !== undefined) command = Command.workingDirectory(command, options.cwd)

    const grace = Duration.decode(options.killGrace ?? DEFAULT_KILL_GRACE)
    const notice = yield* ExitNotice.make
    // Set once the output readers run (after the spawn, below).
    const readers: { fiber?: Fiber.RuntimeFiber<void> } = {}
    // The spawn and the registration of its stop happen as one step, so an
    // interruption can never leave a process without its SIGTERM/SIGKILL.
    const child = yield* executor.start(command).pipe(
      Effect.mapError((error) => {
        const failure = toSpawnError(argv, binary, error)
        return failure._tag === "SpawnFailed" && secrets.length > 0
          ? new SpawnFailed({
              argv: redactArgv(failure.argv, secrets),
              reason: redactText(failure.reason, secrets)
            })
          : failure
      }),
      Effect.tap((child) =>
        Effect.addFinalizer(() =>
          stopGracefully(
            {
              pid: child.pid,
              exited: notice.exited,
              deliver: (signal) => signalProcessGroup(child.pid, signal),
              killRemains: killGroupRemains(child.pid)
            },
            grace
          ).pipe(
            // The output is read until the process is gone (its last words
            // while stopping included), then the readers are let go.
            Effect.zipRight(
              Effect.suspend(() =>
                readers.fiber === undefined ? Effect.void : Fiber.interrupt(readers.fiber)
              )
            )
          )
        )
      ),
      Effect.uninterruptible
    )
    const pid = child.pid
    const output = yield* makeOutputBuffer(
      options.tailLines ?? DEFAULT_TAIL_LINES,
      options.keepOutput ?? 0
    )

    const pump = (source: OutputSource, stream: Stream.Stream<Uint8Array, PlatformError>) =>
      stream.pipe(
        Stream.decodeText(),
        Stream.runForEach((text) => output.publish({ source, text })),
        Effect.ignore
      )
    const reading = yield* Effect.all(
      [pump("stdout", child.stdout), pump("stderr", child.stderr)],
      {
        concurrency: 2,
        discard: true
      }
    ).pipe(Effect.forkDaemon)
    readers.fiber = reading

    yield* statusFromExit(child.exitCode).pipe(
      // Let the pipes drain so the tail holds the last words, without waiting
      // on grandchildren that may keep a pipe open.
      Effect.tap(() => drained(reading, DRAIN_TURNS)),
      Effect.tap(() => output.end),
      Effect.flatMap(notice.complete),
      // Not tied to the scope: the stop in the scope's finalizer waits on it,
      // and it ends with the process, which that stop guarantees.
      Effect.forkDaemon
    )

    return Handle.make({
      pid,
      argv,
      notice,
      output,
      deliver: (name) => signalProcessGroup(pid, name)
    })
  })

/**
 * SIGKILL for what is left of the group led by `pid` (nothing, usually), then
 * a bounded wait until none of it is alive: a SIGKILL is not a death yet,
 * and on a loaded machine the kernel takes a while to finish one.
 */
const killGroupRemains = (pid: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      return Effect.void // ESRCH: the group is empty.
    }
    return liveGroupMembers(pid).pipe(
      Effect.repeat({ schedule: Schedule.spaced("5 millis"), until: (left) => left === 0 }),
      Effect.timeout(GROUP_GONE_WITHIN),
      Effect.ignore
    )
  })

/** How long the remains of a group may take to die after SIGKILL. */
const GROUP_GONE_WITHIN = Duration.seconds(2)

/** How many processes of the group `pgid` are alive (zombies are dead). */
const liveGroupMembers = (pgid: number): Effect.Effect<number> =>
  Effect.promise(async () => {
    const entries = await readdir("/proc").catch(() => [] as Array<string>)
    let alive = 0
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue
      const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "")
      // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] !== "Z" && Number(fields[2]) === pgid) alive += 1
    }
    return alive
  })

/**
 * Builds the local ProcessManager from a `CommandExecutor`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  typeof ProcessManager.Service,
  never,
  CommandExecutor.CommandExecutor
> = Effect.map(CommandExecutor.CommandExecutor, (executor) => ({ exec: exec(executor) }))

/**
 * The local ProcessManager, with Node's `CommandExecutor` included.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ProcessManager> = Layer.effect(ProcessManager, make).pipe(
  Layer.provide(NodeCommandExecutor.layer),
  Layer.provide(NodeFileSystem.layer)
)
