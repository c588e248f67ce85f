/**
 * The exit of one process, for every ProcessManager: a `Deferred` for
 * fibers (`awaitExit`) and plain listeners for loops of callbacks (the
 * readiness and liveness loops), which learn of the exit in the same turn,
 * with no fiber of their own waiting on it.
 *
 * @internal
 */
import { Deferred, Effect } from "effect"
import type { Cancel } from "./driver.js"
import type { ExitStatus } from "../ProcessStatus.js"

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
