/**
 * The ProcessManager on the local machine, on `node:child_process`.
 *
 * Each process is its own process group. When its scope closes the group gets
 * SIGTERM, then SIGKILL after the grace. When this process dies without
 * closing it (SIGKILL, the OOM killer), the kernel's parent-death signal
 * kills the process: on Linux it is started through util-linux's `setpriv
 * --pdeathsig KILL`, which sets it and then execs the binary (same pid).
 * The signal follows the death of the *thread* that spawned the process:
 * Node spawns from the thread of the event loop that asks, so a process
 * started from a `worker_threads` worker dies when that worker ends. Node's events enter Effect at the
 * boundary, in the turn they happen: each chunk of output is offered to the
 * output's readers and the exit completes the handle's `Deferred`
 * (`Deferred.unsafeDone`), so an exit is never reported before the output
 * printed ahead of it. (`@effect/platform`'s `CommandExecutor` spent 6-8 ms
 * of CPU per process where a bare spawn spends ~2, and waits for an exit
 * forever.)
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { BinaryNotFound, SpawnFailed } from "./errors.js"
import { resolveExecutable } from "./internal/executable.js"
import * as Handle from "./internal/handle.js"
import { stopGracefully } from "./internal/gracefulStop.js"
import { makeOutputBuffer, type OutputBuffer } from "./internal/outputBuffer.js"
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

/** Node's `exit` event's arguments as a status: a code, or the signal that ended it. */
const statusOf = (code: number | null, signal: NodeJS.Signals | null): ExitStatus =>
  code !== null ? new Exited({ code }) : new Signaled({ signal: signal ?? "unknown" })

/** Why the operating system refused to start `binary`, as a typed error. */
const spawnError = (
  argv: ReadonlyArray<string>,
  binary: string,
  cwd: string | undefined,
  error: NodeJS.ErrnoException
): BinaryNotFound | SpawnFailed => {
  const reason = `${error.code ?? "error"}: ${error.message}`
  if (error.code !== "ENOENT") return new SpawnFailed({ argv, reason })
  if (cwd !== undefined && !statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) {
    return new SpawnFailed({ argv, reason: `the working directory ${cwd} does not exist` })
  }
  // The binary was there when it was resolved. If it still is, what is
  // missing is what it points at: the interpreter of its `#!` line.
  return existsSync(binary)
    ? new SpawnFailed({ argv, reason: `${reason} (is the interpreter of ${binary} missing?)` })
    : new BinaryNotFound({ binary: argv[0] ?? "", searched: [binary] })
}

/**
 * Spawns `binary` in a process group of its own. Succeeds once Node knows the
 * pid; fails with the spawn's error (Node reports most of them as an `error`
 * event after the call returns, with no pid). `started` is called in the
 * same turn as the spawn, before the fiber resumes: Node does not keep an
 * `exit` event for a listener that comes later.
 */
const spawnChild = (
  binary: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd: string | undefined
    readonly env: NodeJS.ProcessEnv
    readonly stdin: boolean
  },
  started: (child: ChildProcess) => void
): Effect.Effect<ChildProcess, NodeJS.ErrnoException> =>
  Effect.async<ChildProcess, NodeJS.ErrnoException>((resume) => {
    let child: ChildProcess
    try {
      child = spawn(binary, args, {
        cwd: options.cwd,
        env: options.env,
        detached: true,
        stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"]
      })
    } catch (error) {
      resume(Effect.fail(error as NodeJS.ErrnoException))
      return
    }
    if (child.pid === undefined) {
      child.once("error", (error) => resume(Effect.fail(error)))
      return
    }
    // Started. Node reports nothing else as `error` unless asked to kill or
    // message the child, which this manager never does (it signals the
    // group itself); an `error` without a listener would end the process.
    child.on("error", () => {})
    started(child)
    resume(Effect.succeed(child))
  })

/**
 * Feeds the child's output to `output` and its exit to `exited`, as Node's
 * events arrive. Once the process has exited its pipes get
 * {@link DRAIN_TURNS} turns to drain (or until both have ended), so the tail
 * holds the last words without waiting on a grandchild that keeps a pipe
 * open. Returns how to let the pipes go: until then they are read (what
 * comes after the exit is dropped), so that a grandchild writing to them is
 * not killed by SIGPIPE before its group is stopped.
 */
const wire = (
  child: ChildProcess,
  output: OutputBuffer,
  exited: Deferred.Deferred<ExitStatus>
): (() => void) => {
  let open = 2
  let ended = false
  let finish: (() => void) | undefined
  for (const [source, stream] of [
    ["stdout", child.stdout],
    ["stderr", child.stderr]
  ] as const) {
    if (stream === null) {
      open -= 1
      continue
    }
    stream.setEncoding("utf8")
    stream.on("data", (text: string) => {
      if (!ended) output.offer({ source, text })
    })
    stream.once("close", () => {
      open -= 1
      if (open === 0) finish?.()
    })
    stream.on("error", () => {})
  }
  child.once("exit", (code, signal) => {
    const status = statusOf(code, signal)
    let pending: NodeJS.Immediate | undefined
    finish = () => {
      if (ended) return
      ended = true
      if (pending !== undefined) clearImmediate(pending)
      output.close()
      Deferred.unsafeDone(exited, Effect.succeed(status))
    }
    if (open === 0) return finish()
    const turn = (left: number) => {
      pending = setImmediate(() => (left <= 1 ? finish?.() : turn(left - 1)))
    }
    turn(DRAIN_TURNS)
  })
  return () => {
    child.stdout?.destroy()
    child.stderr?.destroy()
  }
}

/**
 * What starts a process so that it dies with this one: `setpriv`'s path, or
 * why there is none.
 */
