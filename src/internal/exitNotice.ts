/**
 * The exit of one process, for every ProcessManager: a `Deferred` for
 * fibers (`awaitExit`) and plain listeners for loops of callbacks (the
 * readiness and liveness loops), which learn of the exit in the same turn,
 * with no fiber of their own waiting on it.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { ProcessHandle } from "../ProcessManager.js"
import type { ExitStatus } from "../ProcessStatus.js"
import type { Cancel, Driver } from "./driver.js"

/** One process's exit, once it is known. */
export interface ExitNotice {
  /** Completed with the exit status. */
  readonly exited: Deferred.Deferred<ExitStatus>
  /** The exit status, once the process has ended. */
  readonly current: () => ExitStatus | undefined
  /** Records the exit: completes `exited`, then calls every listener once. */
  readonly complete: (status: ExitStatus) => Effect.Effect<void>
  /**
   * Calls `listener` once with the exit status: at once when the process has
   * already ended, otherwise when it ends, unless cancelled first.
   */
  readonly onExit: (listener: (status: ExitStatus) => void) => Cancel
}

/** A notice for a process that is running. */
export const make: Effect.Effect<ExitNotice> = Effect.map(Deferred.make<ExitStatus>(), (exited) => {
  let status: ExitStatus | undefined
  const listeners = new Set<(status: ExitStatus) => void>()
  return {
    exited,
    current: () => status,
    complete: (ended) =>
      Effect.suspend(() => {
        if (status !== undefined) return Effect.void
        status = ended
        return Effect.zipRight(
          Deferred.succeed(exited, ended),
          Effect.sync(() => {
            const waiting = [...listeners]
            listeners.clear()
            for (const listener of waiting) listener(ended)
          })
        )
      }),
    onExit: (listener) => {
      if (status !== undefined) {
        listener(status)
        return () => {}
      }
      listeners.add(listener)
      return () => void listeners.delete(listener)
    }
  }
})

/**
 * Watches `process`'s exit for a loop of callbacks: `exited` with the status
 * (at once if it has already ended), or `failed` if waiting for it failed.
 * By the manager's callback (`unsafeOnExit`) when the handle has one and
 * `awaitExit` is the handle's own; otherwise by a fiber on `awaitExit`, on
 * `driver`. Returns how to stop watching.
 */
export const watch = (
  driver: Driver,
  process: ProcessHandle,
  exited: (status: ExitStatus) => void,
  failed: (cause: Cause.Cause<never>) => void,
  awaitExit: Effect.Effect<ExitStatus> = process.awaitExit
): Cancel =>
  process.unsafeOnExit !== undefined && awaitExit === process.awaitExit
    ? process.unsafeOnExit(exited)
    : driver.run(awaitExit, (exit) =>
        Exit.isSuccess(exit) ? exited(exit.value) : failed(exit.cause)
      )
