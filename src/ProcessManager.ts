/**
 * The sandbox's process manager as an Effect service: start a process, watch
 * its status, wait for its exit, read its output, send it signals.
 *
 * Callers never care which implementation they run on: the local one
 * (`LocalProcessManager`), the scripted one for tests under `TestClock`
 * (`TestProcessManager`), or one inside a container.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Context from "effect/Context"
import type { BinaryNotFound, SpawnFailed } from "./errors.js"
import type { OutputChunk } from "./internal/outputBuffer.js"
import type { ExitStatus, ProcessStatus } from "./ProcessStatus.js"

export type { OutputChunk, OutputSource } from "./internal/outputBuffer.js"

/**
 * A POSIX signal name such as `SIGTERM`.
 *
 * @since 0.1.0
 * @category models
 */
export type SignalName = NodeJS.Signals

/**
 * Options for {@link ProcessManager.exec}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecOptions {
  /** Working directory of the process. */
  readonly cwd?: string | undefined
  /**
   * Extra environment variables, added to the manager's own environment. A
   * `Redacted` value is a secret: it is revealed only into the process's
   * environment and appears in no argv, log, event or error.
   */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
  /**
   * Text written to the process's standard input, which is then closed. The
   * way to hand a secret to a command (`docker login --password-stdin`):
   * never put one in argv, where every user of the machine can read it.
   * Managers never log it.
   */
  readonly stdin?: string | undefined
  /**
   * How long to wait after SIGTERM before SIGKILL when the scope closes.
   * Defaults to 10 seconds.
   */
  readonly killGrace?: Duration.DurationInput | undefined
  /** How many of the last output lines to keep. Defaults to 100. */
  readonly tailLines?: number | undefined
  /**
   * Keep the first this many characters of output, so `output` subscribers
   * get it from the beginning however late they subscribe. Defaults to 0
   * (a daemon's endless log must not grow memory).
   */
  readonly keepOutput?: number | undefined
  /**
   * Whether the process dies with the one that started it, even when that
   * one is SIGKILLed and no finalizer runs (the kernel's parent-death
   * signal, SIGKILL). Defaults to `true`; a manager that cannot promise it
   * says so in its own documentation.
   */
  readonly diesWithParent?: boolean | undefined
}

/**
 * A running (or finished) process. Valid while the scope it was started in is
 * open; closing that scope stops the process and its process group.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessHandle {
  /** The process id. */
  readonly pid: number
  /** The argv the process was started with. */
  readonly argv: ReadonlyArray<string>
  /** The status now: running, exited with a code, or ended by a signal. */
  readonly status: Effect.Effect<ProcessStatus>
  /** Waits until the process ends, however it ends. */
  readonly awaitExit: Effect.Effect<ExitStatus>
  /**
   * Output until the process ends: live from the moment of subscription, or
   * from the beginning with `keepOutput` (up to that many characters). Older
   * output is in {@link ProcessHandle.logTail}.
   */
  readonly output: Stream.Stream<OutputChunk>
  /** The last lines of stdout and stderr, bounded however much is printed. */
  readonly logTail: Effect.Effect<ReadonlyArray<string>>
  /**
   * Sends a signal to the process (and its process group). Succeeds with
   * `false` when the process was already gone.
   */
  readonly signal: (signal: SignalName) => Effect.Effect<boolean>
}

/**
 * The process manager service.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessManagerShape {
  /**
   * Starts `argv` without waiting for it. The binary is resolved first: a
   * missing binary fails with {@link BinaryNotFound} before anything runs.
   * When the scope closes the process gets SIGTERM, then SIGKILL after
   * `killGrace`; nothing outlives the scope.
   */
  readonly exec: (
    argv: readonly [string, ...Array<string>],
    options?: ExecOptions
  ) => Effect.Effect<ProcessHandle, BinaryNotFound | SpawnFailed, Scope.Scope>
}

/**
 * The `ProcessManager` service tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class ProcessManager extends Context.Tag("sandbox-docker/ProcessManager")<
  ProcessManager,
  ProcessManagerShape
>() {}

/**
 * Default grace between SIGTERM and SIGKILL when a scope closes.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_KILL_GRACE: Duration.DurationInput = "10 seconds"

/**
 * Default number of output lines kept per process.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_TAIL_LINES = 100