type ParentDeath =
  | { readonly _tag: "Setpriv"; readonly path: string }
  | { readonly _tag: "Unsupported"; readonly reason: string }

/** Finds `setpriv` on PATH (Linux only: the parent-death signal is Linux's). */
const parentDeathOn = (platform: NodeJS.Platform): Effect.Effect<ParentDeath> =>
  platform !== "linux"
    ? Effect.succeed({ _tag: "Unsupported", reason: `${platform} has no parent-death signal` })
    : resolveExecutable("setpriv", process.env.PATH).pipe(
        Effect.map((path): ParentDeath => ({ _tag: "Setpriv", path })),
        Effect.orElseSucceed((): ParentDeath => ({
          _tag: "Unsupported",
          reason:
            "setpriv is not installed, and without it the process would outlive this one if it were killed (apt-get install util-linux), or pass diesWithParent: false"
        }))
      )

/**
 * The program and arguments that run `binary` so that it gets SIGKILL when
 * the thread that spawned it dies. (Between the spawn and setpriv's
 * `prctl` there is no signal yet: a parent killed in those microseconds
 * leaves the process behind, for the next start's clean-up.)
 */
const dyingWithParent = (
  parentDeath: ParentDeath,
  binary: string,
  args: ReadonlyArray<string>
): readonly [string, ReadonlyArray<string>] | string =>
  parentDeath._tag === "Setpriv"
    ? [parentDeath.path, ["--pdeathsig", "KILL", "--", binary, ...args]]
    : parentDeath.reason

/**
 * The interpreter a script's `#!` line names, when it is not there to run:
 * started through setpriv, the script's exec fails inside setpriv (exit
 * 127), where Node would have said ENOENT. Reads the first bytes only.
 */
const missingInterpreter = (binary: string): string | undefined => {
  let head = ""
  try {
    const fd = openSync(binary, "r")
    try {
      const buffer = Buffer.alloc(256)
      head = buffer.toString("latin1", 0, readSync(fd, buffer, 0, buffer.length, 0))
    } finally {
      closeSync(fd)
    }
  } catch {
    return undefined
  }
  if (!head.startsWith("#!")) return undefined
  const interpreter = head.slice(2).split("\n")[0]!.trim().split(/\s+/)[0] ?? ""
  try {
    accessSync(interpreter, constants.X_OK)
    return undefined
  } catch {
    return interpreter
  }
}

const execWith = (parentDeath: ParentDeath) =>
  Effect.fn("LocalProcessManager.exec")(function* (
    argv: readonly [string, ...Array<string>],
    options: ExecOptions = {}
  ) {
    // Secrets are revealed into the environment only; errors are redacted.
    const extraEnv = revealEnv(options.env)
    const secrets = secretsOf(Object.values(options.env ?? {}))
    const env = { ...process.env, ...extraEnv }
    const binary = yield* resolveExecutable(argv[0], env.PATH, options.cwd)
    const grace = Duration.decode(options.killGrace ?? DEFAULT_KILL_GRACE)
    const exited = yield* Deferred.make<ExitStatus>()
    const output = yield* makeOutputBuffer(
      options.tailLines ?? DEFAULT_TAIL_LINES,
      options.keepOutput ?? 0
    )

    let program: readonly [string, ReadonlyArray<string>] = [binary, argv.slice(1)]
    if (options.diesWithParent ?? true) {
      const wrapped = dyingWithParent(parentDeath, binary, argv.slice(1))
      const interpreter = missingInterpreter(binary)
      if (interpreter !== undefined) {
        return yield* new SpawnFailed({
          argv: redactArgv(argv, secrets),
          reason: `ENOENT: the interpreter ${interpreter} of ${binary} is missing`
        })
      }
      if (typeof wrapped === "string")
        return yield* new SpawnFailed({ argv: redactArgv(argv, secrets), reason: wrapped })
      program = wrapped
    }

    // Set in the turn of the spawn (see spawnChild).
    let release = () => {}
    // The spawn and the registration of its stop happen as one step, so an
    // interruption can never leave a process without its SIGTERM/SIGKILL.
    const child = yield* spawnChild(
      program[0],
      program[1],
      { cwd: options.cwd, env, stdin: options.stdin !== undefined },
      (child) => (release = wire(child, output, exited))
    ).pipe(
      Effect.mapError((error) => {
        const failure = spawnError(argv, binary, options.cwd, error)
        return failure._tag === "SpawnFailed" && secrets.length > 0
          ? new SpawnFailed({
              argv: redactArgv(failure.argv, secrets),
              reason: redactText(failure.reason, secrets)
            })
          : failure
      }),
      Effect.tap((child) => {
        const pid = child.pid!
        if (child.stdin !== null) {
          child.stdin.on("error", () => {}) // EPIPE: the process did not read it all.
          child.stdin.end(options.stdin)
        }
        return Effect.addFinalizer(() =>
          stopGracefully(
            {
              pid,
              exited,
              deliver: (signal) => signalProcessGroup(pid, signal),
              killRemains: killGroupRemains(pid)
            },
            grace
          ).pipe(
            // The output is read until the process is gone (its last words
            // while stopping included), then the pipes are let go.
            Effect.ensuring(Effect.sync(release))
          )
        )
      }),
      Effect.uninterruptible
    )
    const pid = child.pid!
    return Handle.make({
      pid,
      argv,
      exited,
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
 * Builds the local ProcessManager. Its processes die with this one
 * (`diesWithParent`, by default): on Linux without `setpriv`, such an exec
 * fails with `SpawnFailed` saying so.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<typeof ProcessManager.Service> = Effect.map(
  parentDeathOn(process.platform),
  (parentDeath) => ({ exec: execWith(parentDeath) })
)

/**
 * The local ProcessManager.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ProcessManager> = Layer.effect(ProcessManager, make)
